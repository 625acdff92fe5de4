"""One HTTP request/response cycle between a rama Request and an ASGI app.

The app runs in its own task (in the connection's task group); ``serve``
waits until the app has sent ``http.response.start`` and either finished the
body (the common case: the Response carries the bytes) or started streaming
(the Response body pulls the chunks the app sends, with backpressure).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable
from typing import Any, Protocol

import anyio
from anyio.lowlevel import checkpoint

from .._body import Body
from .._errors import BodyError
from .._headers import Headers
from .._message import Request, Response

__all__ = ["AsgiAppError", "ClientDisconnected", "HttpCycle"]

_log = logging.getLogger("rama.http.asgi")

_REQUEST_DONE = {"type": "http.request", "body": b"", "more_body": False}
_DISCONNECT = {"type": "http.disconnect"}
_HIGH_WATER = 64 * 1024
"""Response bytes the app may send ahead of the server before ``send`` waits."""


class _Signal(Protocol):
    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self) -> Awaitable[Any]: ...


class _FutureSignal:
    """A one-shot event for one waiter on asyncio: a bare Future (cheaper than an Event)."""

    __slots__ = ("_fut",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._fut: asyncio.Future[None] = loop.create_future()

    def set(self) -> None:
        fut = self._fut
        if not fut.done():
            fut.set_result(None)

    def is_set(self) -> bool:
        return self._fut.done()

    def wait(self) -> asyncio.Future[None]:  # awaited once, by the one waiter
        return self._fut


class AsgiAppError(Exception):
    """The ASGI app broke the protocol (a message out of order, a bad field)."""


class ClientDisconnected(OSError):
    """``send`` after the client went away (ASGI spec 2.4: a subclass of OSError)."""


class HttpCycle:
    """State shared by the app's ``receive``/``send`` and the server side."""

    __slots__ = (
        "_body_iter",
        "_chunks",
        "_disconnect",
        "_loop",
        "_queued",
        "_reading",
        "_space",
        "_wake",
        "app_done",
        "body_error",
        "disconnected",
        "error",
        "finished",
        "head",
        "more",
        "req",
        "started",
        "streaming",
    )

    def __init__(self, req: Request, loop: asyncio.AbstractEventLoop | None) -> None:
        self.req = req
        self._loop = loop
        self._body_iter: Any = None
        self._reading: anyio.CancelScope | None = None
        self.started = False
        self.more = True  # the app has more body to send
        self.finished = False  # the response is complete (or abandoned by the server)
        self.disconnected = False
        self.streaming = False  # serve() returned a streamed body
        self.app_done = False
        self.error: BaseException | None = None
        self.body_error: BaseException | None = None
        self.head: tuple[int, Headers] | None = None
        self._chunks: deque[bytes] = deque()
        self._queued = 0
        # serve(), then the body consumer, waits on _wake; the app on _space
        self._wake: _Signal = self.signal()
        self._space: _Signal | None = None
        self._disconnect: anyio.Event | None = None  # any number of receive() calls wait

    def signal(self) -> _Signal:
        """A new one-waiter event (a Future on asyncio, an anyio Event elsewhere)."""
        loop = self._loop
        if loop is not None:
            return _FutureSignal(loop)
        ev: Any = anyio.Event()
        return ev  # type: ignore[no-any-return]

    # -- the app's side ------------------------------------------------------------------
    async def receive(self) -> dict[str, Any]:
        """ASGI ``receive``: the request body, then ``http.disconnect``."""
        if self.disconnected or self.finished:
            await checkpoint()
            return _DISCONNECT
        it = self._body_iter
        if it is None:
            body = self.req.body
            data = body.bytes_now()
            if data is not None and not body.consumed:
                body._consumed = True
                self._body_iter = False
                return {"type": "http.request", "body": data, "more_body": False}
            it = self._body_iter = aiter(body)
        elif it is False:
            return await self._wait_disconnect()
        scope = self._reading = anyio.CancelScope()
        chunk: bytes | None = None
        try:
            with scope:
                chunk = await anext(it)
        except StopAsyncIteration:
            self._body_iter = False
            return dict(_REQUEST_DONE)
        except BodyError as e:
            # the peer's fault (malformed, too large, reset): the app sees it leave
            self.body_error = e
            self.disconnected = True
            self._wake.set()
            _log.debug("request body failed: %s", e)
            return _DISCONNECT
        finally:
            self._reading = None
        if chunk is None:  # cancelled: the response finished meanwhile
            return _DISCONNECT
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def _wait_disconnect(self) -> dict[str, Any]:
        if not (self.disconnected or self.finished):
            ev = self._disconnect
            if ev is None:
                ev = self._disconnect = anyio.Event()
            await ev.wait()
        return _DISCONNECT

    async def send(self, message: Any) -> None:
        """ASGI ``send``: ``http.response.start`` then ``http.response.body`` messages."""
        kind = message["type"]
        if kind == "http.response.body":
            if not self.started:
                raise AsgiAppError("http.response.body before http.response.start")
            if not self.more:
                raise AsgiAppError("http.response.body after the response ended")
            if self.disconnected:
                raise ClientDisconnected("the client went away")
            data = message.get("body", b"")
            more = message.get("more_body", False)
            if data:
                if type(data) is not bytes:
                    data = bytes(data)
                self._chunks.append(data)
                self._queued += len(data)
            if not more:
                self.more = False
                self._wake.set()
                # No checkpoint here: the server takes the answer when this task next
                # waits or ends (a loop turn per request saved; background tasks that
                # never await delay the answer until they are done).
                return
            self._wake.set()
            if self.streaming and self._queued > _HIGH_WATER:
                while self._queued > _HIGH_WATER and not (self.finished or self.disconnected):
                    ev = self._space = self.signal()
                    await ev.wait()
                if self.disconnected:
                    raise ClientDisconnected("the client went away")
            return
        if kind == "http.response.start":
            if self.started:
                raise AsgiAppError("http.response.start sent twice")
            status = message["status"]
            if type(status) is not int or not 100 <= status <= 999:
                raise AsgiAppError(f"invalid status {status!r}")
            raw = message.get("headers", ())
            try:
                headers = Headers(list(raw))
            except Exception as e:
                raise AsgiAppError(f"invalid response headers: {e}") from None
            self.head = (status, headers)
            self.started = True
            self._wake.set()
            return
        if kind == "http.response.trailers":
            return  # trailers are not announced in the scope; ignore quietly
        raise AsgiAppError(f"unexpected ASGI message {kind!r} for an HTTP request")

    def app_finished(self, error: BaseException | None) -> None:
        """The app's task ended (``error``: what it raised)."""
        self.app_done = True
        if error is not None:
            self.error = error
        self._wake.set()
        space = self._space
        if space is not None:
            space.set()

    # -- the server's side ---------------------------------------------------------------
    def end(self) -> None:
        """The response is complete or the server stopped sending it: disconnect the app."""
        if self.finished:
            return
        self.finished = True
        scope = self._reading
        if scope is not None:
            scope.cancel()  # stop a read of the request body: the server owns it now
        for ev in (self._disconnect, self._space):
            if ev is not None:
                ev.set()

    def lost(self) -> None:
        """The client went away (the server cancelled the request)."""
        self.disconnected = True
        self.end()

    def take(self) -> bytes:
        """Every queued response byte, joined."""
        chunks = self._chunks
        if len(chunks) == 1:
            data = chunks.popleft()
        else:
            data = b"".join(chunks)
            chunks.clear()
        self._queued = 0
        space = self._space
        if space is not None:
            space.set()
        return data

    def response(self) -> Response:
        """The Response for the head the app sent (call once ``started``)."""
        assert self.head is not None
        status, headers = self.head
        if not self.more:
            self.end()
            return Response(status, headers=headers, body=self.take())
        self.streaming = True
        return Response(status, headers=headers, body=Body(stream=_ResponseStream(self)))


class _ResponseStream:
    """The streamed response body: chunks the app sends, as the server pulls them."""

    __slots__ = ("_cycle",)

    def __init__(self, cycle: HttpCycle) -> None:
        self._cycle = cycle

    def __aiter__(self) -> _ResponseStream:
        return self

    async def __anext__(self) -> bytes:
        c = self._cycle
        while True:
            if c._chunks:
                return c.take()
            if not c.more:
                c.end()
                raise StopAsyncIteration
            if c.app_done:
                c.end()
                err = c.error
                if err is not None:
                    raise BodyError("ASGI app failed after the response started") from err
                raise BodyError("ASGI app returned without completing the response")
            if c.finished:
                raise StopAsyncIteration
            ev = c._wake = c.signal()
            await ev.wait()

    async def aclose(self) -> None:
        c = self._cycle
        if c.more and not c.app_done:
            c.lost()  # the server stopped before the end: the client is gone
        else:
            c.end()
