"""A WebSocket over any byte stream, on wsproto's frame layer.

The handshake (HTTP/1.1 Upgrade, or an h2 extended CONNECT) is done before a
:class:`WebSocket` exists; from then on it speaks frames: ``async for message
in ws`` yields ``str`` (text) and ``bytes`` (binary) messages until the peer
closes; ``await ws.send(...)`` sends one; pings are answered, and with
``ping_interval`` sent, with the connection closed (1011) when no pong comes
back within ``ping_timeout``. A message over ``max_message_size`` closes the
connection with 1009; a protocol violation with 1002. One reader at a time.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
from anyio.abc import ByteStream
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import RemoteProtocolError as WsProtocolError

__all__ = ["WebSocket", "WebSocketClosed", "WebSocketConfig"]

_log = logging.getLogger("rama.http.ws")
_BROKEN = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)


def _send_lock() -> anyio.Lock:
    """The per-socket send lock; uncontended acquires skip the checkpoint (anyio >= 4.5)."""
    try:
        return anyio.Lock(fast_acquire=True)
    except TypeError:  # anyio 4.4
        return anyio.Lock()


@dataclass(frozen=True, slots=True)
class WebSocketConfig:
    """Limits and keep-alive of a WebSocket."""

    max_message_size: int = 1024 * 1024
    """Bytes of one (reassembled, decompressed) message; larger closes with 1009."""
    ping_interval: float | None = 20.0
    """Send a ping after this many idle seconds (None: never)."""
    ping_timeout: float = 20.0
    """Close (1011) when a ping gets no pong within this many seconds."""
    close_timeout: float = 5.0
    """How long a close handshake waits for the peer's close frame."""


class WebSocketClosed(Exception):
    """The connection is closed; ``code`` and ``reason`` are the close frame's."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"websocket closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class WebSocket:
    """A WebSocket connection (see module docs)."""

    def __init__(
        self,
        stream: ByteStream,
        *,
        client: bool,
        extensions: list[Extension] | None = None,
        subprotocol: str | None = None,
        config: WebSocketConfig | None = None,
        trailing_data: bytes = b"",
    ) -> None:
        self.stream = stream
        self.subprotocol = subprotocol
        """The subprotocol the handshake agreed on, if any."""
        self.config = config or WebSocketConfig()
        self._conn = Connection(
            ConnectionType.CLIENT if client else ConnectionType.SERVER,
            extensions=extensions,
            trailing_data=trailing_data,
        )
        self._send_lock = _send_lock()
        self._parts: list[str | bytes] = []
        self._size = 0
        self._close_code: int | None = None
        self._close_reason = ""
        self._pong = anyio.Event()
        self._last_seen = anyio.current_time()
        self._awaiting_pong = False
        self._pending: list[Event] = []

    # -- state --------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """Whether the connection has closed (either side)."""
        return self._close_code is not None

    @property
    def close_code(self) -> int | None:
        """The close code once closed (1006: the transport died without a close frame)."""
        return self._close_code

    @property
    def close_reason(self) -> str:
        """The close reason once closed."""
        return self._close_reason

    # -- sending ------------------------------------------------------------------------------
    async def _write(self, event: Event) -> None:
        data = self._conn.send(event)
        if not data:
            return
        async with self._send_lock:
            try:
                await self.stream.send(data)
            except _BROKEN:
                self._lost()
                raise WebSocketClosed(1006, "connection lost") from None

    async def send(self, message: str | bytes) -> None:
        """Send one text (``str``) or binary (``bytes``) message."""
        if self._close_code is not None or self._conn.state is not ConnectionState.OPEN:
            raise WebSocketClosed(self._close_code or 1006, self._close_reason)
        event: Event = (
            TextMessage(data=message)
            if isinstance(message, str)
            else BytesMessage(data=bytes(message))
        )
        await self._write(event)

    async def ping(self, payload: bytes = b"") -> None:
        """Send a ping (the pong is consumed by the reader)."""
        await self._write(Ping(payload=payload))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close: send a close frame, wait briefly for the peer's, then close the stream."""
        if self._close_code is None and self._conn.state is ConnectionState.OPEN:
            self._close_code, self._close_reason = code, reason
            try:
                await self._write(CloseConnection(code=code, reason=reason))
            except WebSocketClosed:
                pass
            else:
                with anyio.move_on_after(self.config.close_timeout):
                    while self._state() is not ConnectionState.CLOSED:
                        try:
                            data = await self.stream.receive()
                            self._conn.receive_data(data)
                        except (*_BROKEN, WsProtocolError):
                            break
                        for _ in self._conn.events():
                            pass  # messages after our close frame are dropped
        await self._aclose_stream()

    async def _aclose_stream(self) -> None:
        with contextlib.suppress(*_BROKEN):
            await self.stream.aclose()

    def _state(self) -> ConnectionState:
        return self._conn.state

    def _lost(self) -> None:
        if self._close_code is None:
            self._close_code, self._close_reason = 1006, "connection lost"

    # -- receiving ----------------------------------------------------------------------------
    async def receive(self) -> str | bytes:
        """The next message; raises :class:`WebSocketClosed` once the connection closed."""
        while True:
            while self._pending:
                event = self._pending.pop(0)
                out = await self._handle(event)
                if out is not None:
                    return out
            if self._close_code is not None:
                raise WebSocketClosed(self._close_code, self._close_reason)
            data = await self._read()
            try:
                self._conn.receive_data(data)
                self._pending.extend(self._conn.events())
            except WsProtocolError as e:
                await self._fail(1002, "protocol error")
                _log.debug("websocket protocol error: %s", e)

    async def _read(self) -> bytes | None:
        interval = self.config.ping_interval
        while True:
            timeout = None
            if interval is not None:
                timeout = self.config.ping_timeout if self._awaiting_pong else interval
            with anyio.move_on_after(timeout) as scope:
                try:
                    data = await self.stream.receive()
                except _BROKEN:
                    self._lost()
                    return None
            if not scope.cancelled_caught:
                self._last_seen = anyio.current_time()
                return data
            if self._awaiting_pong:
                await self._fail(1011, "keepalive ping timeout")
                return None
            self._awaiting_pong = True
            try:
                await self.ping(b"rama")
            except WebSocketClosed:
                return None

    async def _fail(self, code: int, reason: str) -> None:
        if self._close_code is None:
            self._close_code, self._close_reason = code, reason
            if self._conn.state is ConnectionState.OPEN:
                try:
                    data = self._conn.send(CloseConnection(code=code, reason=reason))
                    async with self._send_lock:
                        await self.stream.send(data)
                except (*_BROKEN, Exception):
                    pass
        await self._aclose_stream()

    async def _handle(self, event: Event) -> str | bytes | None:
        if isinstance(event, Message):
            self._size += len(event.data)
            if self._size > self.config.max_message_size:
                self._parts.clear()
                await self._fail(1009, "message too big")
                return None
            self._parts.append(event.data)
            if not event.message_finished:
                return None
            parts, self._parts, self._size = self._parts, [], 0
            if isinstance(event, TextMessage):
                return "".join(p for p in parts if isinstance(p, str))
            assert isinstance(event, BytesMessage)
            return b"".join(p for p in parts if isinstance(p, (bytes, bytearray)))
        if isinstance(event, Ping):
            with contextlib.suppress(WebSocketClosed):
                await self._write(event.response())
            return None
        if isinstance(event, Pong):
            self._awaiting_pong = False
            return None
        if isinstance(event, CloseConnection):
            self._close_code = event.code
            self._close_reason = event.reason or ""
            if self._conn.state is ConnectionState.REMOTE_CLOSING:
                with contextlib.suppress(WebSocketClosed):
                    await self._write(event.response())
            await self._aclose_stream()
            return None
        return None

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[str | bytes]:
        while True:
            try:
                yield await self.receive()
            except WebSocketClosed:
                return


def close_reason_phrase(code: int) -> str:
    """The RFC 6455 name of a close code (``NORMAL_CLOSURE``...)."""
    try:
        return CloseReason(code).name
    except ValueError:
        return "UNKNOWN"
