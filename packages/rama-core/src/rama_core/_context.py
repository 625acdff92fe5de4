"""The Context that flows alongside every request.

A Context holds typed extensions (one value per type), shared application
state and an :class:`~rama_core.Executor`. Forking a context is O(1):
the child sees its parent's extensions through a parent link and writes only
to its own map, so per-request contexts never copy per-connection facts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from ._errors import MissingExtension
from ._executor import Executor

__all__ = ["Context"]

T = TypeVar("T")
D = TypeVar("D")

_MISSING: Any = object()


class Context:
    """Typed extensions, shared state and an executor for one unit of work."""

    __slots__ = ("_extensions", "_parent", "executor", "state")

    def __init__(
        self,
        state: Any = None,
        *,
        executor: Executor | None = None,
    ) -> None:
        self._extensions: dict[type, object] = {}
        self._parent: Context | None = None
        self.state: Any = state
        self.executor: Executor = executor if executor is not None else Executor()

    # -- forking -----------------------------------------------------------------
    def fork(self) -> Context:
        """Return a child context that reads through to this one.

        Inserts into the child never affect the parent; the state and executor
        are shared.
        """
        child = Context.__new__(Context)
        child._extensions = {}
        child._parent = self
        child.state = self.state
        child.executor = self.executor
        return child

    @property
    def parent(self) -> Context | None:
        """The context this one was forked from, if any."""
        return self._parent

    # -- extensions --------------------------------------------------------------
    def insert(self, value: T, *, key: type[T] | None = None) -> T | None:
        """Store ``value`` under ``key`` (default: its own type).

        Returns the value this context previously held for the key, if any
        (a parent's value is shadowed, not replaced).
        """
        k = type(value) if key is None else key
        previous = self._extensions.get(k, _MISSING)
        self._extensions[k] = value
        return None if previous is _MISSING else previous  # type: ignore[return-value]

    @overload
    def get(self, key: type[T]) -> T | None: ...
    @overload
    def get(self, key: type[T], default: D) -> T | D: ...
    def get(self, key: type[T], default: object = None) -> object:
        """Return the extension stored under ``key``, searching parents, else ``default``."""
        ctx: Context | None = self
        while ctx is not None:
            value = ctx._extensions.get(key, _MISSING)
            if value is not _MISSING:
                return value
            ctx = ctx._parent
        return default

    def require(self, key: type[T]) -> T:
        """Return the extension stored under ``key`` or raise :class:`MissingExtension`."""
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise MissingExtension(key)
        return value

    def get_or_insert_with(self, key: type[T], factory: Callable[[], T]) -> T:
        """Return the extension for ``key``; create and insert it here if absent."""
        value = self.get(key, _MISSING)
        if value is _MISSING:
            value = factory()
            self._extensions[key] = value
        return value

    def contains(self, key: type) -> bool:
        """Whether an extension for ``key`` is visible from this context."""
        return self.get(key, _MISSING) is not _MISSING

    __contains__ = contains

    def remove(self, key: type[T]) -> T | None:
        """Remove and return this context's own value for ``key``.

        A value inherited from a parent stays visible: forks never mutate
        their ancestors.
        """
        return self._extensions.pop(key, None)  # type: ignore[return-value]

    def extensions(self) -> dict[type, object]:
        """A merged snapshot of every visible extension (child values win)."""
        chain: list[Context] = []
        ctx: Context | None = self
        while ctx is not None:
            chain.append(ctx)
            ctx = ctx._parent
        merged: dict[type, object] = {}
        for c in reversed(chain):
            merged.update(c._extensions)
        return merged

    def __repr__(self) -> str:
        names = ", ".join(sorted(k.__qualname__ for k in self.extensions()))
        return f"Context(extensions=[{names}])"
