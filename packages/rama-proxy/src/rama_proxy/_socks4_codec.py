"""Sans-IO SOCKS4 and SOCKS4a: the request and its 8-byte reply.

SOCKS4 has one request (``VN=4 CD DSTPORT DSTIP USERID NUL``) and one reply
(``VN=0 CD DSTPORT DSTIP``). SOCKS4a sends ``DSTIP = 0.0.0.x`` (x != 0) and
the domain after the user id (``... USERID NUL DOMAIN NUL``) for the proxy to
resolve. The user id and the domain are bounded (a client that never sends
the NUL is refused, not buffered forever).
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass

from ._socks5_codec import (
    UNSPECIFIED_IPV4,
    SocksCommandError,
    SocksFormatError,
    SocksTruncatedError,
    SocksVersionError,
)

__all__ = [
    "Socks4Command",
    "Socks4Reply",
    "Socks4ReplyCode",
    "Socks4Request",
    "parse_socks4_reply",
    "parse_socks4_request",
]

SOCKS4_VERSION = 0x04
MAX_USERID = 255
MAX_DOMAIN = 255


class Socks4Command(enum.IntEnum):
    """SOCKS4 CD values in a request."""

    CONNECT = 0x01
    BIND = 0x02


class Socks4ReplyCode(enum.IntEnum):
    """SOCKS4 CD values in a reply."""

    GRANTED = 90
    REJECTED = 91
    NO_IDENTD = 92
    IDENTD_MISMATCH = 93


def _rejected() -> bytes:
    return Socks4Reply(Socks4ReplyCode.REJECTED).encode()


@dataclass(frozen=True, slots=True)
class Socks4Request:
    """A SOCKS4 request; ``domain`` set makes it SOCKS4a."""

    command: Socks4Command
    port: int
    ip: ipaddress.IPv4Address
    userid: bytes = b""
    domain: str | None = None

    @property
    def host(self) -> ipaddress.IPv4Address | str:
        """The domain (4a) or the IP."""
        return self.domain if self.domain is not None else self.ip

    def encode(self) -> bytes:
        """Wire form (SOCKS4a when ``domain`` is set: DSTIP becomes 0.0.0.1)."""
        if b"\x00" in self.userid or len(self.userid) > MAX_USERID:
            raise ValueError("SOCKS4 user id has no NUL and is at most 255 bytes")
        ip = self.ip
        tail = b""
        if self.domain is not None:
            name = self.domain.encode("idna") if not self.domain.isascii() else self.domain.encode()
            if not 1 <= len(name) <= MAX_DOMAIN or b"\x00" in name:
                raise ValueError("SOCKS4a domain is 1..255 bytes without NUL")
            ip = ipaddress.IPv4Address(1)
            tail = name + b"\x00"
        return (
            struct.pack("!BBH", SOCKS4_VERSION, self.command, self.port)
            + ip.packed
            + self.userid
            + b"\x00"
            + tail
        )


@dataclass(frozen=True, slots=True)
class Socks4Reply:
    """The 8-byte SOCKS4 reply (VN is 0)."""

    code: int
    port: int = 0
    ip: ipaddress.IPv4Address = UNSPECIFIED_IPV4

    @property
    def ok(self) -> bool:
        """Whether the request was granted."""
        return self.code == Socks4ReplyCode.GRANTED

    def encode(self) -> bytes:
        """Wire form."""
        return struct.pack("!BBH", 0, self.code, self.port) + self.ip.packed


def parse_socks4_request(
    buf: bytes | bytearray, *, eof: bool = False
) -> tuple[Socks4Request, int] | None:
    """The request at the start of ``buf`` and its length; None when incomplete.

    With ``eof`` an incomplete request raises :class:`SocksTruncatedError`.
    """
    parsed = _parse_request(buf)
    if parsed is None and eof:
        raise SocksTruncatedError("client closed during its SOCKS4 request", response=None)
    return parsed


def _parse_request(buf: bytes | bytearray) -> tuple[Socks4Request, int] | None:
    if not buf:
        return None
    if buf[0] != SOCKS4_VERSION:
        raise SocksVersionError(f"SOCKS version 0x{buf[0]:02x}, expected 4", reply=91)
    if len(buf) < 2:
        return None
    if buf[1] not in (1, 2):
        raise SocksCommandError(
            f"unknown SOCKS4 command 0x{buf[1]:02x}", reply=91, response=_rejected()
        )
    if len(buf) < 8:
        return None
    cmd, port = buf[1], struct.unpack_from("!H", buf, 2)[0]
    ip = ipaddress.IPv4Address(bytes(buf[4:8]))
    nul = buf.find(b"\x00", 8, 8 + MAX_USERID + 1)
    if nul < 0:
        if len(buf) > 8 + MAX_USERID:
            raise SocksFormatError("SOCKS4 user id too long", reply=91, response=_rejected())
        return None
    userid = bytes(buf[8:nul])
    end = nul + 1
    domain: str | None = None
    packed = ip.packed
    if packed[:3] == b"\x00\x00\x00" and packed[3] != 0:  # SOCKS4a
        dnul = buf.find(b"\x00", end, end + MAX_DOMAIN + 1)
        if dnul < 0:
            if len(buf) > end + MAX_DOMAIN:
                raise SocksFormatError("SOCKS4a domain too long", reply=91, response=_rejected())
            return None
        raw = bytes(buf[end:dnul])
        if not raw:
            raise SocksFormatError("SOCKS4a empty domain", reply=91, response=_rejected())
        try:
            domain = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SocksFormatError(
                "SOCKS4a domain is not UTF-8", reply=91, response=_rejected()
            ) from None
        end = dnul + 1
    return Socks4Request(Socks4Command(cmd), port, ip, userid, domain), end


def parse_socks4_reply(buf: bytes | bytearray) -> tuple[Socks4Reply, int] | None:
    """The 8-byte reply; None when incomplete."""
    if not buf:
        return None
    if buf[0] != 0:
        raise SocksVersionError(f"SOCKS4 reply version 0x{buf[0]:02x}, expected 0")
    if len(buf) < 8:
        return None
    _, code, port = struct.unpack_from("!BBH", buf, 0)
    return Socks4Reply(code, port, ipaddress.IPv4Address(bytes(buf[4:8]))), 8
