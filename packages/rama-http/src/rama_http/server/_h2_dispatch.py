"""h2 stream dispatch: a request's header block becomes a Request and runs its handler.

No task and no cancel scope per stream while the handler does not wait: the
reading task steps each new stream's handler coroutine itself
(:meth:`H2Dispatch.step`), in a context of its own (``contextvars``), right
after the read that opened it. A handler (with its response writing) that
completes without suspending costs no task at all. One that suspends keeps
the task it started in: that task stops reading and finishes the handler,
reading goes on in a new task (:meth:`~._h2.H2Connection._reader`), and the
reader's cancel scope, entered before the handler started, is the stream's
from then on (a reset or shutdown cancels it). Cancel scopes and task groups
the handler enters before its first wait are therefore entered and left in
one task, as anyio requires.

A failing handler is answered by the policy HTTP/1.1 uses too
(:func:`~rama_http.server.handler_failure`) while its response head is unsent,
and its stream is reset (RST_STREAM(INTERNAL_ERROR)) after.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import types
from collections import deque
from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any

import anyio

from rama_core import Context

from .._body import Body
from .._errors import BodyTooLarge
from .._h2._inbound import H2InboundData, StreamResetError
from .._h2._record import PseudoHeaderOrder
from .._headers import Headers
from .._message import Request, Response
from .._uri import Uri
from .._version import Version
from ._failure import handler_failure, log_handler_failure
from ._h2_stream import H2ServerStream, StreamGone
from ._h2_tunnel import ExtendedConnectProtocol

if TYPE_CHECKING:
    from ._h2 import H2Connection

__all__ = ["H2Dispatch", "Suspended", "resume"]

_log = logging.getLogger("rama.http.h2")

_NO_ERROR = 0x0
_INTERNAL_ERROR = 0x2
_REFUSED_STREAM = 0x7
_CANCEL = 0x8

Suspended = tuple[H2ServerStream, Coroutine[Any, Any, None], Any, contextvars.Context]
"""A handler that suspended in its first step: stream, coroutine, what it yielded, its context."""


@types.coroutine
def resume(
    coro: Coroutine[Any, Any, None], value: Any, cctx: contextvars.Context
) -> Generator[Any, Any, None]:
    """Go on running ``coro`` (suspended on ``value``) in this task, in ``cctx``.

    What the event loop sends or throws in goes to ``coro``, what it yields goes
    to the event loop: the coroutine cannot tell it was started by hand.
    """
    send, throw, run = coro.send, coro.throw, cctx.run
    while True:
        try:
            sent = yield value
        except BaseException as e:
            try:
                value = run(throw, e)
            except StopIteration:
                return
        else:
            try:
                value = run(send, sent)
            except StopIteration:
                return


class H2Dispatch:
    """Turns the requests of one connection into handler runs."""

    __slots__ = ("_c", "_config", "ready")

    def __init__(self, conn: H2Connection) -> None:
        self._c = conn
        self._config = conn._config
        self.ready: deque[tuple[H2ServerStream, Request, Context]] = deque()
        """Streams whose handler has not started (it starts after the current read)."""

    def on_request(self, sid: int, raw: list[tuple[bytes, bytes]], ended: bool) -> None:
        """A request header block on a new stream: queue its handler (or refuse it)."""
        c = self._c
        if c._draining or c._closed:
            c._engine.reset(sid, _REFUSED_STREAM)
            c._flood.refused()
            return
        if sid > c._last_stream_id:
            c._last_stream_id = sid
        pseudo: dict[bytes, bytes] = {}
        order: list[str] = []
        fields: list[tuple[str, str]] = []
        cookies: list[str] | None = None
        for name, value in raw:
            n, v = bytes(name), bytes(value)
            if n[:1] == b":":
                pseudo[n] = v
                order.append(n.decode("latin-1"))
            elif n == b"cookie":
                # Split cookie fields are joined again (RFC 9113 section 8.2.3), last,
                # as the h2 library's inbound normalization does.
                if cookies is None:
                    cookies = []
                cookies.append(v.decode("latin-1"))
            else:
                fields.append((n.decode("latin-1"), v.decode("latin-1")))
        if cookies is not None:
            fields.append(("cookie", "; ".join(cookies)))
        names = tuple(order)
        c.recorder.set_pseudo_header_order(names)

        config = self._config
        limit = config.max_body_size
        inbound = H2InboundData(
            functools.partial(c._ack, sid),
            limit=limit,
            timeout=config.body_read_timeout,
        )
        method = pseudo.get(b":method", b"GET").decode("latin-1")
        st = H2ServerStream(sid, inbound, head=method == "HEAD")
        headers = Headers.from_trusted(fields)
        content_length = headers.get("content-length")
        length = int(content_length) if content_length and content_length.isdigit() else None
        if limit is not None and length is not None and length > limit:
            # Refused before any handler runs, as HTTP/1.1 does.
            _log.info("h2 stream %d: declared body of %d bytes over the limit", sid, length)
            c._writer.answer_now(st, 413, text=f"request body larger than {limit} bytes")
            if not ended:
                c._reset(st, _NO_ERROR)
            c._flood.stream_closed(sid)
            return
        c._streams[sid] = st
        c._idle_since = None

        scheme = pseudo.get(b":scheme")
        authority = pseudo.get(b":authority")
        path = pseudo.get(b":path")
        body = Body.from_iter(inbound, length=length)
        target = (
            path.decode("latin-1")
            if path is not None
            else (authority.decode("latin-1") if authority is not None else "")
        )
        req = Request._trusted(method, target, headers, body, Version.HTTP_2)
        try:
            req.uri = Uri.from_parts(
                scheme=scheme.decode("latin-1") if scheme is not None else None,
                authority=authority.decode("latin-1") if authority is not None else None,
                path_and_query=target if path is not None else "",
            )
            req.target = target
        except ValueError:
            # Keep the raw target; Request.uri reports the problem if a handler asks.
            pass

        req_ctx = c._ctx.fork()
        req_ctx.insert(PseudoHeaderOrder(names))
        protocol = pseudo.get(b":protocol")
        if protocol is not None:
            req_ctx.insert(ExtendedConnectProtocol(protocol.decode("latin-1")))
        if ended:
            inbound.end()
        self.ready.append((st, req, req_ctx))

    def step(self) -> Suspended | None:
        """Run the ready handlers inline, in order, until one suspends (returned).

        The ones after it stay in :attr:`ready` for the next reader.
        """
        ready = self.ready
        while ready:
            st, req, ctx = ready.popleft()
            if st.cancelled or st.reset_code is not None:
                # Reset before its handler started (RST_STREAM in the same read).
                self.finish(st)
                continue
            coro = self._run_stream(st, req, ctx)
            cctx = contextvars.copy_context()
            try:
                value = cctx.run(coro.send, None)
            except StopIteration:
                continue
            return st, coro, value, cctx
        return None

    def drop_ready(self) -> None:
        """The connection stopped reading: streams never started are only cleaned up."""
        ready, self.ready = self.ready, deque()
        for st, _req, _ctx in ready:
            st.body.close_now()
            self.finish(st)

    async def _run_stream(self, st: H2ServerStream, req: Request, ctx: Context) -> None:
        c = self._c
        try:
            resp = await c._service.serve(ctx, req)
            if not isinstance(resp, Response):
                _log.error("HTTP handler returned %r, not a Response", type(resp).__name__)
                resp = Response.error(500)
            await c._writer.send_response(st, req, resp)
        except (StreamGone, StreamResetError):
            pass
        except Exception as e:
            self._on_handler_error(st, req, e)
        finally:
            st.body.close_now()
            self.finish(st)

    def finish(self, st: H2ServerStream) -> None:
        """The handler is done (or never ran): close the stream's books."""
        c = self._c
        if st.reset_code is None and not c._closed:
            if not st.headers_sent:
                c._reset(st, _INTERNAL_ERROR)
            elif not st.body.ended:
                # Answered before the upload finished: tell the client to stop sending.
                c._reset(st, _NO_ERROR)
        streams = c._streams
        streams.pop(st.id, None)
        c._flood.stream_closed(st.id)
        if not streams:
            c._idle_since = anyio.current_time()
            c._idle_changed.set()
            if c._draining:
                c._stop_reading()

    def _on_handler_error(self, st: H2ServerStream, req: Request, e: Exception) -> None:
        """One policy with HTTP/1.1 (:func:`handler_failure`): answer if the head is unsent.

        After the head went out the stream can only be reset (INTERNAL_ERROR).
        A stream the peer reset or a connection that closed meanwhile is not the
        handler's fault: nothing is logged above DEBUG.
        """
        c = self._c
        if not c._writer.open(st):
            _log.debug("h2 stream %d: handler ended after the stream closed: %r", st.id, e)
            return
        failure = handler_failure(e)
        log_handler_failure(_log, failure, e, req.method, req.target)
        if not st.headers_sent and c._writer.answer_now(st, failure.status, failure.headers):
            return
        c._reset(st, _INTERNAL_ERROR)

    def on_data(self, sid: int, data: bytes) -> None:
        """DATA for a stream: into its body (window given back as the handler reads)."""
        c = self._c
        st = c._streams.get(sid)
        if st is None:
            if data:
                c._engine.ack(sid, len(data))
            return
        try:
            st.body.push(data, len(data))
        except BodyTooLarge as e:
            self._body_too_large(st, e)

    def _body_too_large(self, st: H2ServerStream, err: BodyTooLarge) -> None:
        """The upload went over max_body_size: 413 if still possible, else reset."""
        c = self._c
        if st.headers_sent or not c._writer.open(st):
            # Too late for a status; the handler's next read raises BodyTooLarge.
            c._reset(st, _CANCEL)
            return
        _log.info("h2 stream %d: %s -> 413", st.id, err)
        # The request is refused whatever the handler would do: stop it, answer in full,
        # then ask the client to stop sending with RST_STREAM(NO_ERROR) (RFC 9113 8.1).
        st.cancel()
        c._writer.answer_now(st, 413, text=f"request body larger than {err.limit} bytes")
        c._reset(st, _NO_ERROR)
