"""An HTTP server behind haproxy (or any load balancer speaking the PROXY protocol) that
answers each client its real IP.

Run:  python examples/haproxy_client_ip.py [--listen 127.0.0.1:0] [--trusted CIDR]...
                                           [--require] [--backend asyncio|trio]

Put it behind haproxy with ``server app 127.0.0.1:PORT send-proxy-v2`` (or
``send-proxy`` for v1). It prints ``listening on HOST:PORT`` once it accepts
connections and serves until SIGINT/SIGTERM (graceful; prints ``stopped (REASON)``).

Routes:

- ``GET /``: the client's IP as text (the PROXY header's source when a trusted
  peer sent one, else the TCP peer);
- ``GET /json``: the client and local address, the transport peer (the load
  balancer) and the header's version and TLVs (authority, ALPN, unique id, TLS).

What it shows: :class:`rama_proxy.ProxyProtocolLayer` goes first on the stream
(before HTTP, and before TLS when there is TLS); it puts the real client into
``SocketInfo``, so handlers (and access logs, rate limits...) need no change, and
the header itself into the Context as ``ProxyProtocolHeader``. ``--trusted``
lists the peers allowed to send a header (a header from anyone else is refused
and logged); without ``--require`` clients may also connect directly.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from rama_core import Context, Shutdown, service_fn
from rama_http import Request, Response
from rama_http.server import Http1Server, ServerConfig
from rama_net import SocketInfo, TcpListener, TcpServerConfig
from rama_proxy import ProxyProtocolHeader, ProxyProtocolLayer, TransportSocketInfo

__all__ = ["handle", "main", "run"]


@service_fn
async def handle(ctx: Context, req: Request) -> Response:
    """Answer the client its IP (``/``) or everything known about the connection (``/json``)."""
    info = ctx.require(SocketInfo)
    if req.path == "/" and req.method in ("GET", "HEAD"):
        return Response.from_text(f"{info.peer_addr.ip}\n")
    if req.path == "/json" and req.method == "GET":
        header = ctx.get(ProxyProtocolHeader)
        transport = ctx.get(TransportSocketInfo)
        out: dict[str, Any] = {
            "client": str(info.peer_addr),
            "local": str(info.local_addr),
            "via": str(transport.peer_addr) if transport is not None else None,
            "proxy_protocol": header.version if header is not None else None,
        }
        if header is not None:
            ssl = header.ssl
            out["tlvs"] = {
                "authority": header.authority,
                "alpn": header.alpn.decode("ascii", "replace") if header.alpn else None,
                "unique_id": header.unique_id.hex() if header.unique_id else None,
                "tls_version": ssl.version if ssl is not None else None,
                "tls_cipher": ssl.cipher if ssl is not None else None,
            }
        return Response.from_json(out)
    return Response.error(404)


async def run(listen: str, trusted: Sequence[str] | None, require: bool, grace: float) -> None:
    """Serve until a signal asks to stop."""
    listener = TcpListener.bind(listen)
    http = Http1Server(handle, ServerConfig(header_read_timeout=10, keep_alive_timeout=30))
    # The PROXY header comes first on the connection: the layer wraps the HTTP server.
    service = ProxyProtocolLayer(trusted=trusted, require_header=require, header_timeout=5).layer(
        http
    )
    async with Shutdown(grace=grace) as shutdown:
        shutdown.spawn(listener.serve, service, TcpServerConfig(max_connections=1000))
        print(f"listening on {listener.local_addr}", flush=True)
    print(f"stopped ({shutdown.outcome})", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="real client IP behind haproxy (rama example)")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port (port 0: any)")
    parser.add_argument(
        "--trusted",
        action="append",
        metavar="CIDR",
        help="peers allowed to send a PROXY header, e.g. 10.0.0.0/8 (repeat; default: any)",
    )
    parser.add_argument("--require", action="store_true", help="trusted peers must send one")
    parser.add_argument("--grace", type=float, default=5.0, help="drain seconds on shutdown")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("-v", "--verbose", action="store_true", help="log refused headers")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    anyio.run(run, args.listen, args.trusted, args.require, args.grace, backend=args.backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
