"""Typed errors with context messages and cause chains.

Every rama package derives its errors from :class:`RamaError`. Context is
added while an error propagates (``with error_context("connecting to x")``)
instead of wrapping it, so callers can still catch the original type.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = [
    "MissingExtension",
    "Overloaded",
    "RamaError",
    "ServiceTimeout",
    "error_chain",
    "error_context",
    "format_error_chain",
]


class RamaError(Exception):
    """Base class of all rama errors.

    Carries a list of context messages, outermost last, that
    :func:`error_context` appends while the error travels up the stack.
    """

    def __init__(self, message: str = "", *, context: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.contexts: list[str] = list(context or [])

    def add_context(self, message: str) -> RamaError:
        """Record where this error passed through; returns ``self`` for chaining."""
        self.contexts.append(message)
        return self

    def __str__(self) -> str:
        base = self.message or self.__class__.__name__
        if not self.contexts:
            return base
        return ": ".join([*reversed(self.contexts), base])


class ServiceTimeout(RamaError, TimeoutError):
    """A service did not answer within its deadline."""

    def __init__(self, seconds: float, *, what: str = "service") -> None:
        super().__init__(f"{what} timed out after {seconds:g}s")
        self.seconds = seconds


class Overloaded(RamaError):
    """A service rejected work because a limit was reached.

    ``retry_after`` (seconds) is a hint for the caller; HTTP servers send it as
    ``Retry-After`` on the 503 they answer with.
    """

    def __init__(self, message: str = "", *, retry_after: float | None = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MissingExtension(RamaError, LookupError):
    """A required extension was not present in the Context."""

    def __init__(self, key: type) -> None:
        super().__init__(f"missing extension {key.__module__}.{key.__qualname__}")
        self.key = key


@contextlib.contextmanager
def error_context(message: str) -> Iterator[None]:
    """Attach ``message`` to any exception raised inside the block.

    :class:`RamaError` instances record it in ``contexts``; other exceptions
    get it as a PEP 678 note, so their type (``OSError``...) is preserved.
    Cancellation is never annotated.
    """
    try:
        yield
    except RamaError as exc:
        exc.add_context(message)
        raise
    except Exception as exc:
        exc.add_note(message)
        raise


def error_chain(exc: BaseException) -> Iterator[BaseException]:
    """Yield ``exc`` and then every explicit or implicit cause, outermost first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )


def format_error_chain(exc: BaseException) -> str:
    """Render an error and its causes as ``outer: ... : root`` on one line."""
    parts: list[str] = []
    for err in error_chain(exc):
        text = str(err) or type(err).__name__
        notes = getattr(err, "__notes__", None)
        if notes:
            text = ": ".join([*reversed(notes), text])
        parts.append(text)
    return " <- ".join(parts)
