"""Set, override, append or remove headers on requests and responses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rama_core import Context, Service

from .._headers import Headers, validate_header
from .._message import Request, Response

__all__ = ["HeaderRule", "SetHeaders", "SetHeadersLayer"]

HttpService = Service[Request, Response]
Mode = Literal["override", "if_missing", "append", "remove"]


@dataclass(frozen=True, slots=True)
class HeaderRule:
    """One edit: ``override`` (replace all), ``if_missing``, ``append`` or ``remove``."""

    name: str
    value: str = ""
    mode: Mode = "override"

    def __post_init__(self) -> None:
        if self.mode != "remove":
            validate_header(self.name, self.value)

    def apply(self, headers: Headers) -> None:
        """Edit ``headers`` in place (an override keeps the header's first position)."""
        if self.mode == "remove":
            headers.remove(self.name)
        elif self.mode == "append":
            headers.add(self.name, self.value)
        elif self.mode == "if_missing":
            headers.setdefault(self.name, self.value)
        else:
            headers.set(self.name, self.value)


class SetHeaders:
    """``inner`` with request rules applied before and response rules after."""

    __slots__ = ("inner", "request_rules", "response_rules")

    def __init__(
        self,
        inner: HttpService,
        request_rules: Sequence[HeaderRule],
        response_rules: Sequence[HeaderRule],
    ) -> None:
        self.inner = inner
        self.request_rules = tuple(request_rules)
        self.response_rules = tuple(response_rules)

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Edit, serve, edit."""
        for rule in self.request_rules:
            rule.apply(req.headers)
        resp = await self.inner.serve(ctx, req)
        for rule in self.response_rules:
            rule.apply(resp.headers)
        return resp


class SetHeadersLayer:
    """``SetHeadersLayer(response=[HeaderRule("Server", "rama")], request=[...])``."""

    __slots__ = ("request", "response")

    def __init__(
        self, *, request: Sequence[HeaderRule] = (), response: Sequence[HeaderRule] = ()
    ) -> None:
        self.request = tuple(request)
        self.response = tuple(response)

    def layer(self, inner: HttpService) -> SetHeaders:
        """Wrap ``inner``."""
        return SetHeaders(inner, self.request, self.response)
