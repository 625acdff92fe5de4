"""``rama serve proxy``: HTTP, HTTPS-proxy and SOCKS5 on one port (what ``make run`` starts)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from rama_core import RamaError
from rama_net import Authority, SocketAddress
from rama_proxy import ProxyServer, ProxyServerConfig, serve_proxy

from . import _mitm
from ._workers import run_workers

__all__ = ["add_parser", "config_from_args", "run"]

_UPSTREAM_SCHEMES = ("http", "https", "socks5", "socks5h", "socks4", "socks4a")

_DESCRIPTION = """\
A forward proxy speaking HTTP (absolute-form and CONNECT), HTTPS-proxy (the
proxy behind TLS) and SOCKS5/5h (and SOCKS4/4a) on one port: each connection's
first bytes decide. Requests go to their targets directly, through one upstream
proxy, or through an upstream picked from a proxy DB by the labels in the
username (john-country-us-residential). SIGINT/SIGTERM stop accepting and let
requests and tunnels in flight finish (--grace seconds; a second signal stops
at once).
"""

_EPILOG = """\
examples:
  rama serve proxy                                   # 127.0.0.1:8080, no auth
  rama serve proxy --auth john:secret --access-log -
  rama serve proxy --tls-self-signed      # + curl --proxy https://... --proxy-insecure
  rama serve proxy --upstream socks5h://user:pw@10.0.0.2:1080
  rama serve proxy --auth john:pw --proxy-db proxies.csv  # -x http://john-country-us:pw@...
  rama serve proxy --bind 0.0.0.0:3128 --workers 4 --max-connections 20000

then try:
  curl -x http://127.0.0.1:8080 http://example.com/
  curl -p -x http://127.0.0.1:8080 https://example.com/
  curl --socks5-hostname 127.0.0.1:8080 https://example.com/
"""


def _user_pass(text: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise argparse.ArgumentTypeError(f"expected USER:PASS, not {text!r}")
    return user, password


def _ports(text: str) -> list[int]:
    ports: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or not 0 < int(part) < 65536:
            raise argparse.ArgumentTypeError(f"not a TCP port: {part!r}")
        ports.append(int(part))
    if not ports:
        raise argparse.ArgumentTypeError("expected a comma-separated list of ports")
    return ports


def _bind(text: str) -> str:
    try:
        Authority.parse(text)
    except (RamaError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}") from exc
    return text


def _upstream(text: str) -> str:
    scheme, sep, _ = text.partition("://")
    if not sep or scheme.lower() not in _UPSTREAM_SCHEMES:
        raise argparse.ArgumentTypeError(
            f"expected a proxy URL ({', '.join(s + '://' for s in _UPSTREAM_SCHEMES)}...), "
            f"not {text!r}"
        )
    return text


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, not {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {text!r}")
    return value


def _cidrs(text: str) -> list[str]:
    out = []
    for part in text.split(","):
        part = part.strip()
        try:
            ipaddress.ip_network(part, strict=False)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not an address or CIDR: {part!r}") from exc
        out.append(part)
    return out


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``proxy`` to the ``serve`` subcommands."""
    p: argparse.ArgumentParser = sub.add_parser(
        "proxy",
        help="HTTP, HTTPS-proxy and SOCKS5 forward proxy on one port",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = p.add_argument
    add(
        "--bind",
        type=_bind,
        default="127.0.0.1:8080",
        metavar="HOST:PORT",
        help="address to listen on; port 0 picks a free one (default 127.0.0.1:8080; "
        "e.g. --bind 0.0.0.0:3128, --bind [::1]:8080)",
    )
    add(
        "--auth",
        type=_user_pass,
        action="append",
        default=[],
        metavar="USER:PASS",
        help="require proxy credentials (HTTP Basic and SOCKS5 user/pass); repeat for more "
        "users (e.g. --auth john:secret --auth amy:pw)",
    )
    up = p.add_mutually_exclusive_group()
    up.add_argument(
        "--upstream",
        type=_upstream,
        metavar="URL",
        help="send everything through this proxy: http://, https://, socks5://, socks5h:// "
        "(e.g. --upstream http://user:pw@10.0.0.2:3128)",
    )
    up.add_argument(
        "--proxy-db",
        metavar="FILE",
        help="CSV or JSON upstream proxy DB, reloaded when it changes; the labels in the "
        "username choose (e.g. --proxy-db proxies.csv, then john-country-us:pw)",
    )
    add(
        "--upstream-ca",
        metavar="FILE",
        help="PEM CAs trusted for https:// upstream proxies instead of the system roots "
        "(e.g. --upstream https://10.0.0.2:3129 --upstream-ca corp-ca.pem)",
    )
    add(
        "--proxy-db-mode",
        choices=("random", "round_robin", "sticky"),
        default="random",
        help="how the proxy DB picks among matching upstreams (default random; "
        "a session-<key> label is always sticky)",
    )
    add(
        "--labels-lossy",
        action="store_true",
        help="skip unknown username labels instead of refusing them (with --proxy-db)",
    )
    add(
        "--tls-cert",
        metavar="FILE",
        help="PEM certificate chain: TLS connections to the port are the HTTPS proxy "
        "(e.g. --tls-cert proxy.pem --tls-key proxy.key)",
    )
    add("--tls-key", metavar="FILE", help="PEM private key for --tls-cert")
    add(
        "--tls-self-signed",
        action="store_true",
        help="serve the HTTPS proxy with a throwaway self-signed certificate "
        "(curl --proxy https://127.0.0.1:8080 --proxy-insecure ...)",
    )
    add(
        "--proxy-protocol",
        choices=("accept", "send-v1", "send-v2"),
        help="accept: read a HAProxy PROXY v1/v2 header from trusted peers (the real "
        "client then shows in logs and X-Forwarded-For); send-v1/send-v2: send one on "
        "every upstream connection (e.g. --proxy-protocol accept)",
    )
    add(
        "--proxy-protocol-trusted",
        type=_cidrs,
        metavar="CIDR,...",
        help="peers allowed to send a PROXY header (default loopback; "
        "e.g. --proxy-protocol-trusted 10.0.0.0/8,192.168.1.5)",
    )
    add(
        "--allow-connect-ports",
        type=_ports,
        metavar="PORT,...",
        help="ports CONNECT and SOCKS may reach; others are refused (e.g. "
        "--allow-connect-ports 443,8443)",
    )
    add(
        "--access-log",
        metavar="-|FILE",
        help="JSON-lines access log, one record per request or tunnel: - for stdout "
        "(e.g. --access-log /var/log/rama-proxy.jsonl)",
    )
    add(
        "--max-connections",
        type=_positive_int,
        metavar="N",
        help="concurrent client connections, per worker (default: what the fd limit "
        "allows, at most 10000; e.g. --max-connections 2000)",
    )
    add(
        "--timeout",
        type=_seconds,
        default=30.0,
        metavar="S",
        help="seconds for each wait on a client or an upstream (default 30; e.g. --timeout 10)",
    )
    add(
        "--connect-timeout",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="seconds to reach a target or an upstream proxy (default 10)",
    )
    add(
        "--idle-timeout",
        type=_seconds,
        default=300.0,
        metavar="S",
        help="seconds a connection or tunnel may be silent both ways (default 300)",
    )
    add(
        "--grace",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds in-flight requests and tunnels get on shutdown (default 10)",
    )
    add(
        "--workers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="processes sharing the port with SO_REUSEPORT, supervised by the parent "
        "(default 1; e.g. --workers 4)",
    )
    add("--no-socks", action="store_true", help="serve HTTP and HTTPS-proxy only (no SOCKS)")
    add(
        "--no-fast-path",
        action="store_true",
        help="serve every connection through the general service stack (the fast path "
        "for plain HTTP/1.1, CONNECT and SOCKS5 CONNECT answers the same, only faster; "
        "this is for comparing the two)",
    )
    add(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="log level on stderr (default info)",
    )
    _mitm.add_mitm_arguments(p)
    p.set_defaults(run=run)
    return p


def config_from_args(args: argparse.Namespace) -> ProxyServerConfig:
    """The :class:`~rama_proxy.ProxyServerConfig` the parsed flags describe."""
    return ProxyServerConfig(
        bind=args.bind,
        auth=list(args.auth),
        upstream=args.upstream,
        proxy_db=args.proxy_db,
        upstream_ca=args.upstream_ca,
        proxy_db_mode=args.proxy_db_mode,
        labels_strict=not args.labels_lossy,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_self_signed=args.tls_self_signed,
        proxy_protocol=args.proxy_protocol,
        proxy_protocol_trusted=args.proxy_protocol_trusted,
        allow_connect_ports=args.allow_connect_ports,
        access_log=args.access_log,
        max_connections=args.max_connections,
        timeout=args.timeout,
        connect_timeout=args.connect_timeout,
        idle_timeout=args.idle_timeout,
        grace=args.grace,
        workers=args.workers,
        socks=not args.no_socks,
        fast_path=not args.no_fast_path,
    )


def banner(config: ProxyServerConfig, addr: SocketAddress) -> str:
    """What startup prints: the address and the curl lines to try."""
    host = addr.ip
    if host.is_unspecified:
        host = ipaddress.ip_address("127.0.0.1" if host.version == 4 else "::1")
    shown = f"[{host}]:{addr.port}" if host.version == 6 else f"{host}:{addr.port}"
    kinds = ["HTTP"]
    if config.tls_cert or config.tls_self_signed:
        kinds.append("HTTPS-proxy")
    if config.socks:
        kinds.append("SOCKS5")
    workers = f", {config.workers} workers" if config.workers > 1 else ""
    lines = [f"rama proxy listening on {addr} ({', '.join(kinds)} on one port{workers})"]
    cred = ""
    if config.auth:
        user = config.auth[0][0]
        cred = f"{user}:PASSWORD@"
        lines.append(f"proxy auth required ({len(config.auth)} user(s)); replace PASSWORD")
    lines.append("try:")
    lines.append(f"  curl -x http://{cred}{shown} http://example.com/")
    lines.append(f"  curl -p -x http://{cred}{shown} https://example.com/")
    if config.socks:
        if cred:
            lines.append(f"  curl -x socks5h://{cred}{shown} https://example.com/")
        else:
            lines.append(f"  curl --socks5-hostname {shown} https://example.com/")
    if config.tls_cert or config.tls_self_signed:
        insecure = " --proxy-insecure" if config.tls_self_signed else ""
        lines.append(f"  curl{insecure} -x https://{cred}{shown} https://example.com/")
    lines.append("stop with Ctrl-C (SIGINT) or SIGTERM")
    return "\n".join(lines)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _anyio_run(fn: Callable[[], Any]) -> None:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        anyio.run(fn)
    else:
        anyio.run(fn, backend_options={"use_uvloop": True})


def _serve_one(
    config: ProxyServerConfig,
    ready: Callable[[SocketAddress], None],
    mitm_args: argparse.Namespace | None = None,
) -> int:
    """Build, bind and serve one process; returns the exit code."""
    try:
        server = ProxyServer(config)
        server.bind()  # fail now, with the address in the message
        setup = _mitm.install_mitm(server, mitm_args) if mitm_args is not None else None
    except (OSError, ValueError, RamaError) as exc:
        print(f"rama serve proxy: {exc}", file=sys.stderr)
        return 1
    # ready once serving under the Shutdown: a signal from then on is a graceful stop
    if setup is not None:
        _anyio_run(lambda: _mitm.serve_with_mitm(server, setup, ready))
    else:
        _anyio_run(lambda: serve_proxy(server=server, on_listening=ready))
    return 0


def _reserve_port(bind: str) -> tuple[socket.socket | None, str]:
    """For workers on port 0: hold a free port (bound, not listening) all of them can share."""
    auth = Authority.parse(bind)
    if auth.port != 0:
        return None, bind
    infos = socket.getaddrinfo(str(auth.host), 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(sockaddr)
    port = sock.getsockname()[1]
    host = f"[{sockaddr[0]}]" if family == socket.AF_INET6 else sockaddr[0]
    return sock, f"{host}:{port}"


def run(args: argparse.Namespace) -> int:
    """Run ``rama serve proxy`` with parsed ``args``; returns the exit code."""
    problem = _mitm.check_mitm_args(args)
    if problem is not None:
        print(f"rama serve proxy: {problem}", file=sys.stderr)
        return 2
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"rama serve proxy: {exc}", file=sys.stderr)
        return 2
    _setup_logging(args.log_level)
    mitm_args = args if args.mitm else None

    def announce(addr: SocketAddress) -> None:
        text = banner(config, addr)
        if mitm_args is not None:
            *head, last = text.split("\n")
            text = "\n".join([*head, *_mitm.banner_lines(mitm_args), last])
        print(text, flush=True)

    if config.workers == 1:
        return _serve_one(config, announce, mitm_args)
    try:
        holder, bind = _reserve_port(config.bind)
    except OSError as exc:
        print(f"rama serve proxy: cannot bind {config.bind}: {exc}", file=sys.stderr)
        return 1
    config.bind = bind
    config.reuse_port = True

    def worker(ready: Callable[[], None]) -> int:
        if holder is not None:
            holder.close()
        return _serve_one(config, lambda addr: ready(), mitm_args)

    def all_ready() -> None:
        if holder is not None:
            holder.close()
        announce(_address_of(bind))

    return run_workers(config.workers, worker, on_ready=all_ready)


def _address_of(bind: str) -> SocketAddress:
    auth = Authority.parse(bind)
    try:
        ip = ipaddress.ip_address(str(auth.host).strip("[]"))
    except ValueError:
        ip = ipaddress.ip_address(socket.gethostbyname(str(auth.host)))
    return SocketAddress(ip, auth.port)


def main(argv: Sequence[str]) -> int:
    """``rama serve proxy ARGS`` on its own (for tests and embedding)."""
    parser = argparse.ArgumentParser(prog="rama serve")
    add_parser(parser.add_subparsers(dest="kind", required=True))
    args = parser.parse_args(["proxy", *argv])
    return run(args)
