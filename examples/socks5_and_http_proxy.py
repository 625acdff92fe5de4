"""One port for HTTP, HTTPS-proxy and SOCKS5: the first bytes of each connection decide.

Run:
    python examples/socks5_and_http_proxy.py [--listen 127.0.0.1:1080] [--tls-self-signed]

then, all on the same port:
    curl -x http://127.0.0.1:1080 http://example.com/             # forward proxy
    curl -p -x http://127.0.0.1:1080 https://example.com/         # CONNECT tunnel
    curl --socks5-hostname 127.0.0.1:1080 https://example.com/    # SOCKS5h
    curl --proxy-insecure -x https://127.0.0.1:1080 http://example.com/   # with --tls-self-signed

:class:`~rama_proxy.ProxyDetector` peeks at each connection (bounded by
``peek_timeout``): ``0x05``/``0x04`` go to :class:`~rama_proxy.SocksProxy`, a
TLS ClientHello is terminated and served as HTTP, an HTTP method token goes to
:class:`~rama_proxy.HttpProxy`; anything else is closed. Both services share
one :class:`~rama_proxy.Egress` (direct here). Every request and tunnel is
one JSON line on stdout (the :class:`~rama_proxy.AccessLog`). SIGINT/SIGTERM
stop accepting and let tunnels in flight finish.
"""

from __future__ import annotations

import argparse
import logging

import anyio

from rama_core import Shutdown
from rama_net import TcpListener
from rama_proxy import AccessLog, Egress, HttpProxy, ProxyDetector, ProxyObservers, SocksProxy
from rama_tls import TlsAcceptorConfig, self_signed


async def main(args: argparse.Namespace) -> None:
    """Serve the one-port proxy until SIGINT/SIGTERM."""
    egress = Egress(connect_timeout=10)
    http = HttpProxy(egress=egress)
    detector = ProxyDetector(
        http=http,
        socks=SocksProxy(egress=egress),
        tls=TlsAcceptorConfig.single(self_signed("localhost", "127.0.0.1"))
        if args.tls_self_signed
        else None,
        peek_timeout=5,
    )
    listener = TcpListener.bind(args.listen)
    print(f"listening on {listener.local_addr}", flush=True)
    try:
        async with Shutdown(grace=5) as shutdown:
            ctx = shutdown.context()
            ctx.insert(ProxyObservers(AccessLog("-")))  # one JSON line per request/tunnel
            await listener.serve(detector, ctx=ctx)
    finally:
        await http.aclose()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", default="127.0.0.1:1080", help="host:port (port 0: any)")
    p.add_argument("--tls-self-signed", action="store_true", help="also serve the proxy behind TLS")
    p.add_argument("--backend", default="asyncio", choices=("asyncio", "trio"))
    return p.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    arguments = parse_args()
    anyio.run(main, arguments, backend=arguments.backend)
