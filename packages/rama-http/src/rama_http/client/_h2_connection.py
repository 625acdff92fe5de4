"""The h2 client connection on rama's sans-IO :class:`~rama_http._h2._engine.H2Engine`.

One :class:`Http2Connection` carries up to the server's
SETTINGS_MAX_CONCURRENT_STREAMS requests at once (reported to the pool as
:attr:`Http2Connection.max_concurrent_streams`). There is no background
task (a pooled connection has no task group to live in): one waiting stream
at a time reads for the connection (:meth:`Http2Connection._lead`), feeds
the engine and appends each event to the queue of its stream, waking that
stream only (and the few tasks watching connection state: send windows,
SETTINGS, a free stream slot); the others wait on their own waiter. Once the
reader has what it waited for it wakes the next waiting task to read on, so
someone reads whenever anyone waits, and a cancelled or timed-out reader
hands the role on. Frames queued during one event-loop turn (the HEADERS of
every new stream, ACKs, WINDOW_UPDATEs) go out in one write on the lean path
(:class:`~rama_http.client._io.StreamIO`); elsewhere writes are ordered by a
lock and shielded, so no cancellation leaves half a frame on the wire.
Flow control is manual: response DATA is credited back to the server only
as the caller consumes the body, so a stream never buffers more than its
window; request bodies wait for the server's WINDOW_UPDATE. Every frame
from the server passes the engine's flood accounting
(:class:`H2ClientLimits`).

What the client sends first is set by :class:`H2ClientSettings` (SETTINGS
pairs and their order, the connection WINDOW_UPDATE, PRIORITY frames, the
pseudo-header order, the HEADERS priority), which is what an h2 fingerprint
(Akamai's) is computed from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import anyio
from anyio.abc import ByteStream
from anyio.streams.tls import TLSStream

from rama_net import ConnectionLost, ProtocolStream, TrackedStream, raw_socket_of

from .._body import Body
from .._errors import RemoteProtocolError
from .._h2._engine import FrameHook, H2Engine
from .._h2._events import (
    ConnectionFailed,
    ConnectionTerminated,
    DataReceived,
    Event,
    H2EngineError,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamPriority,
    StreamReset,
    TrailersReceived,
)
from .._h2._flood import H2Flood, H2FloodGuard
from .._h2._frames import FLAG_PADDED
from .._headers import Headers
from .._message import Request, Response
from .._version import Version
from ._body_reader import BodyReader
from ._connection import ClientConnection, NoResponse, close_stream, stream_is_dead
from ._errors import PoolTimeout, ReadError, ReadTimeout, WriteError, WriteTimeout
from ._io import StreamIO, Waiter
from ._timeout import Timeout

__all__ = [
    "H2ClientLimits",
    "H2ClientSettings",
    "H2FloodError",
    "H2PriorityFrame",
    "Http2Connection",
    "StreamResetError",
]

_PSEUDO_NAMES = {
    "method": ":method",
    "authority": ":authority",
    "scheme": ":scheme",
    "path": ":path",
}
_LETTERS = {"m": "method", "a": "authority", "s": "scheme", "p": "path"}
_CONNECTION_SPECIFIC = frozenset(
    ("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host")
)
_log = logging.getLogger("rama.http.client.h2")
_DEFAULT_MAX_STREAMS = 100
"""Streams assumed before the server's SETTINGS arrive (RFC 9113 recommends at least 100)."""


@dataclass(frozen=True, slots=True)
class H2PriorityFrame:
    """A PRIORITY frame sent right after the preface (as older Firefox versions did)."""

    stream_id: int
    depends_on: int = 0
    weight: int = 16
    exclusive: bool = False


@dataclass(frozen=True, slots=True)
class H2ClientSettings:
    """What an h2 client connection sends first: its h2 fingerprint.

    ``settings``: the SETTINGS pairs ``(identifier, value)`` in wire order.
    ``initial_window_update``: the connection WINDOW_UPDATE after them (0: none).
    ``priority_frames``: PRIORITY frames sent after that.
    ``pseudo_header_order``: letters of ``m``ethod, ``a``uthority, ``s``cheme,
    ``p``ath, in the order the request pseudo-headers go out.
    ``headers_priority``: the priority flag of every request HEADERS frame.
    The Akamai fingerprint of a connection is
    ``settings|initial_window_update|priority_frames|pseudo_header_order``.
    """

    settings: tuple[tuple[int, int], ...] = ((2, 0), (4, 1 << 20))
    initial_window_update: int = (1 << 24) - 65535
    priority_frames: tuple[H2PriorityFrame, ...] = ()
    pseudo_header_order: str = "masp"
    headers_priority: StreamPriority | None = None

    def __post_init__(self) -> None:
        order = self.pseudo_header_order.replace(",", "")
        if sorted(order) != sorted("masp"):
            raise ValueError("pseudo_header_order must be a permutation of m, a, s, p")
        object.__setattr__(self, "pseudo_header_order", order)

    @classmethod
    def chrome(cls) -> H2ClientSettings:
        """Chrome's (116+): ``1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p``."""
        return cls(
            settings=((1, 65536), (2, 0), (4, 6291456), (6, 262144)),
            initial_window_update=15663105,
            pseudo_header_order="masp",
            headers_priority=StreamPriority(0, 256, True),
        )

    @classmethod
    def firefox(cls) -> H2ClientSettings:
        """Firefox's (120+): ``1:65536;2:0;4:131072;5:16384|12517377|0|m,p,a,s``."""
        return cls(
            settings=((1, 65536), (2, 0), (4, 131072), (5, 16384)),
            initial_window_update=12517377,
            pseudo_header_order="mpas",
            headers_priority=StreamPriority(0, 42, False),
        )

    @property
    def akamai(self) -> str:
        """The Akamai h2 fingerprint this configuration produces."""
        s = ";".join(f"{k}:{v}" for k, v in self.settings)
        p = ",".join(
            f"{f.stream_id}:{int(f.exclusive)}:{f.depends_on}:{f.weight}"
            for f in self.priority_frames
        )
        return f"{s}|{self.initial_window_update or '00'}|{p or '0'}|" + ",".join(
            self.pseudo_header_order
        )


@dataclass(frozen=True, slots=True)
class H2ClientLimits:
    """What an h2 server may make the client do for nothing, per ``flood_window`` seconds.

    The engine's flood accounting (:mod:`rama_http._h2._flood`) runs on every
    frame the server sends: PING and SETTINGS frames (each answered),
    and frames that make no progress (empty DATA, WINDOW_UPDATE for window the
    client never used, unknown frame types, frames on closed streams,
    unsolicited ACKs). Past an allowance the client sends
    GOAWAY(ENHANCE_YOUR_CALM) and every request on the connection fails with
    :class:`H2FloodError`. ``None`` disables one allowance.
    """

    flood_window: float = 10.0
    max_pings: int | None = 1000
    max_settings: int | None = 100
    max_idle_frames: int | None = 1000

    def __post_init__(self) -> None:
        if not self.flood_window > 0:
            raise ValueError("flood_window must be positive")
        for name in ("max_pings", "max_settings", "max_idle_frames"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be at least 1 (or None)")


class H2FloodError(RemoteProtocolError):
    """The server flooded the connection (PING, SETTINGS, frames without progress)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"the h2 server flooded the connection with {what}", status=502)
        self.what = what
        """Which allowance was spent ("PING frames", "SETTINGS frames", ...)."""


_ENHANCE_YOUR_CALM = 11
_WRITE_BOUND = 30.0
"""Seconds a write without a timeout of its own may take (ACKs, WINDOW_UPDATEs, RST_STREAM)."""


def _flood_hook(conn: Http2Connection, guard: H2FloodGuard) -> FrameHook:
    """The engine's ``on_frame`` hook: every frame from the server passes the accounting."""

    def hook(ftype: int, flags: int, sid: int, payload: memoryview) -> int | None:
        eng = conn.engine
        try:
            if ftype == 0:
                pad = payload[0] + 1 if flags & FLAG_PADDED and len(payload) else 0
                guard.data(
                    stream_open=eng.stream_is_open(sid),
                    length=len(payload) - pad,
                    end_stream=bool(flags & 1),
                )
            elif ftype == 1:
                # a response (or trailers) on a stream of ours is progress, and
                # forgives a little, as a new stream does on the server side
                is_open = eng.stream_is_open(sid)
                guard.headers(opens_stream=is_open, stream_open=is_open)
            elif ftype == 8:
                guard.window_update(sid, int.from_bytes(payload[:4], "big") & 0x7FFFFFFF)
            elif ftype == 6:
                guard.ping(ack=bool(flags & 1))
            elif ftype == 4:
                guard.settings(ack=bool(flags & 1))
            elif ftype == 2:
                guard.priority()
            elif ftype == 3:
                guard.rst_stream(stream_open=eng.stream_is_open(sid))
            elif ftype == 7:
                guard.goaway()
            elif ftype > 9:
                guard.unknown()
        except H2Flood as e:
            conn._flood = e.what
            return _ENHANCE_YOUR_CALM
        return None

    return hook


class StreamResetError(ReadError):
    """The server reset this request's stream (RST_STREAM); the connection goes on."""

    def __init__(self, message: str, error_code: int, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.error_code = error_code
        """The RST_STREAM error code (RFC 9113 section 7)."""
        self.retryable = retryable
        """The server never processed the request (REFUSED_STREAM, or above a GOAWAY)."""


class _Stream:
    __slots__ = (
        "done",
        "error",
        "events",
        "got_event",
        "head_seen",
        "sid",
        "stop_sending",
        "waiter",
    )

    def __init__(self, sid: int) -> None:
        self.sid = sid
        self.events: deque[Event] = deque()
        self.error: Exception | None = None
        self.done = False
        self.head_seen = False
        self.stop_sending = False
        self.got_event = False
        self.waiter: Waiter | None = None
        """Set when an event or an error arrives for this stream (while it waits)."""


def _transport_of(stream: ByteStream) -> tuple[object, bool]:
    """The stream under the TLS and tracking wrappers, and whether TLS was among them."""
    s: object = stream
    tls = False
    for _ in range(8):
        if isinstance(s, TLSStream):
            tls = True
            s = s.transport_stream
        elif isinstance(s, TrackedStream):
            s = s.inner
        else:
            break
    return s, tls


class Http2Connection:
    """An h2 client connection: many concurrent requests over one stream."""

    def __init__(
        self,
        stream: ByteStream,
        *,
        authority: str,
        scheme: str,
        settings: H2ClientSettings | None = None,
        limits: H2ClientLimits | None = None,
        read_size: int = 1 << 18,
    ) -> None:
        self.stream = stream
        self.authority = authority
        self.scheme = scheme
        self.config = settings or H2ClientSettings()
        self.on_release: Callable[[ClientConnection], None] | None = None
        self.engine = H2Engine(
            client=True,
            settings=list(self.config.settings),
            initial_window_update=self.config.initial_window_update,
            auto_window_update=False,
        )
        lim = limits or H2ClientLimits()
        self._guard = H2FloodGuard(
            window=lim.flood_window,
            max_pings=lim.max_pings,
            max_settings=lim.max_settings,
            max_resets=None,
            max_idle_frames=lim.max_idle_frames,
            max_concurrent_streams=_DEFAULT_MAX_STREAMS,
            clock=StreamIO(stream).clock,
        )
        self._flood: str | None = None
        self.engine.on_frame = _flood_hook(self, self._guard)
        self._pseudo = [_PSEUDO_NAMES[_LETTERS[c]] for c in self.config.pseudo_header_order]
        self._read_size = read_size
        self._io = StreamIO(stream)
        self._clock = self._io.clock
        self._write_lock = anyio.Lock()
        self._reading = False
        """One task reads at a time (the leader); the others wait on their own event."""
        self._followers: dict[Waiter, float | None] = {}
        """Every waiting task's event and deadline, in arrival order (the next leader is the
        first unset)."""
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._watchers: list[Waiter] = []
        """Waits on connection state (windows, SETTINGS, stream slots): woken per read."""
        self._streams: dict[int, _Stream] = {}
        self._next_sid = 1
        self._in_flight = 0
        self._requests = 0
        self._closed = False
        self._goaway = False
        self._error: Exception | None = None
        self._idle_since = time.monotonic()
        self._initiated = False
        self._got_settings = False
        self._stream_closed = False
        self._flush_scheduled = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("busy" if self._in_flight else "idle")
        return f"Http2Connection({self.authority}, {state}, requests={self._requests})"

    # -- pool interface ------------------------------------------------------------------
    @property
    def max_concurrent_streams(self) -> int:
        """The server's SETTINGS_MAX_CONCURRENT_STREAMS (100 until its SETTINGS arrive)."""
        if not self._got_settings:
            return _DEFAULT_MAX_STREAMS
        return max(1, min(self.engine.remote_settings[3], 1 << 16))

    @property
    def in_flight(self) -> int:
        """Streams reserved or running."""
        return self._in_flight

    @property
    def requests_sent(self) -> int:
        """Requests carried so far."""
        return self._requests

    @property
    def is_closed(self) -> bool:
        """Closed, failed, or told to go away (no new streams)."""
        return self._closed or self._goaway or self._error is not None

    @property
    def idle_since(self) -> float:
        """When the last stream ended."""
        return self._idle_since

    def is_dead_at_idle(self) -> bool:
        """Closed, or the server closed the socket.

        Bytes waiting at idle are not fatal for h2 (a PING, a WINDOW_UPDATE, a
        GOAWAY that the next read turns into a retryable refusal); only EOF is.
        EOF is seen in the transport's buffer, or by peeking at the socket.
        """
        if self.is_closed:
            return True
        if self._in_flight:
            return False
        s, _ = _transport_of(self.stream)
        if isinstance(s, ProtocolStream):
            proto = s._protocol
            return proto.eof or proto.closed or s._closed
        sock = raw_socket_of(s) if isinstance(s, ByteStream) else None
        if sock is None:
            return stream_is_dead(self.stream)
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    def reserve(self) -> bool:
        """Take a stream slot."""
        if self.is_closed or self._in_flight >= self.max_concurrent_streams:
            return False
        self._in_flight += 1
        return True

    def _release(self) -> None:
        if self._in_flight <= 0:
            return
        self._in_flight -= 1
        if not self._in_flight:
            self._idle_since = time.monotonic()
            if self.is_closed and not self._closed:
                self._closed = True
                self._abort()  # and close_stream at the next await point
        if self.on_release is not None:
            self.on_release(self)

    def _abort(self) -> None:
        """Close the transport now, synchronously (the stream ended in a sync callback)."""
        if self._io.lean:  # a GOAWAY, RST_STREAMs: out before the socket goes
            with contextlib.suppress(Exception):
                self._write_now()
        s, tls = _transport_of(self.stream)
        if isinstance(s, ProtocolStream):
            s.abort()
            return
        sock = raw_socket_of(s) if isinstance(s, ByteStream) else None
        if sock is not None:
            if not self._io.lean and not tls and self.engine.pending_output:
                # (trio, cleartext) the GOAWAY goes out first if the socket takes it now
                with contextlib.suppress(OSError):
                    sock.send(self.engine.data_to_send())
            # Unread input (a flood) would turn the close into a reset, and a reset
            # makes the server's kernel drop our GOAWAY unread: take what is buffered.
            with contextlib.suppress(OSError):
                for _ in range(64):
                    if not sock.recv(65536, socket.MSG_DONTWAIT):
                        break
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # the peer sees EOF; aclose frees the fd

    async def _close_if_done(self) -> None:
        """After a stream ended: close a connection that can take no more and is idle."""
        if self._closed and not self._stream_closed:
            self._stream_closed = True
            await close_stream(self.stream)

    async def aclose(self) -> None:
        """Close the connection (streams in progress fail)."""
        if not self._closed and self._initiated and not self._stream_closed:
            # A clean close says GOAWAY(NO_ERROR); after a connection error the
            # engine's own GOAWAY (ENHANCE_YOUR_CALM after a flood...) is still queued.
            with contextlib.suppress(Exception), anyio.move_on_after(0.5, shield=True):
                if self._error is None:
                    self.engine.goaway(0, last_stream_id=0)
                if self.engine.pending_output:
                    async with self._write_lock:
                        await self.stream.send(self.engine.data_to_send())
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._fail_all(ReadError("connection closed"))
        if not self._stream_closed:
            self._stream_closed = True
            await close_stream(self.stream)

    # -- I/O -----------------------------------------------------------------------------
    def _write_now(self) -> None:
        """Lean path: encrypt and queue everything the engine has, at once, in order."""
        self._flush_scheduled = False
        engine = self.engine
        if not engine.pending_output or self._stream_closed:
            return
        try:
            if not self._io.send_nowait(engine.data_to_send()):
                # RFC 9113 section 9.2.1: no TLS renegotiation on an h2 connection
                raise RemoteProtocolError("TLS renegotiation on an h2 connection", status=502)
        except (
            ConnectionLost,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            RemoteProtocolError,
        ) as e:
            err = WriteError(f"connection lost while sending: {e}")
            self._connection_failed(err)
            raise err from e

    def _kick(self) -> None:
        """Send what the engine queued soon: frames of every stream of this loop turn go
        out in one write (lean path); elsewhere the next :meth:`_flush` sends them."""
        if self._io.lean and not self._flush_scheduled and self.engine.pending_output:
            self._flush_scheduled = True
            self._io.call_soon(self._write_soon)

    def _write_soon(self) -> None:
        with contextlib.suppress(WriteError):
            self._write_now()

    async def _flush(self, timeout: float | None, *, wait: bool = True) -> None:
        """Write what the engine queued, in the order the engine queued it.

        On the lean path (asyncio over a ProtocolStream, TLS or not) the bytes
        are encrypted and handed to the transport at once, so frames keep their
        order without a lock; ``wait=True`` (a request body) then waits, up to
        ``timeout``, while the transport's buffer is above its high-water mark.
        Elsewhere the write lock orders the writes: its holder writes until
        nothing is queued, so output queued meanwhile (ACKs, WINDOW_UPDATEs)
        goes out with it. ``wait=False`` (readers) never waits: a reader must
        never stop reading behind a write that waits for the server, which may
        itself wait for us to read. A write cut short (timeout, cancellation)
        may leave half a frame on the wire: the connection then fails for
        every stream.
        """
        engine = self.engine
        io = self._io
        if io.lean:
            self._write_now()  # nothing awaited: nothing is ever cut in half
            if wait and io.write_paused:
                try:
                    await io.drain(timeout)
                except TimeoutError as e:
                    raise WriteTimeout(f"sending took over {timeout}s") from e
            return
        if not engine.pending_output:
            return
        if not wait and self._write_lock.locked():
            return
        writing = False
        try:
            # shielded: a cancelled caller must not leave half a frame (half a TLS
            # record) on the wire, which would fail every stream of the connection
            with anyio.fail_after(_WRITE_BOUND if timeout is None else timeout, shield=True):
                async with self._write_lock:
                    while True:
                        data = engine.data_to_send()
                        if not data:
                            break
                        writing = True
                        await self.stream.send(data)
                        writing = False
        except TimeoutError as e:
            err: Exception = WriteTimeout(f"sending took over {timeout}s")
            if writing:
                self._connection_failed(err)
            raise err from e
        except (ConnectionLost, anyio.BrokenResourceError, anyio.ClosedResourceError) as e:
            err = WriteError(f"connection lost while sending: {e}")
            self._connection_failed(err)
            raise err from e
        except BaseException:
            if writing:
                self._connection_failed(WriteError("a write was cancelled mid-way"))
            raise

    def _connection_failed(self, err: Exception) -> None:
        if self._error is None:
            self._error = err
            _log.info("h2 connection to %s failed: %s", self.authority, err)
        self._fail_all(err)

    def _fail_all(self, err: Exception) -> None:
        for st in self._streams.values():
            if not st.done and st.error is None:
                st.error = err
        for ev in self._followers:
            ev.set()

    def _handoff(self) -> None:
        """The reader stepped down: the first task still waiting reads next."""
        for ev in self._followers:
            if not ev.is_set():
                ev.set()
                return

    async def _wait(
        self, ready: Callable[[], bool], st: _Stream | None, deadline: float | None
    ) -> None:
        """Until ``ready()`` or the connection failed; TimeoutError at ``deadline``.

        One task reads at a time (:meth:`_lead`) and dispatches what it reads
        to the streams concerned, waking only those (and the watchers of
        connection state); the others wait on their own event (:meth:`_follow`).
        When the reader has what it wanted it steps down and wakes the next
        waiting task to read.
        """
        while not ready() and self._error is None:
            if self._reading:
                await self._follow(st, deadline)
            else:
                await self._lead(ready, deadline)

    async def _lead(self, ready: Callable[[], bool], deadline: float | None) -> None:
        self._reading = True
        try:
            while True:
                if self.engine.pending_output:
                    if self._io.lean:
                        self._kick()
                    else:
                        await self._flush(None, wait=False)
                timeout = None if deadline is None else deadline - self._clock()
                if timeout is not None and timeout <= 0:
                    raise TimeoutError
                try:
                    data = await self._io.receive(self._read_size, timeout)
                except anyio.EndOfStream:
                    self._connection_failed(ReadError("server closed the connection"))
                    return
                except (
                    ConnectionLost,
                    anyio.BrokenResourceError,
                    anyio.ClosedResourceError,
                ) as e:
                    self._connection_failed(ReadError(f"connection lost: {e}"))
                    return
                self._dispatch(self.engine.receive_data(data))
                if self.engine.pending_output:  # SETTINGS/PING ACKs, WINDOW_UPDATEs
                    if self._io.lean:
                        self._kick()
                    else:
                        with contextlib.suppress(Exception):
                            await self._flush(None, wait=False)
                if self._error is not None or ready():
                    return
        finally:
            self._reading = False
            self._handoff()

    async def _follow(self, st: _Stream | None, deadline: float | None) -> None:
        timeout = None
        if deadline is not None:
            timeout = deadline - self._clock()
            if timeout <= 0:
                raise TimeoutError
        ev = self._io.waiter()
        self._followers[ev] = deadline
        if st is not None:
            st.waiter = ev
        else:
            self._watchers.append(ev)
        try:
            if deadline is not None and self._io.lean:
                # one connection timer for every waiting task (most deadlines come after
                # the one it is armed for, so a wait rarely touches the loop's timers)
                self._arm(deadline)
                timeout = None
            await ev.wait(timeout)
        except BaseException:
            self._unfollow(ev, st)
            if not self._reading:
                self._handoff()  # this task may have been the one woken to read next
            raise
        self._unfollow(ev, st)

    def _arm(self, deadline: float) -> None:
        if self._timer is not None:
            if self._timer_at <= deadline:
                return
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._io.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        """Wake the waiting tasks whose deadline passed; re-arm for the next deadline."""
        self._timer = None
        now = self._clock()
        due: float | None = None
        for ev, deadline in self._followers.items():
            if deadline is None:
                continue
            if deadline <= now:
                ev.set()
            elif due is None or deadline < due:
                due = deadline
        if due is not None:
            self._arm(due)

    def _unfollow(self, ev: Waiter, st: _Stream | None) -> None:
        self._followers.pop(ev, None)
        if st is not None:
            if st.waiter is ev:
                st.waiter = None
        else:
            with contextlib.suppress(ValueError):
                self._watchers.remove(ev)

    def _dispatch(self, events: list[Event]) -> None:
        streams = self._streams
        for ev in events:
            sid = getattr(ev, "stream_id", 0)
            if sid:
                st = streams.get(sid)
                if st is not None:
                    st.events.append(ev)
                    st.got_event = True
                    if st.waiter is not None:
                        st.waiter.set()
                elif isinstance(ev, DataReceived) and ev.flow_controlled_length:
                    # a stream we gave up on: its DATA still counts against the connection
                    self.engine.acknowledge_received_data(sid, ev.flow_controlled_length)
                continue
            if isinstance(ev, ConnectionTerminated):
                self._goaway = True
                _log.debug(
                    "GOAWAY from %s: error %d, last stream %d",
                    self.authority,
                    ev.error_code,
                    ev.last_stream_id,
                )
                if ev.error_code:
                    err = RemoteProtocolError(
                        f"server sent GOAWAY (error {ev.error_code})", status=502
                    )
                    for id_, st in streams.items():
                        if id_ <= ev.last_stream_id and st.error is None and not st.done:
                            st.error = err
                            if st.waiter is not None:
                                st.waiter.set()
            elif isinstance(ev, ConnectionFailed):
                if self._flood is not None:
                    _log.warning(
                        "h2 server %s flooded the connection: %s", self.authority, self._flood
                    )
                    self._connection_failed(H2FloodError(self._flood))
                else:
                    self._connection_failed(
                        RemoteProtocolError(f"h2 connection error: {ev.reason}", status=502)
                    )
            elif isinstance(ev, RemoteSettingsChanged):
                self._got_settings = True
        if self._watchers:
            watchers, self._watchers = self._watchers, []
            for w in watchers:
                w.set()

    def _deadline(self, timeout: float | None) -> float | None:
        return None if timeout is None else self._clock() + timeout

    async def _next_event(self, st: _Stream, timeout: float | None) -> Event:
        """The next event of ``st``; raises its error, ReadTimeout after ``timeout``."""
        if st.events:
            return st.events.popleft()
        deadline = self._deadline(timeout)

        def ready() -> bool:
            return bool(st.events) or st.error is not None

        while True:
            if st.events:
                return st.events.popleft()
            err = st.error or self._error
            if err is not None:
                raise err
            try:
                await self._wait(ready, st, deadline)
            except TimeoutError:
                raise ReadTimeout(f"no response data within {timeout}s") from None

    def _stop_sending(self, st: _Stream) -> bool:
        # a reset, or the final answer before the body was in (413, 401...):
        # stop sending, the response is what counts (RFC 9113 section 8.1)
        return any(isinstance(ev, (StreamReset, ResponseReceived)) for ev in st.events)

    async def _wait_window(self, st: _Stream, timeout: float | None) -> int:
        """Wait until the send windows allow DATA on ``st``; WriteTimeout after ``timeout``."""
        deadline = self._deadline(timeout)
        engine = self.engine

        def ready() -> bool:
            return (
                st.error is not None
                or self._stop_sending(st)
                or not engine.stream_is_open(st.sid)
                or engine.local_flow_control_window(st.sid) > 0
            )

        while True:
            err = st.error or self._error
            if err is not None:
                raise err
            if self._stop_sending(st):
                st.stop_sending = True
                return 0
            if not engine.stream_is_open(st.sid):
                return 0
            window = engine.local_flow_control_window(st.sid)
            if window > 0:
                return window
            try:
                await self._wait(ready, None, deadline)
            except TimeoutError:
                raise WriteTimeout(f"the server opened no send window within {timeout}s") from None

    # -- one exchange --------------------------------------------------------------------
    def _head(self, request: Request, length: int | None) -> list[tuple[str, str]]:
        authority = self.authority
        rest: list[tuple[str, str]] = []
        has_cl = False
        for name, value in request.headers.items():
            n = name.lower()
            if n in _CONNECTION_SPECIFIC:
                if n == "host":
                    authority = value
                continue
            if n == "te" and value.strip().lower() != "trailers":
                continue
            if n == "content-length":
                has_cl = True
            rest.append((n, value))
        if (
            not has_cl
            and length is not None
            and (length > 0 or request.method in ("POST", "PUT", "PATCH"))
        ):
            rest.append(("content-length", str(length)))
        values = {
            ":method": request.method,
            ":authority": authority,
            ":scheme": self.scheme,
            ":path": request.target or "/",
        }
        if request.method == "CONNECT":
            return [(":method", "CONNECT"), (":authority", authority), *rest]
        return [(p, values[p]) for p in self._pseudo] + rest

    async def send(self, request: Request, timeout: Timeout) -> Response:
        """Open a stream for ``request``, send it, and return the response head."""
        body = request.body
        data = body.bytes_now()
        length = len(data) if data is not None else body.length
        headers = self._head(request, length)
        engine = self.engine
        reused = self._requests > 0
        self._requests += 1
        st: _Stream | None = None
        try:
            if self._error is not None or self._goaway:
                raise NoResponse(ReadError("the h2 connection cannot open new streams"))
            # the first request goes at once; the others wait for the server's
            # SETTINGS (its stream limit), so none is refused for opening too early
            if self._initiated and not self._got_settings:
                try:
                    await self._wait(lambda: self._got_settings, None, self._deadline(timeout.read))
                except TimeoutError as e:
                    raise ReadTimeout(f"no h2 SETTINGS from the server in {timeout.read}s") from e
                if self._error is not None:
                    raise NoResponse(self._error)
            # the server may allow fewer streams than we reserved: wait for one to end
            if engine.open_outbound_streams >= engine.remote_settings[3]:
                try:
                    await self._wait(
                        lambda: (
                            self._goaway or engine.open_outbound_streams < engine.remote_settings[3]
                        ),
                        None,
                        self._deadline(timeout.pool),
                    )
                except TimeoutError as e:
                    raise PoolTimeout(f"no h2 stream became free within {timeout.pool}s") from e
                if self._error is not None or self._goaway:
                    raise NoResponse(ReadError("the h2 connection cannot open new streams"))
            if not self._initiated:
                self._initiated = True
                engine.initiate_connection()
                for f in self.config.priority_frames:
                    engine.send_priority(f.stream_id, f.depends_on, f.weight, f.exclusive)
            sid = self._next_sid
            self._next_sid += 2
            st = _Stream(sid)
            self._streams[sid] = st
            end = data == b"" or (data is None and length == 0)
            try:
                engine.send_headers(
                    sid, headers, end_stream=end, priority=self.config.headers_priority
                )
            except H2EngineError as e:
                raise NoResponse(ReadError(f"cannot open an h2 stream: {e}")) from e
            if data:
                await self._flush(timeout.write)
                await self._send_data(st, data, True, timeout.write)
            elif not end:
                await self._flush(timeout.write)
                async for chunk in body:
                    if chunk:
                        await self._send_data(st, chunk, False, timeout.write)
                        if st.stop_sending or not engine.stream_is_open(sid):
                            break
                if engine.stream_is_open(sid) and not st.stop_sending:
                    trailers = body.trailers
                    if trailers:
                        engine.send_headers(
                            sid, [(n.lower(), v) for n, v in trailers.items()], end_stream=True
                        )
                    else:
                        engine.end_stream(sid)
                    await self._flush(timeout.write)
            elif self._io.lean:
                self._kick()  # with the other streams' frames of this loop turn
            else:
                await self._flush(timeout.write)
            response = await self._response(st, timeout)
        except StreamResetError as e:
            if st is not None:
                self._end_stream(st)
            else:
                self._release()
            await self._close_if_done()
            if e.retryable:
                raise NoResponse(e) from e
            raise
        except BaseException as e:
            if st is not None:
                self._cancel(st)
            else:
                self._release()
            await self._close_if_done()
            if (
                isinstance(e, (ReadError, WriteError))
                and st is not None
                and not st.head_seen
                and (self._goaway or (reused and not st.got_event))
            ):
                # never processed (GOAWAY), or a reused connection that died
                # before a byte of this stream came: safe to retry elsewhere
                raise NoResponse(e) from e
            raise
        return response

    async def _send_data(self, st: _Stream, data: bytes, end: bool, timeout: float | None) -> None:
        engine = self.engine
        view = memoryview(data)
        pos = 0
        n = len(data)
        while pos < n:
            window = await self._wait_window(st, timeout)
            if window <= 0:
                return  # the stream was reset or answered: the rest is not wanted
            take = min(window, n - pos, engine.max_outbound_frame_size * 4)
            last = pos + take >= n
            engine.send_data(st.sid, bytes(view[pos : pos + take]), end_stream=end and last)
            self._guard.sent(st.sid, take)
            pos += take
            await self._flush(timeout)

    def _reset_error(self, ev: StreamReset) -> StreamResetError:
        return StreamResetError(
            f"the server reset the stream (error {ev.error_code})",
            ev.error_code,
            retryable=ev.retryable,
        )

    async def _response(self, st: _Stream, timeout: Timeout) -> Response:
        while True:
            ev = await self._next_event(st, timeout.read)
            if isinstance(ev, ResponseReceived):
                break
            if isinstance(ev, StreamReset):
                raise self._reset_error(ev)
            # informational heads and anything else before the head are skipped
        st.head_seen = True
        status = 0
        items: list[tuple[str, str]] = []
        for name, value in ev.headers:
            if name == b":status":
                status = int(value)
            elif name[:1] != b":":
                items.append((name.decode("latin-1"), value.decode("latin-1")))
        response = Response(status, headers=Headers.from_trusted(items), version=Version.HTTP_2)
        cl = response.headers.get("content-length")
        length: int | None = None
        if cl is not None and cl.isdigit():
            length = int(cl)
        if ev.end_stream:
            self._end_stream(st)
            await self._close_if_done()
            response.body = Body.empty()
            return response
        reader = _H2BodyReader(self, st, timeout.read)
        response.body = Body(stream=reader, length=length, on_close=reader.abandon)
        return response

    def _end_stream(self, st: _Stream) -> None:
        if st.done:
            return
        st.done = True
        if self._error is None and self.engine.stream_is_open(st.sid):
            # answered before our body ended: free the stream (RST_STREAM(NO_ERROR))
            with contextlib.suppress(Exception):
                self.engine.reset_stream(st.sid, 0)
            self._kick()
        self._streams.pop(st.sid, None)
        self._guard.stream_closed(st.sid)
        self._release()

    def _cancel(self, st: _Stream) -> None:
        """Reset a stream we no longer want (the connection goes on)."""
        if st.done:
            return
        if self._error is None and self.engine.stream_is_open(st.sid):
            with contextlib.suppress(Exception):
                self.engine.reset_stream(st.sid)
            self._kick()
        self._end_stream(st)


class _H2BodyReader(BodyReader):
    """One h2 response body, credited back to the server as it is consumed (a failure
    or an early close resets this stream only)."""

    __slots__ = ("_conn", "_st")

    def __init__(self, conn: Http2Connection, st: _Stream, read_timeout: float | None) -> None:
        super().__init__(read_timeout)
        self._conn = conn
        self._st = st

    async def _next(self) -> bytes:
        conn = self._conn
        st = self._st
        while True:
            ev = await conn._next_event(st, self._timeout)
            if isinstance(ev, DataReceived):
                data = ev.data
                credit = ev.flow_controlled_length
                end = ev.end_stream
                events = st.events
                if events and not end and type(events[0]) is DataReceived:
                    # every DATA frame already here goes out as one chunk
                    parts = [data]
                    while events and not end and type(events[0]) is DataReceived:
                        more = events.popleft()
                        assert isinstance(more, DataReceived)
                        parts.append(more.data)
                        credit += more.flow_controlled_length
                        end = more.end_stream
                    data = b"".join(parts)
                if credit:
                    conn.engine.acknowledge_received_data(st.sid, credit)
                    if conn.engine.pending_output:
                        if conn._io.lean:
                            conn._kick()
                        else:
                            await conn._flush(self._timeout, wait=False)
                if end:
                    self._end()
                    conn._end_stream(st)
                    await conn._close_if_done()
                    if data:
                        return data
                    raise StopAsyncIteration
                if data:
                    return data
                continue
            if isinstance(ev, TrailersReceived):
                self._end(
                    Headers.from_trusted(
                        [(n.decode("latin-1"), v.decode("latin-1")) for n, v in ev.headers]
                    )
                )
                conn._end_stream(st)
                await conn._close_if_done()
                raise StopAsyncIteration
            if isinstance(ev, StreamReset):
                raise conn._reset_error(ev)

    async def _failed(self) -> None:
        self._conn._cancel(self._st)
        with anyio.CancelScope(shield=True):
            await self._conn._close_if_done()

    def _drop(self) -> None:
        self._conn._cancel(self._st)  # RST_STREAM goes out with the next write

    async def _close(self) -> None:
        self._conn._cancel(self._st)
        with contextlib.suppress(Exception), anyio.move_on_after(1.0, shield=True):
            await self._conn._flush(1.0)
        await self._conn._close_if_done()
