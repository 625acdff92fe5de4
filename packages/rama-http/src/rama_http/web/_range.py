"""``Range: bytes=...`` (RFC 9110 §14) and conditional-request validators, over text.

Pure functions: :func:`parse_range` turns the header and the representation's
size into byte intervals (or says the range cannot be satisfied or must be
ignored); :func:`etag_matches` and :func:`http_date` handle validators.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass

__all__ = [
    "MAX_RANGES",
    "ByteRange",
    "Unsatisfiable",
    "etag_matches",
    "http_date",
    "parse_http_date",
    "parse_range",
]

MAX_RANGES = 32
"""More ranges than this in one request are ignored (the whole body is sent)."""


@dataclass(frozen=True, slots=True)
class ByteRange:
    """``first``..``last`` inclusive, as in ``Content-Range: bytes first-last/size``."""

    first: int
    last: int

    @property
    def length(self) -> int:
        """Bytes in the range."""
        return self.last - self.first + 1

    def content_range(self, size: int) -> str:
        """The ``Content-Range`` value."""
        return f"bytes {self.first}-{self.last}/{size}"


class Unsatisfiable(ValueError):
    """No range of the header overlaps the representation: answer 416."""


def parse_range(header: str, size: int) -> list[ByteRange] | None:
    """The satisfiable ranges of ``header`` for a body of ``size`` bytes.

    None means "ignore the header and send everything" (not a bytes range,
    malformed, or too many ranges); :class:`Unsatisfiable` means 416.
    """
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    parts = [p.strip() for p in spec.split(",")]
    if not parts or len(parts) > MAX_RANGES:
        return None
    out: list[ByteRange] = []
    for part in parts:
        if not part:
            continue
        first_s, dash, last_s = part.partition("-")
        if not dash:
            return None
        first_s, last_s = first_s.strip(), last_s.strip()
        if not first_s:
            if not last_s.isdigit():
                return None
            suffix = int(last_s)
            if suffix == 0:
                continue
            if size:
                out.append(ByteRange(max(0, size - suffix), size - 1))
            continue
        if not first_s.isdigit() or (last_s and not last_s.isdigit()):
            return None
        first = int(first_s)
        last = int(last_s) if last_s else size - 1
        if last_s and last < first:
            return None
        if first >= size:
            continue
        out.append(ByteRange(first, min(last, size - 1)))
    if not out:
        raise Unsatisfiable(header)
    return out


def http_date(timestamp: float) -> str:
    """An IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``)."""
    return email.utils.formatdate(timestamp, usegmt=True)


def parse_http_date(value: str) -> float | None:
    """Seconds since the epoch, or None when ``value`` is not a date."""
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if dt.tzinfo is None:
        return None
    return dt.timestamp()


def etag_matches(header: str, etag: str, *, weak: bool) -> bool:
    """Whether ``If-None-Match``/``If-Match``-style ``header`` lists ``etag``.

    ``weak`` comparison (If-None-Match) ignores ``W/``; strong (If-Range,
    If-Match) needs both to be strong and equal.
    """
    if header.strip() == "*":
        return True
    for candidate in header.split(","):
        c = candidate.strip()
        if not c:
            continue
        if weak:
            if c.removeprefix("W/") == etag.removeprefix("W/"):
                return True
        elif not c.startswith("W/") and not etag.startswith("W/") and c == etag:
            return True
    return False
