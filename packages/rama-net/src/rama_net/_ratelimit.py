"""A log line that repeats under load (fd exhaustion, say) at most once per interval."""

from __future__ import annotations

import logging
from typing import Any

import anyio

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    """Logs a recurring event once per ``interval`` seconds, with a count of the rest.

    The first occurrence is logged at once; later ones within the interval are
    counted, and the next line that gets through says how many were left out.
    Times come from :func:`anyio.current_time` (call it from async code).
    """

    __slots__ = ("_logger", "_next", "_suppressed", "interval")

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self._logger = logger
        self.interval = interval
        self._next = -float("inf")
        self._suppressed = 0

    @property
    def suppressed(self) -> int:
        """Occurrences counted but not logged since the last line."""
        return self._suppressed

    def log(self, level: int, msg: str, *args: Any) -> bool:
        """Log ``msg % args`` unless one was logged less than ``interval`` ago; True if logged."""
        now = anyio.current_time()
        if now < self._next:
            self._suppressed += 1
            return False
        self._next = now + self.interval
        if self._suppressed:
            msg += " (%d more since the last report)"
            args = (*args, self._suppressed)
            self._suppressed = 0
        self._logger.log(level, msg, *args)
        return True
