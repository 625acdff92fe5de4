"""Record what goes through a MITM proxy (HTTP and SOCKS5) as a HAR file and JSON lines.

Run:  python examples/record_har.py --har session.har [--flows flows.jsonl]
                                    [--listen 127.0.0.1:8080] [--socks-listen 127.0.0.1:1080]
                                    [--ca-dir DIR] [--upstream-ca FILE | --upstream-insecure]
                                    [--pass-through GLOB]... [--no-redact] [--capture-limit N]

It prints ``listening on HOST:PORT`` (the HTTP proxy), ``socks on HOST:PORT``
and ``ca PATH`` (the certificate clients must trust; created with its key in
``--ca-dir`` on first run), then records until SIGINT/SIGTERM, finishes the
HAR file and prints ``recorded N flows``. Try it::

    curl --cacert DIR/ca.pem -x http://127.0.0.1:8080 https://example.com/
    curl --cacert DIR/ca.pem --socks5-hostname 127.0.0.1:1080 https://example.com/

then open ``session.har`` in the browser's DevTools (Network, import HAR).

What it shows: a :class:`rama_proxy.mitm.FlowRecordingObserver` is the MITM's
observer: every intercepted exchange (heads, bodies up to
``--capture-limit``, timings, both TLS sides, WebSocket messages) becomes a
:class:`rama_proxy.flows.Flow`, pass-through tunnels a ``TunnelFlow``. The
HAR is written entry by entry (Authorization, Cookie and Set-Cookie redacted
unless ``--no-redact``); the JSON lines keep everything, unredacted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

from rama_core import Shutdown
from rama_http.server import HttpServer
from rama_net import TcpListener
from rama_proxy import HttpProxy, SocksProxy
from rama_proxy.flows import FlowRecorder
from rama_proxy.mitm import FlowRecordingObserver, HostPolicy, MitmProxy
from rama_tls import CertificateAuthority

__all__ = ["load_or_create_ca", "main", "run"]


def load_or_create_ca(ca_dir: Path) -> CertificateAuthority:
    """``ca_dir/ca.pem`` and ``ca.key`` (key mode 0600), created on first use."""
    cert, key = ca_dir / "ca.pem", ca_dir / "ca.key"
    if cert.exists() and key.exists():
        return CertificateAuthority.load(cert, key)
    ca_dir.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority.create("rama HAR recorder CA")
    ca.save(cert, key)
    return ca


async def run(args: argparse.Namespace) -> None:
    """Record until a signal asks to stop, then finish the files."""
    ca_dir = Path(args.ca_dir)
    ca = load_or_create_ca(ca_dir)
    recorder = FlowRecorder(
        jsonl=args.flows,
        har=args.har,
        redact_har=not args.no_redact,
        capture_limit=args.capture_limit,
    )
    async with FlowRecordingObserver(recorder) as observer:
        mitm = MitmProxy(
            ca,
            observer=observer,
            policy=HostPolicy(pass_through=args.pass_through or ()),
            upstream_insecure=args.upstream_insecure,
            upstream_ca=args.upstream_ca,
        )
        http_proxy = HttpProxy(connect_policy=mitm.connect_policy())
        listener = TcpListener.bind(args.listen)
        socks_listener = TcpListener.bind(args.socks_listen)
        async with Shutdown(grace=args.grace) as shutdown:
            shutdown.spawn(listener.serve, HttpServer(http_proxy))
            shutdown.spawn(socks_listener.serve, SocksProxy(connect_handoff=mitm))
            print(f"listening on {listener.local_addr}", flush=True)
            print(f"socks on {socks_listener.local_addr}", flush=True)
            print(f"ca {ca_dir / 'ca.pem'}", flush=True)
        await http_proxy.aclose()
    # leaving the observer wrote what was still open and closed the HAR
    print(f"recorded {observer.recorded} flows", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="MITM proxy recording a HAR (rama example)")
    parser.add_argument("--har", required=True, help="the HAR file to write")
    parser.add_argument("--flows", help="also write every flow as JSON lines here")
    parser.add_argument("--listen", default="127.0.0.1:8080", help="HTTP proxy host:port")
    parser.add_argument("--socks-listen", default="127.0.0.1:1080", help="SOCKS5 host:port")
    parser.add_argument("--ca-dir", default="rama-mitm-ca", help="holds ca.pem and ca.key")
    trust = parser.add_mutually_exclusive_group()
    trust.add_argument("--upstream-ca", help="PEM file of the CAs trusted for servers")
    trust.add_argument("--upstream-insecure", action="store_true", help="do not verify servers")
    parser.add_argument("--pass-through", action="append", metavar="GLOB", help="not intercepted")
    parser.add_argument("--no-redact", action="store_true", help="keep credentials in the HAR")
    parser.add_argument("--capture-limit", type=int, default=1 << 20, help="body bytes kept")
    parser.add_argument("--grace", type=float, default=5.0, help="drain seconds on shutdown")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each connection")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    anyio.run(run, args, backend=args.backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
