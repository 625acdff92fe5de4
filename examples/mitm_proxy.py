"""A MITM proxy: HTTPS interception with hooks that add a header and rewrite WebSocket messages.

Run:  python examples/mitm_proxy.py [--listen 127.0.0.1:8080] [--ca-dir DIR]
                                    [--upstream-ca FILE | --upstream-insecure] [--mirror-tls]
                                    [--pass-through GLOB]... [--socks-listen HOST:PORT]

It prints ``listening on HOST:PORT`` (the HTTP proxy), ``socks on HOST:PORT``
when ``--socks-listen`` is given, and ``ca PATH`` (the certificate clients
must trust; created with its key in ``--ca-dir`` on first run), then serves
until SIGINT/SIGTERM. Try it::

    curl --cacert DIR/ca.pem -x http://127.0.0.1:8080 https://example.com/ -i

What it shows: :class:`rama_proxy.mitm.MitmProxy` gets each CONNECT (and
SOCKS5 CONNECT) from the proxies; it connects the real server first, offering
what the client offered in ALPN, then shows the client a leaf from the CA for
the same protocol. :class:`Tag` adds ``X-Rama-Mitm`` to every request and
response; text WebSocket messages from the server get a ``[mitm] `` prefix.
``--pass-through`` hosts keep their real certificate (a raw tunnel);
``--mirror-tls`` makes the server see the client's own TLS fingerprint.
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
from rama_proxy.mitm import HostPolicy, HttpFlow, MitmHooks, MitmProxy, WebSocketMessage
from rama_tls import CertificateAuthority

__all__ = ["Tag", "load_or_create_ca", "main", "run"]


class Tag(MitmHooks):
    """Marks requests and responses, and rewrites the server's text WebSocket messages."""

    async def request(self, flow: HttpFlow) -> None:
        """Tell the server the request went through the MITM."""
        flow.request.headers.add("X-Rama-Mitm", "1")

    async def response(self, flow: HttpFlow) -> None:
        """Tell the client the response was intercepted."""
        if flow.response is not None:
            flow.response.headers.add("X-Rama-Mitm", "intercepted")

    async def websocket_message(
        self, flow: HttpFlow, message: WebSocketMessage
    ) -> WebSocketMessage:
        """Prefix the server's text messages."""
        if not message.from_client and isinstance(message.content, str):
            message.content = "[mitm] " + message.content
        return message


def load_or_create_ca(ca_dir: Path) -> CertificateAuthority:
    """``ca_dir/ca.pem`` and ``ca.key`` (key mode 0600), created on first use."""
    cert, key = ca_dir / "ca.pem", ca_dir / "ca.key"
    if cert.exists() and key.exists():
        return CertificateAuthority.load(cert, key)
    ca_dir.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority.create("rama MITM example CA")
    ca.save(cert, key)
    return ca


async def run(args: argparse.Namespace) -> None:
    """Serve until a signal asks to stop."""
    ca_dir = Path(args.ca_dir)
    ca = load_or_create_ca(ca_dir)
    mitm = MitmProxy(
        ca,
        hooks=[Tag()],
        policy=HostPolicy(pass_through=args.pass_through or ()),
        upstream_insecure=args.upstream_insecure,
        upstream_ca=args.upstream_ca,
        mirror_tls=args.mirror_tls,
    )
    http_proxy = HttpProxy(connect_policy=mitm.connect_policy())
    listener = TcpListener.bind(args.listen)
    socks_listener = TcpListener.bind(args.socks_listen) if args.socks_listen else None
    async with Shutdown(grace=args.grace) as shutdown:
        shutdown.spawn(listener.serve, HttpServer(http_proxy))
        print(f"listening on {listener.local_addr}", flush=True)
        if socks_listener is not None:
            shutdown.spawn(socks_listener.serve, SocksProxy(connect_handoff=mitm))
            print(f"socks on {socks_listener.local_addr}", flush=True)
        print(f"ca {ca_dir / 'ca.pem'}", flush=True)
    await http_proxy.aclose()
    print(f"stopped ({shutdown.outcome})", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="MITM proxy with hooks (rama example)")
    parser.add_argument("--listen", default="127.0.0.1:8080", help="host:port (port 0: any)")
    parser.add_argument("--socks-listen", help="also serve SOCKS5 on host:port")
    parser.add_argument("--ca-dir", default="rama-mitm-ca", help="holds ca.pem and ca.key")
    trust = parser.add_mutually_exclusive_group()
    trust.add_argument("--upstream-ca", help="PEM file of the CAs trusted for servers")
    trust.add_argument("--upstream-insecure", action="store_true", help="do not verify servers")
    parser.add_argument("--mirror-tls", action="store_true", help="send the client's ClientHello")
    parser.add_argument("--pass-through", action="append", metavar="GLOB", help="not intercepted")
    parser.add_argument("--grace", type=float, default=5.0, help="drain seconds on shutdown")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each connection")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    anyio.run(run, args, backend=args.backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
