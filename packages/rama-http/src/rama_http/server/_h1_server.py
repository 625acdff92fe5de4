"""The HTTP/1.1 server as a stream service."""

from __future__ import annotations

from anyio.abc import ByteStream

from rama_core import Context, Service

from .._message import Request, Response
from ._config import ServerConfig
from ._h1_conn import serve_http1

__all__ = ["Http1Server"]


class Http1Server:
    """A ``Service[ByteStream, None]`` serving HTTP/1.1 with an HTTP service.

    Plug it into a TCP listener (``rama_net``'s, or any anyio listener); every
    connection is served by :func:`~rama_http.server.serve_http1`.
    """

    def __init__(
        self, service: Service[Request, Response], config: ServerConfig | None = None
    ) -> None:
        self.service = service
        self.config = config or ServerConfig()

    async def serve(self, ctx: Context, stream: ByteStream) -> None:
        """Serve one connection until it ends."""
        await serve_http1(ctx, stream, self.service, self.config)
