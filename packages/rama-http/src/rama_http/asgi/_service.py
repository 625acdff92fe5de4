"""AsgiService: an ASGI 3 application as a rama ``Service[Request, Response]``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Literal

import anyio
import sniffio
from anyio.abc import TaskGroup

from rama_core import Context

from .._message import Request, Response
from ..ws import WebSocketConfig, WebSocketUpgrade, is_websocket_request
from ..ws._socket import WebSocket
from ._http import HttpCycle
from ._lifespan import Lifespan, LifespanError
from ._scope import scope_for
from ._types import ASGIApp
from ._ws import WsCycle

__all__ = ["AsgiService"]

_log = logging.getLogger("rama.http.asgi")

LifespanMode = Literal["auto", "on", "off"]


async def _no_handler(ws: WebSocket) -> None:  # pragma: no cover - never run (handshake probe)
    return None


_PROBE = WebSocketUpgrade(_no_handler, compression=False)
_running_loop = asyncio._get_running_loop  # None under trio: then anyio task groups


class AsgiService:
    """Hosts an ASGI 3 application on the rama HTTP server (HTTP/1.1, h2, WebSocket).

    ``await serve("127.0.0.1:8000", AsgiService(app))`` serves ``app``. Each
    request runs the app in its own task in the connection's task group;
    request bodies stream in (``more_body``), response bodies stream out
    with backpressure, and ``http.disconnect`` arrives once the response is
    complete or the client went away. WebSocket handshakes (HTTP/1.1 Upgrade
    and h2 extended CONNECT) run the app with a ``websocket`` scope on
    :mod:`rama_http.ws`; a ``websocket.close`` before accepting is a 403 and
    the ``websocket.http.response`` extension sends any other answer.

    Lifespan (``lifespan``): ``"auto"`` runs it and goes on without when the
    app does not support it, ``"on"`` requires it, ``"off"`` skips it. It is
    driven by ``async with AsgiService(app) as svc:`` (startup on entry, a
    failure raises :class:`LifespanError`; shutdown on exit) or, without the
    block, started before the first request and shut down when the
    surrounding :class:`rama_core.Shutdown` has drained the requests.
    ``state`` is the lifespan state (a dict copied into each scope).

    On TLS connections ``scope["extensions"]["tls"]`` has the ASGI TLS
    extension plus the client's ``ja4`` (see :func:`tls_extension`). An app
    that raises before its response starts gets a 500 (logged once, no
    details to the peer); after it, the connection is aborted.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        lifespan: LifespanMode = "auto",
        root_path: str = "",
        state: dict[str, Any] | None = None,
        ws_config: WebSocketConfig | None = None,
        ws_compression: bool = True,
        lifespan_timeout: float = 10.0,
    ) -> None:
        if lifespan not in ("auto", "on", "off"):
            raise ValueError(f"lifespan must be 'auto', 'on' or 'off', not {lifespan!r}")
        if root_path.endswith("/"):
            root_path = root_path.rstrip("/")
        self.app = app
        self.lifespan_mode: LifespanMode = lifespan
        self.root_path = root_path
        self.state: dict[str, Any] = state if state is not None else {}
        self.ws_config = ws_config or WebSocketConfig()
        self.ws_compression = ws_compression
        self.lifespan_timeout = lifespan_timeout
        self._lifespan: Lifespan | None = None
        self._lifespan_lock: anyio.Lock | None = None
        self._ready = lifespan == "off"
        self._stack: contextlib.AsyncExitStack | None = None
        self._tg: TaskGroup | None = None
        self._active = 0
        self._idle: anyio.Event | None = None
        self._system_tasks: set[Any] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifespan ------------------------------------------------------------------------
    async def __aenter__(self) -> AsgiService:
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            if self.lifespan_mode != "off":
                life = self._lifespan = Lifespan(self.app, self.lifespan_mode, self.state)
                self._tg.start_soon(life.run, name="asgi lifespan")
                await life.wait_started()
            self._ready = True
        except BaseException:
            self._tg = None
            self._lifespan = None
            if self._stack is None:
                await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        life, self._lifespan = self._lifespan, None
        try:
            with anyio.CancelScope(shield=True):
                # requests and background tasks still running get the lifespan timeout
                with anyio.move_on_after(self.lifespan_timeout):
                    while self._active:
                        ev = self._idle = anyio.Event()
                        await ev.wait()
                if life is not None and not life.unsupported and life.failure is None:
                    await life.stop(self.lifespan_timeout)
        finally:
            if self._tg is not None:
                self._tg.cancel_scope.cancel()
            self._tg = None
            self._ready = self.lifespan_mode == "off"
            if stack is not None:
                await stack.__aexit__(exc_type, exc, tb)

    async def _start_lazily(self, ctx: Context) -> None:
        """Start the lifespan before the first request (no ``async with`` around us)."""
        if self._lifespan_lock is None:
            self._lifespan_lock = anyio.Lock()
        async with self._lifespan_lock:
            if self._ready:
                return
            life = self._lifespan
            if life is None:
                life = self._lifespan = Lifespan(self.app, self.lifespan_mode, self.state)
                shutdown = ctx.executor.shutdown
                if shutdown is not None and shutdown._task_group is not None:
                    shutdown.executor.spawn(
                        self._lifespan_task, life, shutdown, name="asgi lifespan"
                    )
                else:
                    self._spawn_system(life.run)
            try:
                await life.wait_started()
            except LifespanError:
                shutdown = ctx.executor.shutdown
                if shutdown is not None:
                    shutdown.trigger("ASGI lifespan startup failed")
                raise
            self._ready = True

    async def _lifespan_task(self, life: Lifespan, shutdown: Any) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(life.run)
            await life.started.wait()
            if life.failure is not None or life.unsupported:
                return
            await shutdown.wait_triggered()
            while self._active:
                ev = self._idle = anyio.Event()
                await ev.wait()
            await life.stop(self.lifespan_timeout)

    def _spawn_system(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if sniffio.current_async_library() == "trio":
            import trio

            trio.lowlevel.spawn_system_task(fn)
        else:
            import asyncio

            task: asyncio.Task[None] = asyncio.get_running_loop().create_task(fn())
            self._system_tasks.add(task)
            task.add_done_callback(self._system_tasks.discard)

    # -- requests ------------------------------------------------------------------------
    async def serve(self, ctx: Context, req: Request) -> Response:
        """Run the app for one request and answer with what it sends."""
        if not self._ready:
            await self._start_lazily(ctx)
        method = req.method
        if (
            (method == "GET" and "upgrade" in req.headers._keys) or method == "CONNECT"
        ) and is_websocket_request(ctx, req):
            return await self._serve_ws(ctx, req)
        loop = _running_loop()
        cycle = HttpCycle(req, loop)
        scope = scope_for("http", ctx, req, self.root_path, self.state)
        self._active += 1
        if loop is not None:
            # asyncio: a plain task (an anyio task group's start_soon costs several
            # times more per request); held in a set until it ends.
            task = loop.create_task(self._run_http(scope, cycle))
            tasks = self._tasks
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        else:
            tg = self._task_group(ctx)
            if tg is None:
                # No task group to run in (called outside a server): run inline, buffered.
                await self._run_http(scope, cycle)
            else:
                tg.start_soon(self._run_http, scope, cycle)
        try:
            while True:
                await cycle._wake.wait()
                if cycle.started:
                    if cycle.more and cycle.app_done and cycle.error is not None:
                        raise cycle.error  # nothing is on the wire yet: a plain 500
                    return cycle.response()
                if cycle.app_done:
                    if cycle.error is not None:
                        raise cycle.error
                    if cycle.body_error is not None:
                        raise cycle.body_error
                    _log.error(
                        "ASGI app returned without a response for %s %s", req.method, req.target
                    )
                    return Response.error(500)
                if cycle.body_error is not None:
                    cycle.lost()
                    raise cycle.body_error
                cycle._wake = cycle.signal()
        except BaseException:
            cycle.lost()
            raise

    def _task_group(self, ctx: Context) -> TaskGroup | None:
        tg: TaskGroup | None = ctx.executor._task_group
        return tg if tg is not None else self._tg

    def _done(self) -> None:
        self._active -= 1
        if not self._active and self._idle is not None:
            self._idle.set()

    async def _run_http(self, scope: dict[str, Any], cycle: HttpCycle) -> None:
        error: BaseException | None = None
        try:
            await self.app(scope, cycle.receive, cycle.send)
        except Exception as e:
            error = e
            if cycle.disconnected:
                _log.debug("ASGI app ended after the client left: %r", e)
            elif cycle.streaming or cycle.finished:
                # serve() has returned: nobody else will report it
                _log.error(
                    "ASGI app failed for %s %s",
                    scope["method"],
                    scope["path"],
                    exc_info=e,
                )
        finally:
            self._done()
            cycle.app_finished(error)

    async def _serve_ws(self, ctx: Context, req: Request) -> Response:
        probe = await _PROBE.serve(ctx, req)
        if probe.status not in (101, 200):
            return probe  # not a valid handshake: 400/426 without bothering the app
        scope = scope_for("websocket", ctx, req, self.root_path, self.state)
        scope["subprotocols"] = [
            t.strip()
            for v in req.headers.get_all("sec-websocket-protocol")
            for t in v.split(",")
            if t.strip()
        ]
        scope["extensions"]["websocket.http.response"] = {}
        cycle = WsCycle()
        tg = self._task_group(ctx)
        if tg is None:
            raise RuntimeError("AsgiService needs a server (or `async with`) for WebSockets")
        self._active += 1
        tg.start_soon(self._run_ws, scope, cycle)
        try:
            await cycle.decided.wait()
            if cycle.accepted:
                up = WebSocketUpgrade(
                    cycle.handler,
                    subprotocols=(cycle.subprotocol,) if cycle.subprotocol else (),
                    compression=self.ws_compression,
                    config=self.ws_config,
                )
                resp = await up.serve(ctx, req)
                for name, value in cycle.accept_headers:
                    resp.headers.add(name, value)
                return resp
            cycle.abandon()
            if cycle.denied:
                if cycle.denial is not None:
                    status, headers = cycle.denial
                    return Response(status, headers=headers, body=b"".join(cycle.denial_body))
                return Response.error(403)
            if cycle.error is not None:
                raise cycle.error
            _log.error("ASGI app returned without accepting or closing the WebSocket")
            return Response.error(500)
        except BaseException:
            cycle.abandon()
            raise

    async def _run_ws(self, scope: dict[str, Any], cycle: WsCycle) -> None:
        error: BaseException | None = None
        try:
            await self.app(scope, cycle.receive, cycle.send)
        except Exception as e:
            error = e
            if cycle.accepted:
                _log.error("ASGI WebSocket app failed for %s", scope["path"], exc_info=e)
        finally:
            self._done()
            cycle.app_finished(error)

    def __repr__(self) -> str:
        return f"AsgiService({self.app!r}, lifespan={self.lifespan_mode!r})"
