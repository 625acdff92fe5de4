"""Spawning tasks that are tied to graceful shutdown.

An :class:`Executor` pairs an anyio task group with an optional
:class:`~rama_core.Shutdown`. Tasks spawned through it hold a
shutdown guard, so a graceful shutdown waits for them (up to its grace period)
before cancelling. Errors of spawned tasks are logged, never propagated: one
failed connection must not take a listener down.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ._shutdown import Shutdown

__all__ = ["Executor", "NoTaskGroupError"]

_log = logging.getLogger("rama.core.executor")


class NoTaskGroupError(RuntimeError):
    """Raised when spawning on an executor that has no task group."""


class Executor:
    """Spawns background tasks into a task group, guarded by a shutdown."""

    __slots__ = ("_shutdown", "_task_group")

    def __init__(
        self, task_group: TaskGroup | None = None, shutdown: Shutdown | None = None
    ) -> None:
        self._task_group = task_group
        self._shutdown = shutdown

    @property
    def shutdown(self) -> Shutdown | None:
        """The shutdown this executor's tasks are tied to, if any."""
        return self._shutdown

    def with_task_group(self, task_group: TaskGroup) -> Executor:
        """A new executor spawning into ``task_group``, keeping the same shutdown."""
        return Executor(task_group, self._shutdown)

    @property
    def is_shutting_down(self) -> bool:
        """Whether a graceful shutdown was triggered: stop taking new work."""
        return self._shutdown is not None and self._shutdown.is_triggered

    async def wait_shutdown(self) -> None:
        """Block until a graceful shutdown is triggered (forever without one)."""
        if self._shutdown is None:
            await anyio.sleep_forever()
        else:
            await self._shutdown.wait_triggered()

    def on_shutdown(self, callback: Callable[[], object]) -> AbstractContextManager[object]:
        """While in the block, call ``callback()`` when a graceful shutdown triggers.

        A no-op without a shutdown. See :meth:`Shutdown.on_trigger`.
        """
        if self._shutdown is None:
            return nullcontext()
        return self._shutdown.on_trigger(callback)

    def guard(self, name: str = "task") -> AbstractContextManager[object]:
        """A context manager marking in-flight work the shutdown must wait for."""
        if self._shutdown is None:
            return nullcontext()
        return self._shutdown.guard(name)

    def spawn(
        self,
        fn: Callable[..., Awaitable[Any]],
        *args: Any,
        name: str | None = None,
        guarded: bool = True,
    ) -> None:
        """Start ``fn(*args)`` in the background.

        Guarded tasks delay a graceful shutdown until they finish or its
        grace period ends. Exceptions are logged with the task's name.
        """
        if self._task_group is None:
            raise NoTaskGroupError(
                "this executor has no task group; spawn from inside a server or a "
                "`async with Shutdown()` block, or build Executor(task_group)"
            )
        label: str = name or str(getattr(fn, "__qualname__", None) or repr(fn))
        guard = self.guard(label) if guarded else nullcontext()
        self._task_group.start_soon(_run_logged, guard, fn, args, label, name=label)

    def __repr__(self) -> str:
        return f"Executor(task_group={self._task_group is not None}, shutdown={self._shutdown!r})"


async def _run_logged(
    guard: AbstractContextManager[object],
    fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    label: str,
) -> None:
    with guard:
        try:
            await fn(*args)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception:
            _log.exception("task %s failed", label)
