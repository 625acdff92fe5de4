"""A local HTTPS origin for tests: a rama-http service behind a certificate from a test CA.

Serves h2 and HTTP/1.1 (by ALPN) on 127.0.0.1 with a leaf for ``localhost`` and
``127.0.0.1``; yields the port and stops the server when the block ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio

from rama_core import Context, service_fn
from rama_http import Request, Response
from rama_http.server import serve
from rama_net import TcpListener
from rama_tls import CertificateAuthority, StaticCertResolver, TlsAcceptorConfig

__all__ = ["tls_origin"]


@asynccontextmanager
async def tls_origin(
    ca: CertificateAuthority, handler: Callable[[Context, Request], Awaitable[Response]]
) -> AsyncIterator[int]:
    """Serve ``handler`` over TLS (certificate from ``ca``) on a free port; yields the port."""
    tls = TlsAcceptorConfig(
        resolver=StaticCertResolver(default=ca.issue("localhost", "127.0.0.1")),
        alpn_protocols=("h2", "http/1.1"),
    )
    async with TcpListener.bind("127.0.0.1:0") as listener, anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(listener, service_fn(handler), tls=tls))
        try:
            yield listener.local_addr.port
        finally:
            tg.cancel_scope.cancel()
