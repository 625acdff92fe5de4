"""Handle errors at the edge of a stack: consume them or log them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from .._context import Context
from .._errors import format_error_chain
from .._service import Service

__all__ = ["ConsumeError", "ConsumeErrorLayer", "LogError", "LogErrorLayer"]

In = TypeVar("In")
Out = TypeVar("Out")
F = TypeVar("F")

_log = logging.getLogger("rama.core.error")


class ConsumeError(Generic[In, Out]):
    """Turns any ``Exception`` of the inner service into a fallback response.

    The error is logged (at ``level``) with its cause chain, then
    ``fallback(ctx, exc)`` produces the response.
    """

    __slots__ = ("fallback", "inner", "level", "logger")

    def __init__(
        self,
        inner: Service[In, Out],
        fallback: Callable[[Context, Exception], Out],
        level: int = logging.DEBUG,
        logger: logging.Logger = _log,
    ) -> None:
        self.inner = inner
        self.fallback = fallback
        self.level = level
        self.logger = logger

    async def serve(self, ctx: Context, req: In) -> Out:
        """Serve; on error, log and return the fallback."""
        try:
            return await self.inner.serve(ctx, req)
        except Exception as exc:
            self.logger.log(self.level, "service error consumed: %s", format_error_chain(exc))
            return self.fallback(ctx, exc)


class ConsumeErrorLayer(Generic[F]):
    """Layer producing :class:`ConsumeError`.

    Wrapping a ``Service[In, Out]`` gives a ``ConsumeError[In, Out | F]``,
    where ``F`` is what ``fallback`` returns (just ``Out`` when they agree).
    """

    __slots__ = ("fallback", "level", "logger")

    def __init__(
        self,
        fallback: Callable[[Context, Exception], F],
        level: int = logging.DEBUG,
        logger: logging.Logger = _log,
    ) -> None:
        self.fallback = fallback
        self.level = level
        self.logger = logger

    def layer(self, inner: Service[In, Out]) -> ConsumeError[In, Out | F]:
        """Wrap ``inner``."""
        return ConsumeError[In, Out | F](inner, self.fallback, self.level, self.logger)


class LogError(Generic[In, Out]):
    """Logs any ``Exception`` of the inner service with its cause chain, then re-raises."""

    __slots__ = ("inner", "level", "logger")

    def __init__(
        self, inner: Service[In, Out], level: int = logging.ERROR, logger: logging.Logger = _log
    ) -> None:
        self.inner = inner
        self.level = level
        self.logger = logger

    async def serve(self, ctx: Context, req: In) -> Out:
        """Serve; log and re-raise errors."""
        try:
            return await self.inner.serve(ctx, req)
        except Exception as exc:
            self.logger.log(self.level, "service error: %s", format_error_chain(exc))
            raise


class LogErrorLayer:
    """Layer producing :class:`LogError`."""

    __slots__ = ("level", "logger")

    def __init__(self, level: int = logging.ERROR, logger: logging.Logger = _log) -> None:
        self.level = level
        self.logger = logger

    def layer(self, inner: Service[In, Out]) -> LogError[In, Out]:
        """Wrap ``inner``."""
        return LogError(inner, self.level, self.logger)
