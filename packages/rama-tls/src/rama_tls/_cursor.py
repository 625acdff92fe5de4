"""A bounds-checked reader over a byte string, used by the sans-IO parsers.

Every read checks the remaining length first, so a lying length field becomes a
:class:`~rama_tls.MalformedClientHello`, never an IndexError.
"""

from __future__ import annotations

from ._errors import MalformedClientHello

__all__ = ["Cursor"]


class Cursor:
    """Reads big-endian integers and length-prefixed vectors from ``data[start:end]``."""

    __slots__ = ("_data", "_end", "_pos", "_what")

    def __init__(
        self, data: bytes, start: int = 0, end: int | None = None, what: str = "data"
    ) -> None:
        self._data = data
        self._pos = start
        self._end = len(data) if end is None else end
        self._what = what

    @property
    def offset(self) -> int:
        """Absolute position of the next byte to read."""
        return self._pos

    @property
    def remaining(self) -> int:
        """Bytes left before the end of this cursor's window."""
        return self._end - self._pos

    def at_end(self) -> bool:
        """Whether every byte of the window has been read."""
        return self._pos >= self._end

    def _need(self, n: int, field: str) -> int:
        if n > self._end - self._pos:
            raise MalformedClientHello(
                f"{self._what}: {field} needs {n} bytes, only {self._end - self._pos} left",
                offset=self._pos,
            )
        pos = self._pos
        self._pos += n
        return pos

    def u8(self, field: str = "u8") -> int:
        """Read one byte."""
        return self._data[self._need(1, field)]

    def u16(self, field: str = "u16") -> int:
        """Read a big-endian 16-bit integer."""
        p = self._need(2, field)
        return (self._data[p] << 8) | self._data[p + 1]

    def u24(self, field: str = "u24") -> int:
        """Read a big-endian 24-bit integer."""
        p = self._need(3, field)
        return (self._data[p] << 16) | (self._data[p + 1] << 8) | self._data[p + 2]

    def u32(self, field: str = "u32") -> int:
        """Read a big-endian 32-bit integer."""
        p = self._need(4, field)
        return int.from_bytes(self._data[p : p + 4], "big")

    def take(self, n: int, field: str = "bytes") -> bytes:
        """Read ``n`` raw bytes."""
        p = self._need(n, field)
        return self._data[p : p + n]

    def _sub(self, n: int, field: str) -> Cursor:
        p = self._need(n, field)
        return Cursor(self._data, p, p + n, f"{self._what}.{field}")

    def vec8(self, field: str = "vector") -> Cursor:
        """A sub-cursor over a vector with a one-byte length prefix."""
        return self._sub(self.u8(f"{field} length"), field)

    def vec16(self, field: str = "vector") -> Cursor:
        """A sub-cursor over a vector with a two-byte length prefix."""
        return self._sub(self.u16(f"{field} length"), field)

    def opaque8(self, field: str = "opaque") -> bytes:
        """Bytes with a one-byte length prefix."""
        return self.take(self.u8(f"{field} length"), field)

    def opaque16(self, field: str = "opaque") -> bytes:
        """Bytes with a two-byte length prefix."""
        return self.take(self.u16(f"{field} length"), field)

    def u16_list(self, field: str, *, min_len: int = 0) -> tuple[int, ...]:
        """A vector16 of 16-bit values (cipher suites, groups, schemes...)."""
        sub = self.vec16(field)
        if sub.remaining % 2:
            raise MalformedClientHello(f"{self._what}: odd length for {field}", offset=sub.offset)
        if sub.remaining < min_len:
            raise MalformedClientHello(f"{self._what}: {field} is too short", offset=sub.offset)
        return tuple(sub.u16(field) for _ in range(sub.remaining // 2))

    def u8_list(self, field: str, *, min_len: int = 0) -> tuple[int, ...]:
        """A vector8 of 8-bit values (compression methods, point formats, PSK modes)."""
        sub = self.vec8(field)
        if sub.remaining < min_len:
            raise MalformedClientHello(f"{self._what}: {field} is too short", offset=sub.offset)
        return tuple(sub.u8(field) for _ in range(sub.remaining))

    def expect_end(self) -> None:
        """Raise if bytes are left over: trailing garbage is malformed, not ignorable."""
        if self._pos != self._end:
            raise MalformedClientHello(
                f"{self._what}: {self._end - self._pos} unexpected trailing bytes",
                offset=self._pos,
            )
