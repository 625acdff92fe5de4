"""An httpx transport on the rama client: ``httpx.AsyncClient(transport=HttpxTransport(client))``.

httpx keeps its own features (redirects, cookies, auth, decoding); this
transport sends each request through the rama stack's :class:`PoolTransport`
(pool, connectors, HTTP/1.1 engine) and maps rama's typed errors to httpx's
exceptions, also while the body streams.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx

from rama_core import Context

from .._body import Body
from .._errors import LocalProtocolError, RemoteProtocolError
from .._message import Request
from .._uri import Uri
from ._errors import (
    ConnectError,
    ConnectTimeout,
    PoolTimeout,
    ProxyError,
    ReadError,
    ReadTimeout,
    TimeoutException,
    WriteError,
    WriteTimeout,
)
from ._timeout import Timeout

if TYPE_CHECKING:
    from ._client import HttpClient

__all__ = ["HttpxTransport"]

_MAP: list[tuple[type[Exception], type[httpx.TransportError]]] = [
    (ConnectTimeout, httpx.ConnectTimeout),
    (ReadTimeout, httpx.ReadTimeout),
    (WriteTimeout, httpx.WriteTimeout),
    (PoolTimeout, httpx.PoolTimeout),
    (TimeoutException, httpx.TimeoutException),
    (ProxyError, httpx.ProxyError),
    (ConnectError, httpx.ConnectError),
    (ReadError, httpx.ReadError),
    (WriteError, httpx.WriteError),
    (RemoteProtocolError, httpx.RemoteProtocolError),
    (LocalProtocolError, httpx.LocalProtocolError),
]


def _mapped(exc: Exception, request: httpx.Request) -> Exception | None:
    for ours, theirs in _MAP:
        if isinstance(exc, ours):
            if theirs is httpx.TimeoutException:
                return httpx.ReadTimeout(str(exc), request=request)
            return theirs(str(exc), request=request)
    return None


def _timeout_of(request: httpx.Request, default: Timeout) -> Timeout:
    t = request.extensions.get("timeout")
    if not isinstance(t, dict):
        return default
    return Timeout(
        connect=t.get("connect", default.connect),
        read=t.get("read", default.read),
        write=t.get("write", default.write),
        pool=t.get("pool", default.pool),
    )


class _Stream(httpx.AsyncByteStream):
    def __init__(self, body: Body, request: httpx.Request) -> None:
        self._body = body
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._body:
                yield chunk
        except Exception as e:
            mapped = _mapped(e, self._request)
            if mapped is None:
                raise
            raise mapped from e

    async def aclose(self) -> None:
        await self._body.aclose()


class HttpxTransport(httpx.AsyncBaseTransport):
    """Send httpx requests through a :class:`~rama_http.client.HttpClient`'s connection stack."""

    def __init__(self, client: HttpClient) -> None:
        self.client = client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """One exchange; errors become httpx's TransportError subclasses."""
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in request.headers.raw]
        try:
            body = Body(request.content)
        except httpx.RequestNotRead:
            body = Body.from_iter(request.stream)  # type: ignore[arg-type]
        req = Request(request.method, Uri.parse(str(request.url)), headers=headers, body=body)
        ctx = Context()
        ctx.insert(_timeout_of(request, self.client.timeout))
        try:
            resp = await self.client.transport.serve(ctx, req)
        except Exception as e:
            mapped = _mapped(e, request)
            if mapped is None:
                raise
            raise mapped from e
        return httpx.Response(
            resp.status,
            headers=resp.headers.raw(),
            stream=_Stream(resp.body, request),
            extensions={
                "http_version": resp.version.value.encode("ascii"),
                "reason_phrase": (resp.reason or "").encode("latin-1"),
            },
        )

    async def aclose(self) -> None:
        """Close the client's pool."""
        await self.client.aclose()
