"""GREASE values (RFC 8701): reserved code points clients send to keep servers tolerant.

Fingerprints drop them because browsers pick them at random per connection.
"""

from __future__ import annotations

__all__ = ["GREASE_VALUES", "is_grease"]

GREASE_VALUES: frozenset[int] = frozenset(0x0A0A + 0x1010 * i for i in range(16))
"""The sixteen 16-bit GREASE values 0x0a0a, 0x1a1a ... 0xfafa (cipher suites, extensions,
groups, signature algorithms, versions)."""


def is_grease(value: int) -> bool:
    """Whether a 16-bit code point is a GREASE value."""
    return value in GREASE_VALUES
