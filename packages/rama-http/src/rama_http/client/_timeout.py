"""Client timeouts: connect, read, write, pool and total, in seconds (None: no limit)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Timeout", "TimeoutInput"]


@dataclass(frozen=True, slots=True)
class Timeout:
    """Per-phase limits of one request; ``Timeout(5)`` sets connect, read, write and pool."""

    timeout: float | None = None
    connect: float | None = 10.0
    read: float | None = 30.0
    write: float | None = 30.0
    pool: float | None = 10.0
    total: float | None = None

    @classmethod
    def of(cls, value: TimeoutInput) -> Timeout:
        """Coerce a number, None (no limits) or a Timeout."""
        if isinstance(value, Timeout):
            return value
        if value is None:
            return cls(None, None, None, None, None, None)
        v = float(value)
        return cls(v, v, v, v, v, None)


TimeoutInput = Timeout | float | int | None
"""What ``timeout=`` accepts."""
