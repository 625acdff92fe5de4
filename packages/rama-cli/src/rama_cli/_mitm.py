"""``rama ca init|show|path`` and the ``--mitm`` options of ``rama serve proxy``.

The CA lives in ``--ca-dir`` (default: :func:`rama_proxy.ca.default_ca_dir`):
``ca.pem`` is what clients trust, ``ca.key`` (mode 0600) signs the leaves.
``rama serve proxy --mitm`` creates it on first use, hands every CONNECT and
SOCKS5 CONNECT to a :class:`rama_proxy.mitm.MitmProxy` (through the server's
egress, so ``--upstream`` and ``--proxy-db`` still apply), and with ``--har`` /
``--flows`` records every flow through a
:class:`rama_proxy.mitm.FlowRecordingObserver`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from rama_net import SocketAddress
from rama_proxy import ProxyServer, serve_proxy
from rama_proxy.ca import CaExistsError, CaNotFoundError, CaStore
from rama_proxy.mitm import FlowRecordingObserver, HostPolicy, MitmProxy

__all__ = [
    "add_ca_parser",
    "add_mitm_arguments",
    "banner_lines",
    "check_mitm_args",
    "install_mitm",
    "serve_with_mitm",
]


# -- rama ca ---------------------------------------------------------------------------------
def add_ca_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``ca`` (init, show, path) to the top-level commands."""
    p: argparse.ArgumentParser = sub.add_parser(
        "ca",
        help="the MITM CA: init, show, path (rama ca init -h)",
        description="The CA `rama serve proxy --mitm` issues its leaf certificates with.",
    )
    actions = p.add_subparsers(dest="ca_action", metavar="ACTION", required=True)
    init = actions.add_parser("init", help="create ca.pem and ca.key (mode 0600)")
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    init.add_argument("--common-name", default="rama MITM CA", help="the CA's subject CN")
    show = actions.add_parser("show", help="subject, fingerprints, and how to trust it")
    show.add_argument("--json", action="store_true", help="machine-readable")
    actions.add_parser("path", help="print the path of ca.pem (what clients trust)")
    for sp in (init, show, actions.choices["path"]):
        sp.add_argument("--ca-dir", metavar="DIR", help="where ca.pem and ca.key live")
    p.set_defaults(run=run_ca)
    return p


def run_ca(args: argparse.Namespace) -> int:
    """Carry out ``rama ca ACTION``."""
    store = CaStore(args.ca_dir)
    try:
        if args.ca_action == "init":
            store.init(force=args.force, common_name=args.common_name)
            print(f"created {store.cert_path} and {store.key_path} (mode 0600)")
            print(store.trust_instructions())
        elif args.ca_action == "show":
            info = store.show()
            if args.json:
                print(json.dumps(info.to_dict(), indent=2, default=str))
            else:
                print(info.text())
                print()
                print(store.trust_instructions())
        else:
            if not store.cert_path.is_file():
                raise CaNotFoundError(f"no CA in {store.directory} (create one: rama ca init)")
            print(store.cert_path)
    except CaExistsError:
        print(
            f"rama ca init: a CA already exists in {store.directory} "
            "(rama ca init --force replaces it; clients must then trust the new one)",
            file=sys.stderr,
        )
        return 1
    except CaNotFoundError as exc:
        print(f"rama ca {args.ca_action}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"rama ca {args.ca_action}: {exc}", file=sys.stderr)
        return 1
    return 0


# -- rama serve proxy --mitm ------------------------------------------------------------------
def add_mitm_arguments(p: argparse.ArgumentParser) -> None:
    """The ``--mitm`` options (the existing ``--upstream-ca`` also sets the servers' trust)."""
    g = p.add_argument_group("TLS interception (MITM)")
    g.add_argument(
        "--mitm",
        action="store_true",
        help="intercept TLS in CONNECT and SOCKS5 tunnels with leaves from the CA in --ca-dir "
        "(created on first use; clients must trust its ca.pem). --upstream-ca then also "
        "replaces the system roots for the intercepted servers",
    )
    g.add_argument(
        "--mitm-hosts",
        action="append",
        metavar="GLOB",
        help="intercept only these hosts (globs or CIDRs; others pass through); repeat",
    )
    g.add_argument(
        "--pass-through",
        action="append",
        metavar="GLOB",
        help="never intercept these hosts (pinned apps, banks); repeat",
    )
    g.add_argument("--ca-dir", metavar="DIR", help="holds ca.pem and ca.key (see rama ca)")
    g.add_argument(
        "--mirror-tls",
        action="store_true",
        help="send the client's own ClientHello to the server (its JA3/JA4)",
    )
    g.add_argument("--har", metavar="FILE", help="record every flow into this HAR 1.2 file")
    g.add_argument("--flows", metavar="FILE", help="record every flow as JSON lines here")
    g.add_argument(
        "--upstream-insecure",
        action="store_true",
        help="do not verify the intercepted servers' certificates",
    )


def check_mitm_args(args: argparse.Namespace) -> str | None:
    """Why these options do not go together, if they do not."""
    mitm_only = ("mitm_hosts", "pass_through", "mirror_tls", "har", "flows", "upstream_insecure")
    if not args.mitm:
        used = [n for n in mitm_only if getattr(args, n)]
        if used:
            return f"--{used[0].replace('_', '-')} needs --mitm"
        return None
    if args.upstream_insecure and args.upstream_ca:
        return "--upstream-ca and --upstream-insecure exclude each other"
    if (args.har or args.flows) and args.workers > 1:
        return "--har/--flows record one process: use --workers 1"
    return None


class MitmSetup:
    """What :func:`install_mitm` put in place (the recorder is started by the server run)."""

    def __init__(self, mitm: MitmProxy, recording: FlowRecordingObserver | None) -> None:
        self.mitm = mitm
        self.recording = recording


def install_mitm(server: ProxyServer, args: argparse.Namespace) -> MitmSetup:
    """Hand the server's CONNECTs and SOCKS5 CONNECTs to a new MitmProxy."""
    ca = CaStore(args.ca_dir).load_or_init()
    recording = None
    if args.har or args.flows:
        recording = FlowRecordingObserver(har=args.har, jsonl=args.flows)
    mitm = MitmProxy(
        ca,
        egress=server.egress,
        policy=HostPolicy(intercept=args.mitm_hosts, pass_through=args.pass_through or ()),
        observer=recording,
        upstream_ca=args.upstream_ca,
        upstream_insecure=args.upstream_insecure,
        mirror_tls=args.mirror_tls,
        timeout=args.timeout,
        idle_timeout=args.idle_timeout,
        peek_timeout=min(args.timeout, 10.0),
    )
    server.http_proxy.connect_policy = mitm.connect_policy(server.http_proxy.connect_policy)
    if server.socks_proxy is not None:
        server.socks_proxy.connect_handoff = mitm
    return MitmSetup(mitm, recording)


async def serve_with_mitm(
    server: ProxyServer, setup: MitmSetup, ready: Callable[[SocketAddress], None]
) -> None:
    """Serve; on shutdown the recorder writes what is open and closes the HAR."""
    if setup.recording is None:
        await serve_proxy(server=server, on_listening=ready)
        return
    async with setup.recording:
        await serve_proxy(server=server, on_listening=ready)


def banner_lines(args: argparse.Namespace) -> list[str]:
    """What the banner adds for --mitm (before its last line)."""
    store = CaStore(args.ca_dir)
    lines = [
        f"MITM on: clients must trust {store.cert_path} (e.g. curl --cacert {store.cert_path})"
    ]
    if args.har:
        lines.append(f"recording a HAR into {args.har}")
    if args.flows:
        lines.append(f"recording JSON lines into {args.flows}")
    return lines
