"""Client connections: what the pool holds, and the HTTP/1.1 one.

A :class:`ClientConnection` is "a connection that can take N concurrent
requests": an HTTP/1.1 connection takes one at a time
(``max_concurrent_streams == 1``), an h2 connection as many as the server's
``SETTINGS_MAX_CONCURRENT_STREAMS``. The pool only talks to this interface,
so the h2 connection plugs in without changing it: :meth:`reserve` takes a
slot (or says no), :meth:`send` runs one exchange in that slot, and the
connection calls :attr:`on_release` when the slot is free again (the
response body was read, closed or failed).
"""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import anyio
from anyio.abc import ByteStream
from anyio.streams.tls import TLSStream

from rama_net import ConnectionLost, ProtocolStream, TrackedStream, raw_socket_of

from .._body import Body
from .._errors import RemoteProtocolError
from .._headers import Headers
from .._message import Request, Response
from .._version import Version
from ._body_reader import BodyReader
from ._errors import ReadError, ReadTimeout, WriteError, WriteTimeout
from ._h1_engine import (
    NEED_DATA,
    PAUSED,
    BodyData,
    BodyEnd,
    H1ClientEngine,
    InformationalHead,
    ResponseHead,
    prepare_headers,
)
from ._io import StreamIO
from ._timeout import Timeout

if TYPE_CHECKING:
    from ._connect import ProxyConfig

__all__ = ["ClientConnection", "Http1Connection", "NoResponse", "stream_is_dead"]


class NoResponse(Exception):
    """The connection failed before any response byte arrived (safe to retry elsewhere).

    ``error`` is the typed error to raise when the request is not retried.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class ClientConnection(Protocol):
    """One upstream connection, HTTP/1.1 or h2, as the pool sees it."""

    on_release: Callable[[ClientConnection], None] | None
    """Called (synchronously) every time a request slot frees up or the connection closes."""

    @property
    def max_concurrent_streams(self) -> int:
        """How many requests may run at once (1 for HTTP/1.1)."""
        ...

    @property
    def in_flight(self) -> int:
        """Requests running now."""
        ...

    @property
    def requests_sent(self) -> int:
        """Requests this connection carried so far (0: fresh)."""
        ...

    @property
    def is_closed(self) -> bool:
        """Closed, or unable to carry another request."""
        ...

    @property
    def idle_since(self) -> float:
        """``time.monotonic()`` since which no request has run."""
        ...

    def is_dead_at_idle(self) -> bool:
        """Whether an idle connection is unusable (the server closed it, or sent bytes)."""
        ...

    def reserve(self) -> bool:
        """Take a request slot; False when full or closed."""
        ...

    async def send(self, request: Request, timeout: Timeout) -> Response:
        """Run one exchange in a reserved slot; the response body streams from the connection.

        Raises :class:`NoResponse` when the connection failed before any
        response byte, typed errors otherwise. The slot is freed when the
        body ends, fails or is closed (or at once on an error).
        """
        ...

    async def aclose(self) -> None:
        """Close the connection."""
        ...


def stream_is_dead(stream: ByteStream) -> bool:
    """Whether an idle stream has pending bytes or EOF (so a new request would fail).

    Looks down through TLS and tracking wrappers to the transport: a
    :class:`~rama_net.ProtocolStream`'s buffer, else the socket (``select``
    with a zero timeout: readable at idle means data or EOF).
    """
    s: object = stream
    for _ in range(8):
        if isinstance(s, TLSStream):
            if s._ssl_object.pending() or s._read_bio.pending:
                return True
            s = s.transport_stream
        elif isinstance(s, TrackedStream):
            s = s.inner
        else:
            break
    if isinstance(s, ProtocolStream):
        proto = s._protocol
        return bool(proto.chunks) or proto.eof or proto.closed
    sock = raw_socket_of(s) if isinstance(s, ByteStream) else None
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _target_authority(target: str) -> str:
    """``host[:port]`` of an absolute-form target (``http://host:port/path``)."""
    rest = target.partition("://")[2]
    for i, ch in enumerate(rest):
        if ch in "/?#":
            return rest[:i]
    return rest


async def close_stream(stream: ByteStream) -> None:
    """Close ``stream`` promptly even inside a cancelled scope; never raises."""
    if isinstance(stream, ProtocolStream):
        stream.abort()
        return
    with anyio.move_on_after(1.0, shield=True), contextlib.suppress(Exception):
        await stream.aclose()


class Http1Connection:
    """An HTTP/1.1 client connection on a sans-IO engine (one request at a time)."""

    max_concurrent_streams = 1

    def __init__(
        self,
        stream: ByteStream,
        engine: H1ClientEngine,
        *,
        authority: str,
        read_size: int = 1 << 20,
        forward_proxy: ProxyConfig | None = None,
    ) -> None:
        self.stream = stream
        self.forward_proxy = forward_proxy
        """Set on a connection to a forwarding proxy: requests carry absolute-form targets
        (Host is the target's, not the proxy's) and the proxy's credentials."""
        self._proxy_auth = forward_proxy.basic_auth if forward_proxy is not None else None
        self.engine = engine
        self.authority = authority
        self.on_release: Callable[[ClientConnection], None] | None = None
        self._read_size = read_size
        self._in_flight = 0
        self._closed = False
        self._requests = 0
        self._idle_since = time.monotonic()
        self._got_bytes = False
        self._body_unsent = False
        self._io = StreamIO(stream)
        self.continue_timeout = 1.0
        """Seconds to wait for ``100 Continue`` after a head with ``Expect: 100-continue``."""

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("busy" if self._in_flight else "idle")
        return f"Http1Connection({self.authority}, {state}, requests={self._requests})"

    # -- pool interface ------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        """1 while a request runs, else 0."""
        return self._in_flight

    @property
    def requests_sent(self) -> int:
        """Requests carried so far."""
        return self._requests

    @property
    def is_closed(self) -> bool:
        """Closed or not reusable."""
        return self._closed

    @property
    def idle_since(self) -> float:
        """When the last exchange ended."""
        return self._idle_since

    def is_dead_at_idle(self) -> bool:
        """The server closed the idle connection or sent unsolicited bytes."""
        if self._closed:
            return True
        return self.engine.trailing_data or stream_is_dead(self.stream)

    def reserve(self) -> bool:
        """Take the single slot."""
        if self._closed or self._in_flight:
            return False
        self._in_flight = 1
        return True

    def _release(self, reusable: bool) -> None:
        if not self._in_flight:
            return
        self._in_flight = 0
        self._idle_since = time.monotonic()
        if not reusable:
            self._mark_closed()
        if self.on_release is not None:
            self.on_release(self)

    def _mark_closed(self) -> None:
        if not self._closed:
            self._closed = True
            if isinstance(self.stream, ProtocolStream):
                self.stream.abort()

    async def aclose(self) -> None:
        """Close the connection (an exchange in progress fails)."""
        self._closed = True
        await close_stream(self.stream)

    async def _fail(self) -> None:
        self._closed = True
        await close_stream(self.stream)
        self._release(False)

    # -- I/O -----------------------------------------------------------------------------
    async def _write(self, data: bytes, timeout: float | None) -> None:
        await self._io.send(data, timeout)

    async def _read(self, timeout: float | None) -> bytes:
        return await self._io.receive(self._read_size, timeout)

    async def _send_body(self, body: Body, data: bytes | None, write_timeout: float | None) -> None:
        engine = self.engine
        if data is not None:
            await self._write(engine.data(data) + engine.end(), write_timeout)
            return
        async for chunk in body:
            if chunk:
                await self._write(engine.data(chunk), write_timeout)
        trailers = body.trailers
        await self._write(engine.end(trailers.items() if trailers else None), write_timeout)

    async def _next_head(
        self, timeout: Timeout, reused: bool, until_continue: float | None
    ) -> ResponseHead | None:
        """The final response head; with ``until_continue``, None at a 100 or after that wait."""
        engine = self.engine
        while True:
            ev = engine.next_event()
            if ev is NEED_DATA:
                try:
                    chunk = await self._read(
                        timeout.read if until_continue is None else until_continue
                    )
                except TimeoutError as e:
                    if until_continue is not None:
                        return None  # no 100 Continue in time: send the body anyway
                    raise ReadTimeout(f"no response within {timeout.read}s") from e
                except anyio.EndOfStream:
                    if reused and not self._got_bytes:
                        raise NoResponse(
                            RemoteProtocolError("server closed the connection", status=502)
                        ) from None
                    engine.feed_eof()
                    continue
                except (ConnectionLost, anyio.BrokenResourceError) as e:
                    err = ReadError(f"connection lost before the response: {e}")
                    if reused and not self._got_bytes:
                        raise NoResponse(err) from e
                    raise err from e
                self._got_bytes = True
                engine.feed(chunk)
                continue
            if isinstance(ev, InformationalHead):
                if until_continue is not None and ev.status == 100:
                    return None
                continue
            if isinstance(ev, ResponseHead):
                return ev
            raise RemoteProtocolError(f"unexpected {ev!r} before the response head", status=502)

    async def _early_response(self, timeout: Timeout) -> ResponseHead | None:
        """A final response that arrived while the request body was being sent, if any."""
        short = Timeout(read=min(1.0, timeout.read or 1.0))
        try:
            return await self._next_head(short, False, None)
        except Exception:
            return None

    # -- one exchange --------------------------------------------------------------------
    async def send(self, request: Request, timeout: Timeout) -> Response:
        """Send ``request`` (its target in origin-form) and return the response head."""
        engine = self.engine
        body = request.body
        data = body.bytes_now()
        length = len(data) if data is not None else body.length
        items = request.headers.items()
        authority = self.authority
        if self.forward_proxy is not None:
            authority = _target_authority(request.target)
            if self._proxy_auth is not None and "proxy-authorization" not in request.headers:
                items = [*items, ("Proxy-Authorization", self._proxy_auth)]
        headers, _ = prepare_headers(request.method, authority, items, length)
        reused = self._requests > 0
        self._requests += 1
        self._got_bytes = False
        self._body_unsent = False
        expect = length != 0 and request.headers.has_token("expect", "100-continue")
        head: ResponseHead | None = None
        try:
            try:
                if data is not None and not expect:
                    await self._write(
                        engine.request(request.method, request.target, headers, data), timeout.write
                    )
                else:
                    await self._write(
                        engine.request(request.method, request.target, headers, None), timeout.write
                    )
                    if expect:
                        # RFC 9110 section 10.1.1: wait for 100 Continue or the final answer
                        head = await self._next_head(timeout, reused, self.continue_timeout)
                    if head is None:
                        await self._send_body(body, data, timeout.write)
                    else:
                        self._body_unsent = True
            except TimeoutError as e:
                raise WriteTimeout(f"sending the request took over {timeout.write}s") from e
            except (ConnectionLost, anyio.EndOfStream, anyio.BrokenResourceError) as e:
                err = WriteError(f"connection lost while sending the request: {e}")
                if reused and not self._got_bytes:
                    raise NoResponse(err) from e
                # the server may have answered (413, 401...) and closed before the body was in
                head = await self._early_response(timeout)
                if head is None:
                    raise err from e
                self._body_unsent = True
            if head is None:
                head = await self._next_head(timeout, reused, None)
                assert head is not None
        except BaseException:
            await self._fail()
            raise
        version = Version.HTTP_11 if head.version == "1.1" else Version.HTTP_10
        response = Response(
            head.status, headers=Headers.from_parsed(head.headers, head.keys), version=version
        )
        if head.reason:
            with contextlib.suppress(Exception):
                response.reason = head.reason
        if not head.has_body:
            # the BodyEnd event follows at once
            await self._finish_cycle(engine.next_event())
            response.body = Body.empty()
            return response
        reader = _H1BodyReader(self, timeout.read)
        response.body = Body(stream=reader, length=head.content_length, on_close=reader.abandon)
        return response

    async def _finish_cycle(self, ev: object) -> None:
        """The response ended: free the slot, keep the connection only if it can go on."""
        engine = self.engine
        reusable = (
            isinstance(ev, BodyEnd)
            and engine.keep_alive
            and not engine.trailing_data
            and not self._closed
            and not self._body_unsent  # answered before the body: the body cannot follow
        )
        if reusable:
            try:
                engine.start_next_cycle()
            except Exception:
                reusable = False
        if not reusable:
            await self._fail()
            return
        self._release(True)


class _H1BodyReader(BodyReader):
    """The response body of one HTTP/1.1 exchange (a failure or an early close drops the
    connection: the rest of the body would be in the way of the next response)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Http1Connection, read_timeout: float | None) -> None:
        super().__init__(read_timeout)
        self._conn = conn

    async def _next(self) -> bytes:
        conn = self._conn
        engine = conn.engine
        while True:
            ev = engine.next_event()
            if isinstance(ev, BodyData):
                if ev.data:
                    return ev.data
                continue
            if isinstance(ev, BodyEnd):
                self._end(Headers.from_trusted(list(ev.trailers)) if ev.trailers else None)
                await conn._finish_cycle(ev)
                raise StopAsyncIteration
            if ev is PAUSED:
                raise RemoteProtocolError("response ended unexpectedly", status=502)
            try:
                chunk = await conn._read(self._timeout)
            except TimeoutError as e:
                raise ReadTimeout(f"no body data within {self._timeout}s") from e
            except anyio.EndOfStream:
                engine.feed_eof()
                continue
            except (ConnectionLost, anyio.BrokenResourceError) as e:
                raise ReadError(f"connection lost while reading the body: {e}") from e
            engine.feed(chunk)

    async def _failed(self) -> None:
        await self._conn._fail()

    def _drop(self) -> None:
        self._conn._mark_closed()
        self._conn._release(False)

    async def _close(self) -> None:
        await self._conn._fail()
