"""What the HTTP proxy does with one CONNECT request: a per-request policy hook.

A :class:`ConnectPolicy` looks at the target (and the request, and the
Context: the :class:`~rama_proxy.ProxyUser`, the client's
:class:`~rama_net.SocketInfo`) and answers one of:

- :class:`Tunnel`: open the tunnel (through the egress's upstream selection,
  or through the given ``upstream`` proxy);
- :class:`Reject`: answer ``403`` (or another 4xx) with a short reason;
- :class:`Handoff`: answer ``200`` and hand the client's stream to another
  ``Service[ByteStream, None]`` (a MITM, a local service); it finds the
  target in the Context as :class:`ConnectTarget`.

The default, :class:`AllowAll`, tunnels everything. ``connect_policy_fn``
turns a plain async function into a policy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from anyio.abc import ByteStream

from rama_core import Context, Service
from rama_http import Request
from rama_http.client import ProxyConfig
from rama_net import Authority

__all__ = [
    "AllowAll",
    "ConnectDecision",
    "ConnectPolicy",
    "ConnectTarget",
    "Handoff",
    "Reject",
    "Tunnel",
    "connect_policy_fn",
]


@dataclass(frozen=True, slots=True)
class Tunnel:
    """Open the tunnel; ``upstream`` overrides the egress's selection for this request."""

    upstream: ProxyConfig | None = None
    lazy: bool | None = None
    """Answer 200 before the egress is up (None: the proxy's default)."""


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse the CONNECT with ``status`` (403) and a short ``reason`` shown to the client."""

    reason: str = "tunnel not allowed"
    status: int = 403


@dataclass(frozen=True, slots=True)
class Handoff:
    """Answer 200 and give the client's stream to ``service`` (which owns it from then on)."""

    service: Service[ByteStream, None]


ConnectDecision: TypeAlias = Tunnel | Reject | Handoff
"""What a :class:`ConnectPolicy` answers."""


@dataclass(frozen=True, slots=True)
class ConnectTarget:
    """The target of a CONNECT (a Context extension for a :class:`Handoff` service)."""

    authority: Authority
    request: Request


class ConnectPolicy(Protocol):
    """Decides, per CONNECT request, whether and how to tunnel."""

    async def decide(self, ctx: Context, target: Authority, req: Request) -> ConnectDecision:
        """The decision for ``CONNECT target`` (``ctx`` has the ProxyUser, SocketInfo...)."""
        ...


class AllowAll:
    """Tunnel every CONNECT through the egress (the default policy)."""

    async def decide(self, ctx: Context, target: Authority, req: Request) -> ConnectDecision:
        """Always :class:`Tunnel`."""
        return _TUNNEL


_TUNNEL = Tunnel()


class _FnPolicy:
    def __init__(
        self, fn: Callable[[Context, Authority, Request], Awaitable[ConnectDecision]]
    ) -> None:
        self.fn = fn

    async def decide(self, ctx: Context, target: Authority, req: Request) -> ConnectDecision:
        return await self.fn(ctx, target, req)


def connect_policy_fn(
    fn: Callable[[Context, Authority, Request], Awaitable[ConnectDecision]],
) -> ConnectPolicy:
    """A :class:`ConnectPolicy` from ``async def fn(ctx, target, req) -> ConnectDecision``."""
    return _FnPolicy(fn)
