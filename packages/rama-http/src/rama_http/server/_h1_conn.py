"""The HTTP/1.1 connection loop: an engine, a stream and a service.

:func:`serve_http1` reads requests from a byte stream, calls the service
once per request (inline, in order, so pipelined requests are answered in
order and a request body is read from the socket only as the handler pulls
it), and writes the responses.

Timeouts cost nothing per request: the loop only stores a deadline before it
waits, and one watcher task per connection sleeps until the earliest deadline
and cancels the loop when it passed. The same watcher closes idle keep-alive
connections when a graceful shutdown starts; busy ones finish their request
and answer it with ``Connection: close``, or are cancelled once
``ServerConfig.shutdown_grace`` is over (as on h2). Deadlines are on the event
loop's clock.

A handler's failure is answered and logged by the policy every version
shares (:func:`~rama_http.server.handler_failure`); the peer's malformed
requests get their 4xx with the reason phrase only, on any request of the
connection. A client pipelining from buffered input gets at most ``_SLICE``
of the event loop before other tasks run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import anyio
from anyio.abc import ByteStream, TaskGroup
from anyio.lowlevel import checkpoint

from rama_core import Context, Service
from rama_net import ProtocolStream

from .._body import Body, close_body_soon
from .._errors import BodyError, BodyTooLarge, HttpError, LocalProtocolError, ProtocolError
from .._headers import Headers
from .._message import Request, Response
from .._status import NO_BODY_STATUSES, reason_phrase
from ._config import ServerConfig
from ._failure import handler_failure, log_handler_failure
from ._h1_engine import NEED_DATA, BodyData, BodyEnd, H1Engine, RequestHead
from ._h1_engines import make_engine
from ._h1_stream import RewindStream

__all__ = ["Http1Connection", "error_response", "serve_http1"]

_log = logging.getLogger("rama.http.h1")

_DEFAULT_CONFIG = ServerConfig()
_INF = math.inf
_DRAIN_LIMIT = 1024 * 1024
_LINGER_SECONDS = 1.0
_SLICE = 0.002
"""Seconds a connection may serve requests from buffered input (a pipelining
client: the loop never waits) before it yields to other tasks. Checked every
8 such requests; a connection that waits for each request never pays it."""

# Phases the watcher looks at when a deadline passes.
_IDLE, _HEAD, _HANDLER, _BODY, _WRITE = range(5)

_date_cache: list[Any] = [0, ""]


def _http_date() -> str:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True)
    return str(_date_cache[1])


def error_response(status: int) -> bytes:
    """The whole answer to a request the server cannot serve, before it closes.

    The body is the reason phrase only: what went wrong is logged, never sent.
    A status outside 400-599 becomes 400.
    """
    if not 400 <= status < 600:
        status = 400
    text = f"{reason_phrase(status)}\n".encode("latin-1", "replace")
    head = (
        f"HTTP/1.1 {status} {reason_phrase(status)}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(text)}\r\n"
        "Connection: close\r\n"
        f"Date: {_http_date()}\r\n\r\n"
    ).encode("latin-1")
    return head + text


def _event_loop_clock() -> Callable[[], float]:
    """``anyio.current_time``, resolved once per connection.

    The event loop's clock (so trio's autojump clock drives the timeouts in
    tests), without anyio's per-call backend lookup on the request path: on
    asyncio (and uvloop) the loop's own ``time`` costs what ``time.monotonic``
    does.
    """
    try:
        return asyncio.get_running_loop().time
    except RuntimeError:  # trio
        return anyio.current_time


def _check_framing(head: RequestHead, resp: Response, data: bytes | None) -> Headers | None:
    """The response headers to send, given the handler set Content-Length.

    None when the handler's Content-Length contradicts its in-memory body (a
    handler bug: answer 500 rather than desynchronize the connection). With
    Transfer-Encoding also set, Content-Length is dropped (RFC 9112 section 6.2:
    a sender must not send both; a proxy forwarding both would enable request
    smuggling downstream).
    """
    headers = resp.headers
    if "transfer-encoding" in headers._keys:
        _log.warning("response has Transfer-Encoding and Content-Length: dropping Content-Length")
        fixed = headers.copy()
        fixed.remove("content-length")
        return fixed
    if data is None or head.method == "HEAD" or resp.status in NO_BODY_STATUSES:
        return headers  # streamed bodies are checked as they go; HEAD/304 may announce a size
    values = headers.get_all("content-length")
    if any(v.strip(" \t") != str(len(data)) for v in values):
        _log.error(
            "handler answered %s %s with Content-Length %s but a %d-byte body",
            head.method,
            head.target,
            ", ".join(values),
            len(data),
        )
        return None
    return headers


class _ConnectionGone(Exception):
    """The peer closed or reset the connection, or it cannot be used any more.

    Reads and writes turn the stream's failure into this, so a handler's own
    errors (a ConnectionLost of an upstream it dialled, say) are never taken
    for the client's. A failing stream raises ``anyio.BrokenResourceError``:
    rama's :class:`~rama_net.ConnectionLost` subclasses it and anyio's own
    streams (``TLSStream``, ``SocketStream``) raise it directly, so that one
    type covers both.
    """


async def serve_http1(
    ctx: Context,
    stream: ByteStream,
    service: Service[Request, Response],
    config: ServerConfig | None = None,
    *,
    initial: bytes = b"",
) -> None:
    """Serve HTTP/1.1 requests on ``stream`` until the connection ends.

    ``initial`` holds bytes already read from the stream (while detecting
    the protocol, say); they are parsed first. The stream is not closed here:
    the caller (a TCP server) owns it.
    """
    await Http1Connection(ctx, stream, service, config, initial=initial).run()


class Http1Connection:
    """One HTTP/1.1 connection; use :func:`serve_http1` unless you need its state."""

    def __init__(
        self,
        ctx: Context,
        stream: ByteStream,
        service: Service[Request, Response],
        config: ServerConfig | None = None,
        *,
        initial: bytes = b"",
    ) -> None:
        self.ctx = ctx
        self.stream = stream
        self.service = service
        self.config = cfg = config or _DEFAULT_CONFIG
        self.engine: H1Engine = make_engine(cfg.http1_engine, cfg)
        self._fast: ProtocolStream | None = stream if type(stream) is ProtocolStream else None
        self._initial = initial
        self.requests = 0
        """Requests answered on this connection so far."""
        self._phase = _IDLE
        self._deadline = _INF
        self._timed_out: int | None = None
        self._shutting_down = False
        self._scope: anyio.CancelScope | None = None
        self._response_started = False
        self._broken: HttpError | None = None
        self._continue_pending = False
        self._body_bytes = 0
        self._body_done = True
        self._unyielded = 0
        self._slice_start = 0.0
        self._clock: Callable[[], float] = time.monotonic  # the loop's, once running
        self._tg: TaskGroup | None = None
        self._watcher: anyio.CancelScope | None = None

    # -- lifecycle -------------------------------------------------------------------
    async def run(self) -> None:
        """Serve until the peer leaves, an error closes the connection or shutdown."""
        self._clock = _event_loop_clock()
        async with anyio.create_task_group() as tg:
            # Handlers may spawn helpers (a response body producer, say): they
            # run in this connection's task group, which waits for them.
            ctx = self.ctx = self.ctx.fork()
            ctx.executor = ctx.executor.with_task_group(tg)
            self._tg = tg
            # The deadline watcher starts on the first wait for the peer (or at a
            # shutdown): a short connection whose request is already buffered
            # costs no task and no cancellation.
            with anyio.CancelScope() as scope, ctx.executor.on_shutdown(self._start_watch):
                self._scope = scope
                try:
                    if self._initial:
                        self.engine.feed(self._initial)
                    await self._loop()
                except (_ConnectionGone, anyio.BrokenResourceError):
                    # (a protocol handed the stream by an upgrade lost it)
                    pass
            if self._watcher is not None:
                self._watcher.cancel()
            if self._timed_out is not None:
                await self._on_timeout(self._timed_out)

    def _tick(self) -> float | None:
        cfg = self.config
        timeouts = [
            t
            for t in (
                cfg.keep_alive_timeout,
                cfg.header_read_timeout,
                cfg.body_read_timeout,
                cfg.write_timeout,
            )
            if t is not None
        ]
        return max(min(timeouts), 0.01) if timeouts else None

    def _start_watch(self) -> None:
        """Start the deadline watcher unless it runs (before any wait for the peer)."""
        if self._watcher is None and self._tg is not None:
            self._watcher = anyio.CancelScope()
            self._tg.start_soon(self._watch, self._watcher)

    async def _watch(self, scope: anyio.CancelScope) -> None:
        """Cancel the loop when a deadline passes or, while idle, on shutdown.

        The loop only stores deadlines; this task wakes once per shortest
        timeout, so keep-alive requests cost no timer work and a deadline is
        noticed at most one tick late.
        """
        with scope:
            await self._watch_loop()

    async def _watch_loop(self) -> None:
        executor = self.ctx.executor
        watch_shutdown = executor.shutdown is not None
        tick = self._tick()
        clock = self._clock
        grace_at = _INF
        while True:
            deadline = self._deadline
            now = clock()
            if deadline <= now:
                self._timed_out = self._phase
                assert self._scope is not None
                self._scope.cancel()
                return
            if grace_at <= now:
                _log.info(
                    "HTTP/1.1 connection: shutdown grace of %gs over, cancelling its request",
                    self.config.shutdown_grace,
                )
                assert self._scope is not None
                self._scope.cancel()
                return
            # Deadlines set while we sleep may be earlier than the one seen
            # now, but never by more than the shortest timeout (the tick).
            delay = tick if deadline == _INF else deadline - now
            if tick is not None and delay is not None and delay > tick:
                delay = tick
            if grace_at != _INF and (delay is None or grace_at - now < delay):
                delay = grace_at - now
            if watch_shutdown:
                with anyio.move_on_after(delay):
                    await executor.wait_shutdown()
                    watch_shutdown = False
                    self._shutting_down = True
                    if self._phase == _IDLE and self.engine.head_bytes_pending == 0:
                        assert self._scope is not None
                        self._scope.cancel()
                        return
                    # Busy: the request in flight may finish (answered with
                    # Connection: close) within the grace, as on h2.
                    grace_at = clock() + self.config.shutdown_grace
            elif delay is None:
                await anyio.sleep_forever()
            else:
                await anyio.sleep(delay)

    def _set_deadline(self, seconds: float | None) -> None:
        self._deadline = _INF if seconds is None else self._clock() + seconds

    async def _on_timeout(self, phase: int) -> None:
        if phase == _HEAD or (phase == _BODY and not self._response_started):
            _log.debug("request not received in time")
            await self._send_error(408)
        elif phase == _IDLE:
            _log.debug("idle keep-alive connection closed")

    # -- reading ---------------------------------------------------------------------
    async def _receive(self) -> bytes:
        fast = self._fast
        if fast is not None:
            data = fast.receive_nowait()
            if data is not None:
                self.engine.feed(data)
                return data
            # Nothing buffered: the receive below waits for the peer, which
            # lets other tasks run (see _SLICE).
            self._unyielded = 0
            self._slice_start = 0.0
        if self._watcher is None:
            self._start_watch()
        try:
            data = await self.stream.receive(65536)
        except anyio.EndOfStream:
            self.engine.feed_eof()
            return b""
        except anyio.BrokenResourceError as e:
            raise _ConnectionGone from e
        self.engine.feed(data)
        return data

    async def _wait_head(self) -> None:
        cfg = self.config
        pending = self.engine.head_bytes_pending
        if pending == 0:
            self._phase = _IDLE
            if self._shutting_down:
                raise _ConnectionGone
            self._set_deadline(cfg.keep_alive_timeout if self.requests else cfg.header_read_timeout)
        else:
            if self._phase != _HEAD:
                self._phase = _HEAD
                self._set_deadline(cfg.header_read_timeout)
        # A complete head is parsed at once; an incomplete one comes back here
        # with bytes pending and switches to the header deadline above.
        if not await self._receive():
            self._deadline = _INF

    async def _loop(self) -> None:
        engine = self.engine
        while True:
            try:
                ev = engine.next_event()
            except ProtocolError as e:
                _log.debug("bad request: %s", e)
                await self._send_error(e.status)
                return
            if ev is NEED_DATA:
                await self._wait_head()
                continue
            if type(ev) is not RequestHead:
                return  # PAUSED at EOF between requests
            self._deadline = _INF
            self._phase = _HANDLER
            if not await self._handle(ev):
                return
            self.requests += 1
            # Pipelined requests parsed from buffered bytes never make the loop
            # wait: yield every few so one client cannot hold the event loop.
            unyielded = self._unyielded + 1
            if unyielded & 7 == 0:
                now = time.monotonic()
                if not self._slice_start:
                    self._slice_start = now
                elif now - self._slice_start >= _SLICE:
                    await checkpoint()
                    self._slice_start = time.monotonic()
            self._unyielded = unyielded
            # The answer is out: an error in the next request (or its
            # stalled head) must be answered, not end in a bare close.
            self._response_started = False
            try:
                engine.start_next_cycle()
            except LocalProtocolError:
                return
            if self._shutting_down:
                return

    # -- one request -----------------------------------------------------------------
    async def _handle(self, head: RequestHead) -> bool:
        cfg = self.config
        self._response_started = False
        self._broken = None
        self._body_bytes = 0
        limit = cfg.max_body_size
        if limit is not None and head.content_length is not None and head.content_length > limit:
            _log.debug("request body of %d bytes is over the limit", head.content_length)
            await self._send_error(413)
            return False
        if head.has_body:
            self._body_done = False
            self._continue_pending = head.expect_continue
            body = Body(stream=_RequestBodySource(self, head), length=head.content_length)
        else:
            self._body_done = True
            self._continue_pending = False
            body = Body(b"")
        req = Request._trusted(
            head.method,
            head.target,
            Headers.from_parsed(head.headers, head.keys),
            body,
            head.version,
        )
        req._uri = head.uri
        try:
            resp = await self.service.serve(self.ctx.fork(), req)
        except anyio.get_cancelled_exc_class():
            raise
        except _ConnectionGone:
            raise
        except Exception as e:
            broken = self._broken
            if broken is not None:
                # The peer's request body was malformed or too large: the
                # engine cannot find the next request, so answer and close.
                _log.debug("bad request body for %s %s: %s", head.method, head.target, broken)
                await self._send_error(broken.status)
                return False
            failure = handler_failure(e)
            log_handler_failure(_log, failure, e, head.method, head.target)
            if self._response_started:
                return False
            resp = failure.response()
            resp.headers.set("Connection", "close")
        if type(resp) is not Response and not isinstance(resp, Response):
            _log.error("HTTP handler returned %s, not a Response", type(resp).__name__)
            resp = Response.error(500)
            resp.headers.set("Connection", "close")
        if self._broken is not None and not self._body_done:
            # The handler caught the body error and answered anyway: send its
            # answer, but the connection cannot be reused.
            resp.headers.set("Connection", "close")
        try:
            return await self._respond(head, resp)
        except LocalProtocolError as e:
            # The handler's answer cannot be put on the wire (an invalid
            # Content-Length, say): our fault, a 500 when nothing was sent yet.
            _log.error(
                "HTTP handler's answer to %s %s cannot be sent: %s", head.method, head.target, e
            )
            await self._send_error(500)
            return False

    def _extra_headers(self, resp: Response) -> list[tuple[str, str]]:
        items = resp.headers._items
        cfg = self.config
        extra: list[tuple[str, str]] = []
        if cfg.date_header and "date" not in resp.headers._keys:
            extra.append(("Date", _http_date()))
        if cfg.server_header is not None and "server" not in resp.headers._keys:
            extra.append(("Server", cfg.server_header))
        if self._shutting_down or self._continue_pending:
            extra.append(("Connection", "close"))
        return items + extra if extra else items

    async def _respond(self, head: RequestHead, resp: Response) -> bool:
        engine = self.engine
        status = resp.status
        switching = resp.on_upgrade is not None and (
            (status == 101 and head.upgrade is not None)
            or (head.method == "CONNECT" and 200 <= status < 300)
        )
        if status == 101 and not switching:
            _log.error("101 answer without an Upgrade request or on_upgrade handler")
            resp = Response.error(500)
            status = 500
        if status < 200 and status != 101:
            _log.error("handlers cannot answer with 1xx status %d", status)
            resp = Response.error(500)
            status = 500
        body = resp.body
        data = body.bytes_now()
        keys = resp.headers._keys
        if "content-length" in keys:
            framing = _check_framing(head, resp, data)
            if framing is None:
                resp = Response.error(500)
                resp.headers.set("Connection", "close")
                body, data, status, switching = resp.body, resp.body.bytes_now(), 500, False
            elif framing is not resp.headers:
                resp.headers = framing
        headers = self._extra_headers(resp)
        reason = resp.reason or reason_phrase(status)
        # A handler switching without reading the request body: the bytes behind
        # the head are body, not the new protocol. Drop it first.
        if (
            switching
            and not self._body_done
            and (self._continue_pending or not await self._drain_request_body())
        ):
            _log.error("cannot switch protocols: the request body was not read")
            await self._send_error(500)
            return False
        self._phase = _WRITE
        if switching:
            out = engine.response(status, reason, headers, b"" if status != 101 else None)
            self._response_started = True
            await self._send(out)
            leftover = engine.switch_protocol()
            self._deadline = _INF
            self._phase = _HANDLER
            assert resp.on_upgrade is not None
            await resp.on_upgrade(RewindStream(self.stream, leftover) if leftover else self.stream)
            return False
        if data is not None:
            out = engine.response(status, reason, headers, data)
            self._response_started = True
            await self._send(out)
        else:
            await self._stream_body(head, status, reason, headers, body)
        self._deadline = _INF
        self._phase = _HANDLER
        if not self._body_done and (self._continue_pending or not await self._drain_request_body()):
            return False
        return engine.keep_alive and not self._shutting_down

    async def _stream_body(
        self,
        head: RequestHead,
        status: int,
        reason: str,
        headers: list[tuple[str, str]],
        body: Body,
    ) -> None:
        engine = self.engine
        if body.length is not None and not any(
            n.lower() in ("content-length", "transfer-encoding") for n, _ in headers
        ):
            headers = [*headers, ("Content-Length", str(body.length))]
        out = engine.response(status, reason, headers, None)
        self._response_started = True
        await self._send(out)
        try:
            # HEAD, 204 and 304 answers carry no body: never run the producer
            # (an endless one would spin here without ever awaiting).
            if head.method != "HEAD" and status not in NO_BODY_STATUSES:
                async for chunk in body:
                    out = engine.data(chunk)
                    if out:
                        await self._send(out)
        except (BodyError, LocalProtocolError) as e:
            _log.warning("response body failed: %s", e)
            raise _ConnectionGone from e
        finally:
            await close_body_soon(body)
        trailers = body.trailers
        try:
            await self._send(engine.end(list(trailers) if trailers else None))
        except LocalProtocolError as e:
            _log.warning("response body failed: %s", e)
            raise _ConnectionGone from e

    async def _send(self, data: bytes) -> None:
        if not data:
            return
        fast = self._fast
        try:
            if fast is not None:
                # Protocol-backed stream: wait only while the peer is behind, then
                # queue without a coroutine (the transport buffers at most one
                # write past its high-water mark).
                if fast.write_paused:
                    await self._drain(fast)
                fast.send_nowait(data)
                return
            phase = self._phase
            self._phase = _WRITE
            self._set_deadline(self.config.write_timeout)
            if self._watcher is None:
                self._start_watch()
            await self.stream.send(data)
        except anyio.BrokenResourceError as e:
            raise _ConnectionGone from e
        self._deadline = _INF
        self._phase = phase

    async def _drain(self, fast: ProtocolStream) -> None:
        phase = self._phase
        self._phase = _WRITE
        self._set_deadline(self.config.write_timeout)
        if self._watcher is None:
            self._start_watch()
        await fast.drain()
        self._deadline = _INF
        self._phase = phase

    async def _drain_request_body(self) -> bool:
        """Read and drop what the handler left of the request body, within limits."""
        dropped = 0
        try:
            async for chunk in _RequestBodySource(self, None):
                dropped += len(chunk)
                if dropped > _DRAIN_LIMIT:
                    return False
        except HttpError:
            return False
        return self._body_done

    # -- body reading (called from the handler's task) ----------------------------------
    async def next_body_event(self) -> bytes | None:
        """The next request body chunk, or None at its end (trailers in ``last_trailers``)."""
        engine = self.engine
        if self._continue_pending:
            self._continue_pending = False
            if not self._response_started:
                await self._send(engine.continue_response())
        while True:
            try:
                ev = engine.next_event()
            except ProtocolError as e:
                self._broken = e
                raise BodyError(f"bad request body: {e}") from e
            if ev is NEED_DATA:
                phase = self._phase
                self._phase = _BODY
                self._set_deadline(self.config.body_read_timeout)
                await self._receive()
                self._deadline = _INF
                self._phase = phase
                continue
            if type(ev) is BodyData:
                self._body_bytes += len(ev.data)
                limit = self.config.max_body_size
                if limit is not None and self._body_bytes > limit:
                    err = BodyTooLarge(limit)
                    self._broken = err
                    raise err
                return ev.data
            if type(ev) is BodyEnd:
                self._body_done = True
                self.last_trailers = Headers(ev.trailers) if ev.trailers else None
                return None
            self._body_done = True
            return None

    last_trailers: Headers | None = None

    # -- errors ----------------------------------------------------------------------
    async def _send_error(self, status: int) -> None:
        """Answer a request we cannot serve and close (lingering so the answer arrives).

        The body is the reason phrase only: what went wrong is logged, never sent.
        """
        if self._response_started:
            return
        self._response_started = True
        with anyio.move_on_after(_LINGER_SECONDS, shield=True):
            try:
                await self.stream.send(error_response(status))
                # TLS streams may not half-close; the linger below still helps
                with contextlib.suppress(NotImplementedError):
                    await self.stream.send_eof()
                # Read what the client still sends so closing does not reset the
                # connection before it read our answer.
                received = 0
                while received < _DRAIN_LIMIT:
                    received += len(await self.stream.receive(65536))
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                # the peer is gone (a transport's half-close may raise a raw ENOTCONN)
                pass


class _RequestBodySource:
    """Async iterator over one request's body, pulling from the connection."""

    __slots__ = ("_conn", "_done", "trailers")

    def __init__(self, conn: Http1Connection, head: RequestHead | None) -> None:
        self._conn = conn
        self._done = False
        self.trailers: Headers | None = None

    def __aiter__(self) -> _RequestBodySource:
        return self

    async def __anext__(self) -> bytes:
        if self._done or self._conn._body_done:
            raise StopAsyncIteration
        chunk = await self._conn.next_body_event()
        if chunk is None:
            self._done = True
            self.trailers = self._conn.last_trailers
            raise StopAsyncIteration
        return chunk
