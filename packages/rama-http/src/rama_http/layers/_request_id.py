"""A request id per request: kept from the client (or a proxy) when valid, else generated."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from rama_core import Context, Service

from .._message import Request, Response

__all__ = ["RequestId", "RequestIdLayer", "RequestIdService"]

HttpService = Service[Request, Response]
_VALID = re.compile(r"^[\x21-\x7e]{1,128}$")


@dataclass(frozen=True, slots=True)
class RequestId:
    """The request's id (a Context extension)."""

    value: str


class RequestIdService:
    """Sets the id header on the request (for the handler and upstreams) and the response."""

    __slots__ = ("generate", "header", "inner", "trust_incoming")

    def __init__(
        self,
        inner: HttpService,
        *,
        header: str = "X-Request-Id",
        generate: Callable[[], str] = lambda: uuid.uuid4().hex,
        trust_incoming: bool = True,
    ) -> None:
        self.inner = inner
        self.header = header
        self.generate = generate
        self.trust_incoming = trust_incoming

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Propagate or generate, then echo on the response."""
        incoming = req.headers.get(self.header) if self.trust_incoming else None
        if incoming is not None and _VALID.match(incoming):
            rid = incoming
        else:
            rid = self.generate()
            req.headers.set(self.header, rid)
        ctx.insert(RequestId(rid))
        resp = await self.inner.serve(ctx, req)
        resp.headers.set(self.header, rid)
        return resp


class RequestIdLayer:
    """Layer producing :class:`RequestIdService`."""

    __slots__ = ("generate", "header", "trust_incoming")

    def __init__(
        self,
        *,
        header: str = "X-Request-Id",
        generate: Callable[[], str] = lambda: uuid.uuid4().hex,
        trust_incoming: bool = True,
    ) -> None:
        self.header = header
        self.generate = generate
        self.trust_incoming = trust_incoming
        """Keep a valid incoming id (set False at an edge that faces untrusted clients)."""

    def layer(self, inner: HttpService) -> RequestIdService:
        """Wrap ``inner``."""
        return RequestIdService(
            inner, header=self.header, generate=self.generate, trust_incoming=self.trust_incoming
        )
