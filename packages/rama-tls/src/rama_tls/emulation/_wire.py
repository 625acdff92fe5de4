"""Encoding helpers and a bounds-checked reader for the engine's messages.

Every read checks the remaining length, so a lying length field becomes a
:class:`~rama_tls.emulation.TlsDecodeError`, never an IndexError.
"""

from __future__ import annotations

from ._errors import TlsDecodeError

__all__ = ["Reader", "u8", "u16", "u24", "vec8", "vec16", "vec24"]


def u8(v: int) -> bytes:
    """One byte."""
    return bytes((v,))


def u16(v: int) -> bytes:
    """A big-endian 16-bit integer."""
    return v.to_bytes(2, "big")


def u24(v: int) -> bytes:
    """A big-endian 24-bit integer."""
    return v.to_bytes(3, "big")


def vec8(data: bytes) -> bytes:
    """``data`` with a one-byte length prefix."""
    return u8(len(data)) + data


def vec16(data: bytes) -> bytes:
    """``data`` with a two-byte length prefix."""
    return u16(len(data)) + data


def vec24(data: bytes) -> bytes:
    """``data`` with a three-byte length prefix."""
    return u24(len(data)) + data


class Reader:
    """Reads big-endian integers and length-prefixed vectors from ``data``."""

    __slots__ = ("_data", "_end", "_pos", "_what")

    def __init__(self, data: bytes, what: str = "message") -> None:
        self._data = data
        self._pos = 0
        self._end = len(data)
        self._what = what

    def _take(self, n: int) -> int:
        if n > self._end - self._pos:
            raise TlsDecodeError(f"{self._what}: truncated (needs {n} more bytes)")
        p = self._pos
        self._pos += n
        return p

    @property
    def remaining(self) -> int:
        """Bytes left."""
        return self._end - self._pos

    def at_end(self) -> bool:
        """Whether every byte was read."""
        return self._pos >= self._end

    def u8(self) -> int:
        """One byte."""
        return self._data[self._take(1)]

    def u16(self) -> int:
        """A 16-bit integer."""
        p = self._take(2)
        return (self._data[p] << 8) | self._data[p + 1]

    def u24(self) -> int:
        """A 24-bit integer."""
        p = self._take(3)
        return int.from_bytes(self._data[p : p + 3], "big")

    def u32(self) -> int:
        """A 32-bit integer."""
        p = self._take(4)
        return int.from_bytes(self._data[p : p + 4], "big")

    def take(self, n: int) -> bytes:
        """``n`` raw bytes."""
        p = self._take(n)
        return self._data[p : p + n]

    def rest(self) -> bytes:
        """All remaining bytes."""
        return self.take(self.remaining)

    def vec8(self) -> bytes:
        """Bytes with a one-byte length prefix."""
        return self.take(self.u8())

    def vec16(self) -> bytes:
        """Bytes with a two-byte length prefix."""
        return self.take(self.u16())

    def vec24(self) -> bytes:
        """Bytes with a three-byte length prefix."""
        return self.take(self.u24())

    def sub16(self, what: str) -> Reader:
        """A reader over a vector with a two-byte length prefix."""
        return Reader(self.vec16(), f"{self._what}.{what}")

    def expect_end(self) -> None:
        """Trailing bytes are a decode error."""
        if self._pos != self._end:
            raise TlsDecodeError(f"{self._what}: {self._end - self._pos} trailing bytes")

    def extensions(self) -> dict[int, bytes]:
        """An extensions block (vector16 of type + vector16 data); duplicates rejected.

        An absent block (the reader is at its end) is an empty dict.
        """
        if self.at_end():
            return {}
        return self.sub16("extensions").extension_entries()

    def extension_entries(self) -> dict[int, bytes]:
        """The rest of the reader as extension entries (type + vector16 data)."""
        out: dict[int, bytes] = {}
        while not self.at_end():
            ext_type = self.u16()
            data = self.vec16()
            if ext_type in out:
                raise TlsDecodeError(f"{self._what}: duplicate extension 0x{ext_type:04x}")
            out[ext_type] = data
        return out
