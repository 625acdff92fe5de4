"""Graceful shutdown: stop new work, drain in-flight work, then cancel.

::

    async with Shutdown(grace=10):
        await serve("127.0.0.1:8080", service)  # joins the shutdown by itself
    # or, for several servers: shutdown.spawn(listener.serve, service)

Leaving the block waits until the shutdown is triggered (SIGINT/SIGTERM or
:meth:`Shutdown.trigger`) or until no guarded work is left. Once triggered,
guarded work gets ``grace`` seconds (counted from the trigger) to finish;
whatever is still running is then cancelled and named in
:attr:`Shutdown.report`. A second signal cancels at once.

Joining without plumbing: ``async with Shutdown()`` sets a context variable
for the code in its block and every task started from it;
:meth:`Shutdown.current` reads it. Servers that are given no ``ctx``
(``rama_net.TcpListener.serve``, ``UdpListener.serve`` and so
``rama_http.server.serve``) take their root Context from it, so they stop
accepting on the trigger and their connections are guarded. An explicit
``ctx=shutdown.context()`` still works and wins.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from itertools import count
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ._context import Context
from ._executor import Executor

__all__ = ["DEFAULT_SIGNALS", "Shutdown", "ShutdownGuard", "ShutdownReport"]

_log = logging.getLogger("rama.core.shutdown")

_current: ContextVar[Shutdown | None] = ContextVar("rama_core._shutdown", default=None)

DEFAULT_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


class ShutdownGuard:
    """A registration of in-flight work; release it (or leave its ``with``) when done."""

    __slots__ = ("_key", "_shutdown", "name")

    def __init__(self, shutdown: Shutdown, key: int, name: str) -> None:
        self._shutdown = shutdown
        self._key: int | None = key
        self.name = name

    @property
    def released(self) -> bool:
        """Whether this guard no longer holds the shutdown."""
        return self._key is None

    def release(self) -> None:
        """Stop holding the shutdown (idempotent)."""
        if self._key is not None:
            key, self._key = self._key, None
            self._shutdown._release(key)

    def __enter__(self) -> ShutdownGuard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


@dataclass(frozen=True)
class ShutdownReport:
    """What happened during a shutdown."""

    reason: str
    """Why the shutdown started: a signal name, ``"trigger"`` or ``"idle"``."""
    drain_seconds: float
    """Time spent waiting for guarded work after the trigger."""
    cancelled: tuple[str, ...] = field(default=())
    """Names of guarded tasks still running when the grace period ended, then cancelled."""
    forced: bool = False
    """Whether a second signal cut the drain short."""

    @property
    def clean(self) -> bool:
        """True when every guarded task finished within the grace period."""
        return not self.cancelled


class Shutdown:
    """Coordinates graceful shutdown of a set of guarded tasks.

    ``grace`` is a duration: seconds guarded work gets after the trigger
    before it is cancelled (None: no limit). It is the overall cap of a
    shutdown; shorter per-server bounds (``TcpServerConfig.drain_timeout``,
    rama-http's ``ServerConfig.shutdown_grace``) apply within it, and the
    smallest bound that applies wins. ``signals`` trigger the shutdown
    (None or ``()``: only :meth:`trigger`); they are watched only in the main
    thread.

    Inside ``async with Shutdown()``, :meth:`Shutdown.current` returns it:
    servers started in the block without a ``ctx`` join it on their own.
    """

    def __init__(
        self,
        *,
        grace: float | None = 30.0,
        signals: tuple[signal.Signals, ...] | None = DEFAULT_SIGNALS,
    ) -> None:
        self.grace = grace
        self._triggered_at: float | None = None
        self._token: Token[Shutdown | None] | None = None
        self._signals = signals or ()
        self._reason: str | None = None
        self._trigger_event: anyio.Event | None = None
        self._wakeup: anyio.Event | None = None
        self._active: dict[int, str] = {}
        self._ids = count()
        self._task_group: TaskGroup | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self.report: ShutdownReport | None = None
        self._drain_scope: anyio.CancelScope | None = None
        self._forced = False
        self._callbacks: dict[int, Callable[[], object]] = {}

    @staticmethod
    def current() -> Shutdown | None:
        """The innermost running ``async with Shutdown()`` around the caller, or None."""
        return _current.get()

    @property
    def grace_deadline(self) -> float:
        """When guarded work is cancelled, on anyio's clock (:func:`anyio.current_time`).

        ``math.inf`` until the shutdown is triggered, or with ``grace=None``.
        Servers bound their own drain by it.
        """
        if self._triggered_at is None or self.grace is None:
            return math.inf
        return self._triggered_at + self.grace

    # -- triggering -----------------------------------------------------------------
    @property
    def is_triggered(self) -> bool:
        """Whether shutdown has started: stop accepting new work."""
        return self._reason is not None

    @property
    def reason(self) -> str | None:
        """Why shutdown was triggered, or None."""
        return self._reason

    @property
    def outcome(self) -> str | None:
        """How the shutdown ended: ``"forced"`` when a second signal cut it
        short (then :attr:`report` may be None), else :attr:`reason`."""
        return "forced" if self._forced else self._reason

    def trigger(self, reason: str = "trigger") -> None:
        """Start the graceful shutdown (idempotent)."""
        if self._reason is not None:
            return
        self._reason = reason
        self._mark_triggered()
        _log.info("graceful shutdown triggered (%s)", reason)
        if self._trigger_event is not None:
            self._trigger_event.set()
        callbacks, self._callbacks = self._callbacks, {}
        for callback in callbacks.values():
            try:
                callback()
            except Exception:
                _log.exception("shutdown callback %r failed", callback)
        self._wake()

    @contextlib.contextmanager
    def on_trigger(self, callback: Callable[[], object]) -> Iterator[None]:
        """Call ``callback()`` (synchronously) when the shutdown triggers, while in the block.

        Cheaper than a task waiting on :meth:`wait_triggered`: a connection
        registers one for its lifetime at the cost of a dict insert. Called at
        once if the shutdown has already triggered.
        """
        if self._reason is not None:
            callback()
            yield
            return
        key = next(self._ids)
        self._callbacks[key] = callback
        try:
            yield
        finally:
            self._callbacks.pop(key, None)

    def _mark_triggered(self) -> None:
        if self._triggered_at is None:
            try:
                self._triggered_at = anyio.current_time()
            except Exception:  # no event loop (triggered before the block): from entry
                self._triggered_at = None

    async def wait_triggered(self) -> None:
        """Block until the shutdown is triggered."""
        if self._reason is not None:
            return
        if self._trigger_event is None:
            self._trigger_event = anyio.Event()
        await self._trigger_event.wait()

    # -- guards -----------------------------------------------------------------------
    def guard(self, name: str = "task") -> ShutdownGuard:
        """Mark work as in flight from now on; shutdown waits until it is released.

        Registration happens at once (not on ``__enter__``), so a task that is
        spawned but not yet started already counts as in flight.
        """
        key = next(self._ids)
        self._active[key] = name
        return ShutdownGuard(self, key, name)

    def _release(self, key: int) -> None:
        del self._active[key]
        self._wake()

    @property
    def in_flight(self) -> tuple[str, ...]:
        """Names of guarded work currently running."""
        return tuple(self._active.values())

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def _wait_until(self, done: Callable[[], bool]) -> None:
        while not done():
            self._wakeup = anyio.Event()
            await self._wakeup.wait()

    # -- tasks ------------------------------------------------------------------------
    @property
    def executor(self) -> Executor:
        """An executor spawning guarded tasks into this shutdown's task group."""
        if self._task_group is None:
            raise RuntimeError("Shutdown is not running; use `async with Shutdown()`")
        return Executor(self._task_group, self)

    def context(self, state: Any = None) -> Context:
        """A fresh root Context whose executor is tied to this shutdown."""
        return Context(state, executor=self.executor)

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any, name: str | None = None) -> None:
        """Run a main task (a server, say) under a guard.

        Unlike :meth:`Executor.spawn`, its exceptions propagate out of the
        ``async with`` block: a server that cannot run should stop the program.
        """
        if self._task_group is None:
            raise RuntimeError("Shutdown is not running; use `async with Shutdown()`")
        label: str = name or str(getattr(fn, "__qualname__", None) or repr(fn))

        guard = self.guard(label)

        async def run() -> None:
            with guard:
                await fn(*args)

        self._task_group.start_soon(run, name=label)

    # -- lifecycle --------------------------------------------------------------------
    async def __aenter__(self) -> Shutdown:
        self._trigger_event = anyio.Event()
        if self._reason is not None:
            self._mark_triggered()
            self._trigger_event.set()
        self._token = _current.set(self)
        self._stack = contextlib.AsyncExitStack()
        tg = await self._stack.enter_async_context(anyio.create_task_group())
        self._task_group = tg
        if self._signals and threading.current_thread() is threading.main_thread():
            await tg.start(self._watch_signals)
        return self

    async def _watch_signals(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        with anyio.open_signal_receiver(*self._signals) as received:
            task_status.started()
            async for signum in received:
                if self._reason is None:
                    self.trigger(signal.Signals(signum).name)
                else:
                    _log.warning("second %s: cancelling now", signal.Signals(signum).name)
                    self.grace = 0
                    self._forced = True
                    self._wake()
                    if self._drain_scope is not None:
                        # draining: end the drain now; the report names what is cut
                        self._drain_scope.cancel()
                    elif self._task_group is not None:
                        self._task_group.cancel_scope.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._stack is not None
        assert self._task_group is not None
        try:
            return await self._exit(exc_type, exc, tb)
        finally:
            self._reset_current()

    def _reset_current(self) -> None:
        token, self._token = self._token, None
        if token is None:
            return
        try:
            _current.reset(token)
        except ValueError:  # exited in another context than entered: clear ours only
            if _current.get() is self:
                _current.set(token.old_value if token.old_value is not Token.MISSING else None)

    async def _exit(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._stack is not None
        assert self._task_group is not None
        tg, stack = self._task_group, self._stack
        if exc is None:
            try:
                await self._drain()
            except BaseException as err:
                tg.cancel_scope.cancel()
                self._task_group = self._stack = None
                if await stack.__aexit__(type(err), err, err.__traceback__):
                    return None
                raise
        else:
            self.trigger("error")
        tg.cancel_scope.cancel()
        self._task_group = self._stack = None
        try:
            return await stack.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # The task group wraps the body's own error; hand it back unwrapped
            # when nothing else failed, as a plain `async with` would.
            if exc is not None and group.exceptions == (exc,):
                raise exc from exc.__cause__
            raise

    async def _drain(self) -> None:
        await self._wait_until(lambda: self.is_triggered or not self._active)
        if self._reason is None:
            self._reason = "idle"
        self._mark_triggered()
        if self._trigger_event is not None:
            self._trigger_event.set()
        started = anyio.current_time()
        # grace counts from the trigger: time the body spent draining (a server
        # awaited in the block) is part of it
        with anyio.CancelScope(deadline=self.grace_deadline) as scope:
            self._drain_scope = scope
            await self._wait_until(lambda: not self._active)
        self._drain_scope = None
        self.report = ShutdownReport(
            reason=self._reason,
            drain_seconds=anyio.current_time() - started,
            cancelled=tuple(self._active.values()),
            forced=self._forced,
        )
        if self.report.cancelled:
            _log.warning(
                "shutdown grace period ended; cancelling %s", ", ".join(self.report.cancelled)
            )
