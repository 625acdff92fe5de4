"""Per-connection decision of the MITM: intercept, pass through untouched, or reject."""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from rama_core import Context
from rama_net import Authority, SocketAddress
from rama_tls import ClientHello

__all__ = [
    "HostPolicy",
    "Intercept",
    "InterceptAll",
    "MitmDecision",
    "MitmPolicy",
    "MitmRequest",
    "PassThrough",
    "RejectConnection",
    "mitm_policy_fn",
]


@dataclass(frozen=True, slots=True)
class MitmRequest:
    """What the policy sees of one tunnelled connection."""

    target: Authority
    """Where the client's CONNECT (or SOCKS5 CONNECT) goes."""
    client: SocketAddress | None
    """The client's address (from :class:`rama_net.SocketInfo`)."""
    user: str | None
    """The authenticated proxy user's name (:class:`rama_proxy.ProxyUser`), if any."""
    client_hello: ClientHello | None
    """The client's ClientHello (None: the tunnel carries plain text)."""

    @property
    def server_name(self) -> str | None:
        """The SNI the client sent, if any."""
        return self.client_hello.server_name if self.client_hello is not None else None

    @property
    def host(self) -> str:
        """The SNI, else the target host: the name a host pattern is matched against."""
        return self.server_name or str(self.target.host).strip("[]")


@dataclass(frozen=True, slots=True)
class Intercept:
    """Terminate TLS with a leaf from the CA and relay HTTP through the hooks."""


@dataclass(frozen=True, slots=True)
class PassThrough:
    """Forward the bytes untouched (the client keeps talking to the real server)."""


@dataclass(frozen=True, slots=True)
class RejectConnection:
    """Close the connection (the client sees its TLS handshake fail)."""

    reason: str = "rejected by policy"


MitmDecision: TypeAlias = Intercept | PassThrough | RejectConnection
"""What a :class:`MitmPolicy` answers."""


class MitmPolicy(Protocol):
    """Decides per connection (SNI, target, client address, user) what the MITM does."""

    async def decide(self, ctx: Context, request: MitmRequest) -> MitmDecision:
        """The decision for this connection."""
        ...


class InterceptAll:
    """Intercept every connection (the default)."""

    async def decide(self, ctx: Context, request: MitmRequest) -> MitmDecision:
        """Always :class:`Intercept`."""
        return _INTERCEPT


_INTERCEPT = Intercept()
_PASS = PassThrough()


def _matches(host: str, patterns: Sequence[str]) -> bool:
    host = host.lower().rstrip(".")
    for pattern in patterns:
        p = pattern.lower().rstrip(".")
        if fnmatch.fnmatchcase(host, p):
            return True
        if "/" in p:
            try:
                if ipaddress.ip_address(host) in ipaddress.ip_network(p, strict=False):
                    return True
            except ValueError:
                continue
    return False


class HostPolicy:
    """Glob patterns on the host (SNI, else the target): pass-through wins over intercept.

    ``intercept`` (None: every host not passed through) and ``pass_through``
    are shell globs (``*.bank.example``) or IP networks (``10.0.0.0/8``);
    ``reject`` hosts are closed. A host intercepted by neither list passes
    through.
    """

    def __init__(
        self,
        *,
        intercept: Sequence[str] | None = None,
        pass_through: Sequence[str] = (),
        reject: Sequence[str] = (),
    ) -> None:
        self.intercept = tuple(intercept) if intercept is not None else None
        self.pass_through = tuple(pass_through)
        self.reject = tuple(reject)

    async def decide(self, ctx: Context, request: MitmRequest) -> MitmDecision:
        """Match ``request.host`` against the lists."""
        host = request.host
        if self.reject and _matches(host, self.reject):
            return RejectConnection("host not allowed")
        if self.pass_through and _matches(host, self.pass_through):
            return _PASS
        if self.intercept is None or _matches(host, self.intercept):
            return _INTERCEPT
        return _PASS


class _FnPolicy:
    def __init__(self, fn: Callable[[Context, MitmRequest], Awaitable[MitmDecision]]) -> None:
        self.fn = fn

    async def decide(self, ctx: Context, request: MitmRequest) -> MitmDecision:
        return await self.fn(ctx, request)


def mitm_policy_fn(fn: Callable[[Context, MitmRequest], Awaitable[MitmDecision]]) -> MitmPolicy:
    """A :class:`MitmPolicy` from ``async def fn(ctx, request) -> MitmDecision``."""
    return _FnPolicy(fn)
