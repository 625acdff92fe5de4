"""What the MITM tells its observers (a flow recorder) and asks its hooks.

- :class:`MitmConnection`: one tunnelled client connection (target, client,
  user, ClientHello, both TLS sides, bytes, duration);
- :class:`HttpFlow`: one request/response exchange on it (heads, body byte
  counts, timings, error);
- :class:`WebSocketMessage`: one message of a relayed WebSocket;
- :class:`MitmObserver`: called with all of the above (no-op methods:
  override what you record); it must not block (no I/O on the event loop);
- :class:`MitmHooks`: the interception hooks (modify heads and bodies, answer
  locally, rewrite/drop/inject WebSocket messages).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

from rama_http import Request, Response
from rama_net import Authority, SocketAddress
from rama_tls import ClientHello, NegotiatedTls

__all__ = [
    "ConnectionMode",
    "HttpFlow",
    "MitmConnection",
    "MitmHooks",
    "MitmObserver",
    "MitmObservers",
    "WebSocketMessage",
]

ConnectionMode = Literal["intercept", "pass_through", "reject", "raw", "http", "error"]
"""What the MITM did with a connection: TLS intercepted, tunnelled untouched
(a pass-through host, or not HTTP: ``raw``), plain HTTP relayed, refused, or failed early."""

_ids = itertools.count(1)


def _next_id() -> int:
    return next(_ids)


@dataclass(eq=False)
class MitmConnection:
    """One client connection handed to the MITM."""

    target: Authority
    client: SocketAddress | None = None
    user: str | None = None
    client_hello: ClientHello | None = None
    mode: ConnectionMode = "raw"
    id: int = field(default_factory=_next_id)
    started: float = field(default_factory=anyio.current_time)
    """``anyio.current_time()`` when the MITM got the connection."""
    finished: float | None = None
    client_tls: NegotiatedTls | None = None
    """The TLS the MITM negotiated with the client (intercepted connections)."""
    upstream_tls: NegotiatedTls | None = None
    """The TLS the MITM negotiated with the server (``peer_certificate`` is the real one)."""
    upstream_addr: SocketAddress | None = None
    """The address dialled (the target's, or the upstream proxy's)."""
    upstream_proxy: str | None = None
    """The upstream proxy used (credentials redacted), if any."""
    upstream_dial_started: float | None = None
    """When the MITM started to open its (first) upstream connection (for HAR ``connect``)."""
    upstream_connected: float | None = None
    """When that TCP (or proxy tunnel) connection was up."""
    upstream_tls_done: float | None = None
    """When its TLS handshake finished (for HAR ``ssl``)."""
    bytes_from_client: int = 0
    """Tunnelled connections: bytes the client sent (raw, pass-through)."""
    bytes_from_server: int = 0
    error: str | None = None
    """A short cause when the connection failed (``upstream certificate``...)."""

    @property
    def server_name(self) -> str | None:
        """The SNI of the client's hello."""
        return self.client_hello.server_name if self.client_hello is not None else None

    @property
    def duration(self) -> float | None:
        """Seconds the connection lasted (None while open)."""
        return None if self.finished is None else self.finished - self.started


@dataclass(eq=False)
class HttpFlow:
    """One request and its response through the MITM.

    Hooks may replace :attr:`request` and :attr:`response` or change them in
    place; :attr:`metadata` is theirs to share state between hooks.
    """

    connection: MitmConnection
    request: Request
    scheme: str = "https"
    authority: str = ""
    """The host (and port) the request is for."""
    response: Response | None = None
    id: int = field(default_factory=_next_id)
    started: float = field(default_factory=anyio.current_time)
    request_sent: float | None = None
    """When the request head went upstream."""
    response_started: float | None = None
    """When the response head arrived (time to first byte)."""
    finished: float | None = None
    request_bytes: int = 0
    """Body bytes relayed client -> server."""
    response_bytes: int = 0
    error: str | None = None
    websocket: bool = False
    """Whether the exchange became a WebSocket."""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The request's absolute URL."""
        target = self.request.target
        if target.startswith(("http://", "https://")):
            return target
        return f"{self.scheme}://{self.authority}{target}"


@dataclass(eq=False)
class WebSocketMessage:
    """One WebSocket message; ``from_client`` is its direction."""

    from_client: bool
    content: str | bytes
    timestamp: float = field(default_factory=anyio.current_time)
    injected: bool = False
    """Created by a hook rather than received."""

    @property
    def is_text(self) -> bool:
        """Text (``str``) or binary (``bytes``)."""
        return isinstance(self.content, str)


class MitmObserver:
    """Receives everything a flow recorder needs; override the methods you use.

    Calls happen on the event loop in the order things happen; an observer
    must return quickly (hand slow work to a task or a thread).
    """

    def connection_started(self, conn: MitmConnection) -> None:
        """A connection was handed to the MITM (``mode`` and TLS still unknown)."""

    def connection_finished(self, conn: MitmConnection) -> None:
        """It ended; tunnel byte counts, TLS sides, ``error`` and ``finished`` are set."""

    def request(self, flow: HttpFlow) -> None:
        """A request head (after the request hooks) is about to go upstream."""

    def request_body(self, flow: HttpFlow, chunk: bytes) -> None:
        """A request body chunk went upstream (as sent, after hooks)."""

    def response(self, flow: HttpFlow) -> None:
        """A response head (after the response hooks) is about to go to the client."""

    def response_body(self, flow: HttpFlow, chunk: bytes) -> None:
        """A response body chunk went to the client (as sent)."""

    def flow_finished(self, flow: HttpFlow) -> None:
        """The exchange is over (``error`` set when it failed)."""

    def websocket_message(self, flow: HttpFlow, message: WebSocketMessage) -> None:
        """A WebSocket message was relayed (as forwarded, after hooks)."""


class MitmObservers(MitmObserver):
    """Several observers as one: each call goes to each, in order."""

    def __init__(self, *observers: MitmObserver) -> None:
        self.observers = observers

    def connection_started(self, conn: MitmConnection) -> None:
        """Fan out."""
        for o in self.observers:
            o.connection_started(conn)

    def connection_finished(self, conn: MitmConnection) -> None:
        """Fan out."""
        for o in self.observers:
            o.connection_finished(conn)

    def request(self, flow: HttpFlow) -> None:
        """Fan out."""
        for o in self.observers:
            o.request(flow)

    def request_body(self, flow: HttpFlow, chunk: bytes) -> None:
        """Fan out."""
        for o in self.observers:
            o.request_body(flow, chunk)

    def response(self, flow: HttpFlow) -> None:
        """Fan out."""
        for o in self.observers:
            o.response(flow)

    def response_body(self, flow: HttpFlow, chunk: bytes) -> None:
        """Fan out."""
        for o in self.observers:
            o.response_body(flow, chunk)

    def flow_finished(self, flow: HttpFlow) -> None:
        """Fan out."""
        for o in self.observers:
            o.flow_finished(flow)

    def websocket_message(self, flow: HttpFlow, message: WebSocketMessage) -> None:
        """Fan out."""
        for o in self.observers:
            o.websocket_message(flow, message)


class MitmHooks:
    """Interception hooks; subclass and override. Several run as an onion (a layer each):
    request hooks in the order given, response hooks in reverse; a request hook
    that answers locally skips the later hooks and the server.

    Heads: :meth:`request` may change ``flow.request`` (or answer locally by
    returning a Response), :meth:`response` may change ``flow.response``.
    Bodies stream untouched unless :meth:`wants_request_body` /
    :meth:`wants_response_body` say so: then the body is buffered (up to the
    MITM's ``max_body_size``; over it the client gets 413 for a request, 502
    for a response), decompressed when :attr:`decode_bodies` and the encoding
    is known (gzip, deflate, br, zstd), passed to :meth:`request_body` /
    :meth:`response_body`, and recompressed after.
    """

    decode_bodies: bool = True
    """Hand body hooks the decoded text; the result is encoded back."""

    async def request(self, flow: HttpFlow) -> Response | None:
        """Inspect or modify ``flow.request`` (head); return a Response to answer locally."""
        return None

    def wants_request_body(self, flow: HttpFlow) -> bool:
        """Whether :meth:`request_body` should see this request's body."""
        return False

    async def request_body(self, flow: HttpFlow, body: bytes) -> bytes:
        """The (decoded) request body; return what goes upstream."""
        return body

    async def response(self, flow: HttpFlow) -> None:
        """Inspect or modify ``flow.response`` (head)."""

    def wants_response_body(self, flow: HttpFlow) -> bool:
        """Whether :meth:`response_body` should see this response's body."""
        return False

    async def response_body(self, flow: HttpFlow, body: bytes) -> bytes:
        """The (decoded) response body; return what goes to the client."""
        return body

    async def websocket_message(
        self, flow: HttpFlow, message: WebSocketMessage
    ) -> WebSocketMessage | Sequence[WebSocketMessage] | None:
        """One message: return it (changed or not) to forward it, None to drop it,
        or several to inject more (each goes in its own ``from_client`` direction)."""
        return message
