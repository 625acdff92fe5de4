"""Events the sans-IO h2 engine reports and the errors its commands raise.

:meth:`H2Engine.receive_data` (in ``rama_http._h2._engine``) turns the peer's bytes into
a list of these events. Header fields are ``(name, value)`` tuples of bytes,
exactly as decoded (order, repeats and bytes kept), so a fingerprint can be
computed from them. ``end_stream`` is carried by the event that ended the
stream (there is no separate "stream ended" event: fewer objects per request).
"""

from __future__ import annotations

from dataclasses import dataclass

from rama_http import LocalProtocolError

__all__ = [
    "ConnectionFailed",
    "ConnectionTerminated",
    "DataReceived",
    "Event",
    "FlowControlBlocked",
    "H2EngineError",
    "Header",
    "InformationalResponseReceived",
    "PingAckReceived",
    "PingReceived",
    "PriorityReceived",
    "PushPromiseReceived",
    "RemoteSettingsChanged",
    "RequestReceived",
    "ResponseReceived",
    "SettingsAcknowledged",
    "StreamClosedError",
    "StreamPriority",
    "StreamRefused",
    "StreamReset",
    "TooManyStreamsError",
    "TrailersReceived",
    "UnknownFrameReceived",
    "WindowUpdated",
]

Header = tuple[bytes, bytes]
"""One decoded header field: ``(name, value)`` as bytes on the wire (after HPACK)."""


@dataclass(frozen=True, slots=True)
class StreamPriority:
    """A stream dependency (RFC 9113 section 5.3.2, deprecated but still sent by browsers).

    ``weight`` is the effective weight 1..256 (the wire byte plus one).
    """

    depends_on: int = 0
    weight: int = 16
    exclusive: bool = False


class Event:
    """Base of every engine event."""

    __slots__ = ()


@dataclass(slots=True)
class RequestReceived(Event):
    """A peer (client) opened a stream with a request header block (server role)."""

    stream_id: int
    headers: list[Header]
    end_stream: bool = False
    priority: StreamPriority | None = None


@dataclass(slots=True)
class ResponseReceived(Event):
    """The final response header block of a stream we opened (client role)."""

    stream_id: int
    headers: list[Header]
    end_stream: bool = False


@dataclass(slots=True)
class InformationalResponseReceived(Event):
    """A 1xx response header block (client role); the final response follows."""

    stream_id: int
    headers: list[Header]


@dataclass(slots=True)
class TrailersReceived(Event):
    """A trailing header block; it always ends the stream."""

    stream_id: int
    headers: list[Header]
    end_stream: bool = True


@dataclass(slots=True)
class DataReceived(Event):
    """DATA for a stream.

    ``flow_controlled_length`` counts padding too; with manual window updates give
    it back with ``acknowledge_received_data`` once the data is consumed.
    """

    stream_id: int
    data: bytes
    flow_controlled_length: int
    end_stream: bool = False


@dataclass(slots=True)
class StreamReset(Event):
    """A stream ended abnormally.

    ``remote`` is True when the peer sent RST_STREAM (or a GOAWAY that did not
    cover the stream), False when the engine reset it for a stream error.
    ``retryable`` is True when the peer never processed the stream (a GOAWAY
    whose last-stream-id is below it, or REFUSED_STREAM): the request may be
    sent again on another connection.
    """

    stream_id: int
    error_code: int
    remote: bool = True
    retryable: bool = False


@dataclass(slots=True)
class StreamRefused(Event):
    """The engine refused a stream the peer opened before the application saw it.

    ``reason`` is ``"max_concurrent_streams"`` or ``"goaway"``; RST_STREAM
    (REFUSED_STREAM) is queued. Reported for flood accounting.
    """

    stream_id: int
    reason: str


@dataclass(slots=True)
class WindowUpdated(Event):
    """The peer widened a send window (``stream_id`` 0: the connection's)."""

    stream_id: int
    delta: int


@dataclass(slots=True)
class RemoteSettingsChanged(Event):
    """A SETTINGS frame from the peer, applied and acknowledged.

    ``settings`` keeps the frame's ``(identifier, value)`` pairs in wire order,
    repeats and unknown identifiers included.
    """

    settings: list[tuple[int, int]]


@dataclass(slots=True)
class SettingsAcknowledged(Event):
    """The peer acknowledged one of our SETTINGS frames; its values now apply."""

    settings: list[tuple[int, int]]


@dataclass(slots=True)
class PingReceived(Event):
    """A PING from the peer (the ACK is queued)."""

    data: bytes


@dataclass(slots=True)
class PingAckReceived(Event):
    """The answer to one of our PINGs."""

    data: bytes


@dataclass(slots=True)
class PriorityReceived(Event):
    """A PRIORITY frame (recorded, not acted on)."""

    stream_id: int
    priority: StreamPriority


@dataclass(slots=True)
class PushPromiseReceived(Event):
    """A PUSH_PROMISE we accepted at the frame level; the promised stream is refused."""

    stream_id: int
    promised_stream_id: int
    headers: list[Header]


@dataclass(slots=True)
class UnknownFrameReceived(Event):
    """A frame of an unknown type (ignored, as RFC 9113 section 4.1 requires)."""

    type: int
    flags: int
    stream_id: int
    payload: bytes


@dataclass(slots=True)
class ConnectionTerminated(Event):
    """The peer sent GOAWAY."""

    error_code: int
    last_stream_id: int
    additional_data: bytes = b""


@dataclass(slots=True)
class ConnectionFailed(Event):
    """The peer broke the protocol: GOAWAY(``error_code``) is queued and the engine is closed.

    ``reason`` is for our logs only; it is never sent to the peer.
    """

    error_code: int
    reason: str
    last_stream_id: int = 0


class H2EngineError(LocalProtocolError):
    """A command the connection's state does not allow (our fault, not the peer's)."""


class StreamClosedError(H2EngineError):
    """The stream is closed (or was never opened) for what was asked."""

    def __init__(self, stream_id: int, message: str = "") -> None:
        super().__init__(message or f"stream {stream_id} is closed")
        self.stream_id = stream_id


class FlowControlBlocked(H2EngineError):
    """More DATA than the send windows allow; wait for a :class:`WindowUpdated`."""


class TooManyStreamsError(H2EngineError):
    """Opening a stream would exceed the peer's SETTINGS_MAX_CONCURRENT_STREAMS, or GOAWAY came."""
