"""HAProxy PROXY protocol v1 and v2: a sans-IO parser and encoder.

The PROXY protocol (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt)
lets a load balancer tell the server behind it who the real client is: a
header sent once, before any other byte of the connection.

- **v1** is one text line: ``PROXY TCP4 1.2.3.4 5.6.7.8 1234 80\\r\\n``
  (``TCP4``, ``TCP6`` or ``UNKNOWN``), at most 107 bytes.
- **v2** is binary: a 12-byte signature, version/command (``LOCAL`` or
  ``PROXY``), family (``AF_INET``, ``AF_INET6``, ``AF_UNIX``, ``UNSPEC``) and
  transport (``STREAM``, ``DGRAM``), a length, the addresses, then TLVs (ALPN,
  authority, CRC32C, unique id, SSL with sub-TLVs, network namespace, NOOP and
  any other kind, kept raw).

Parsing is incremental: :func:`parse_proxy_header` takes the bytes received so
far and answers :class:`NeedMoreBytes` until the header is complete, so the I/O
layer reads no more than it must and fails as early as the bytes allow. Errors
are typed (:class:`BadSignature`, :class:`InvalidHeader`,
:class:`HeaderTooLarge`, :class:`TlvOverrun`, :class:`ChecksumMismatch`), all
:class:`ProxyProtocolError`. The encoder builds v1 lines and v2 headers with
TLVs and an optional CRC32C (computed here, in pure Python, by table).
"""

from __future__ import annotations

import enum
import ipaddress
import socket
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from rama_core import RamaError
from rama_net import IpAddress, SocketAddress

__all__ = [
    "V1_MAX_LENGTH",
    "V2_SIGNATURE",
    "AddressFamily",
    "BadSignature",
    "ChecksumMismatch",
    "HeaderTooLarge",
    "InvalidHeader",
    "NeedMoreBytes",
    "ProxyCommand",
    "ProxyHeaderDecoder",
    "ProxyProtocolError",
    "ProxyProtocolHeader",
    "SslInfo",
    "Tlv",
    "TlvOverrun",
    "TlvType",
    "TransportProtocol",
    "UnixAddress",
    "crc32c",
    "detect_proxy_header",
    "encode_v1",
    "encode_v2",
    "parse_proxy_header",
]

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
"""The 12 bytes every v2 header starts with."""
V1_PREFIX = b"PROXY "
V1_MAX_LENGTH = 107
"""The longest v1 line, CRLF included (``PROXY UNKNOWN`` with two full IPv6 addresses)."""
V2_HEADER_LENGTH = 16
V2_MAX_LENGTH = V2_HEADER_LENGTH + 0xFFFF
DEFAULT_MAX_HEADER_SIZE = 4096

_UNIX_PATH_LENGTH = 108


# -- errors --------------------------------------------------------------------------------------
class ProxyProtocolError(RamaError):
    """A PROXY protocol header is malformed or refused."""


class BadSignature(ProxyProtocolError):
    """The bytes are neither a v1 ``PROXY `` line nor a v2 signature."""


class InvalidHeader(ProxyProtocolError):
    """A field of the header is malformed (version, command, family, address, port...)."""


class HeaderTooLarge(ProxyProtocolError):
    """The header is longer than allowed (107 bytes for v1, the configured bound for v2)."""


class TlvOverrun(InvalidHeader):
    """A TLV (or an SSL sub-TLV) claims more bytes than its enclosing block holds."""


class ChecksumMismatch(InvalidHeader):
    """The CRC32C TLV does not match the header."""


# -- CRC32C (Castagnoli, reflected polynomial 0x82F63B78) -----------------------------------------
def _make_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC_TABLE = _make_table()


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC32C (Castagnoli, as in iSCSI and PROXY v2) of ``data``; ``crc`` continues one."""
    table = _CRC_TABLE
    c = crc ^ 0xFFFFFFFF
    for b in bytes(data):
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


# -- enums ---------------------------------------------------------------------------------------
class ProxyCommand(enum.IntEnum):
    """v2 command: LOCAL (health check from the proxy itself) or PROXY (relayed client)."""

    LOCAL = 0x0
    PROXY = 0x1


class AddressFamily(enum.IntEnum):
    """v2 address family (v1 ``TCP4``/``TCP6``/``UNKNOWN`` map to INET/INET6/UNSPEC)."""

    UNSPEC = 0x0
    INET = 0x1
    INET6 = 0x2
    UNIX = 0x3


class TransportProtocol(enum.IntEnum):
    """v2 transport protocol (v1 is always STREAM, or UNSPEC for ``UNKNOWN``)."""

    UNSPEC = 0x0
    STREAM = 0x1
    DGRAM = 0x2


class TlvType(enum.IntEnum):
    """Registered v2 TLV kinds (any other kind is kept as a raw :class:`Tlv`)."""

    ALPN = 0x01
    AUTHORITY = 0x02
    CRC32C = 0x03
    NOOP = 0x04
    UNIQUE_ID = 0x05
    SSL = 0x20
    SSL_VERSION = 0x21
    SSL_CN = 0x22
    SSL_CIPHER = 0x23
    SSL_SIG_ALG = 0x24
    SSL_KEY_ALG = 0x25
    NETNS = 0x30


_COMMANDS = tuple(ProxyCommand)
_FAMILIES = tuple(AddressFamily)
_PROTOCOLS = tuple(TransportProtocol)
_ADDRESS_LENGTH = {
    AddressFamily.UNSPEC: 0,
    AddressFamily.INET: 12,
    AddressFamily.INET6: 36,
    AddressFamily.UNIX: 2 * _UNIX_PATH_LENGTH,
}


# -- values --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class UnixAddress:
    """An AF_UNIX address of a v2 header: the socket path (at most 108 bytes, NUL-padded)."""

    path: bytes

    def __post_init__(self) -> None:
        if len(self.path) > _UNIX_PATH_LENGTH:
            raise ValueError(f"unix socket path longer than {_UNIX_PATH_LENGTH} bytes")

    def __str__(self) -> str:
        return "unix:" + self.path.decode("utf-8", "backslashreplace")


Address = SocketAddress | UnixAddress


@dataclass(frozen=True, slots=True)
class Tlv:
    """One type-length-value record of a v2 header (kind 0-255, value up to 65535 bytes)."""

    type: int
    value: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.type <= 0xFF:
            raise ValueError(f"TLV type {self.type} out of range")
        if len(self.value) > 0xFFFF:
            raise ValueError("TLV value longer than 65535 bytes")

    @property
    def kind(self) -> TlvType | None:
        """The registered kind, or None for a custom one."""
        try:
            return TlvType(self.type)
        except ValueError:
            return None

    def encode(self) -> bytes:
        """The wire form: type, 16-bit big-endian length, value."""
        return struct.pack("!BH", self.type, len(self.value)) + self.value

    @classmethod
    def alpn(cls, protocol: bytes | str) -> Tlv:
        """PP2_TYPE_ALPN: the application protocol (``h2``, ``http/1.1``...)."""
        return cls(
            TlvType.ALPN, protocol.encode("ascii") if isinstance(protocol, str) else protocol
        )

    @classmethod
    def authority(cls, host: str) -> Tlv:
        """PP2_TYPE_AUTHORITY: the host name the client asked for (TLS SNI)."""
        return cls(TlvType.AUTHORITY, host.encode("utf-8"))

    @classmethod
    def unique_id(cls, value: bytes | str) -> Tlv:
        """PP2_TYPE_UNIQUE_ID: an opaque connection id (at most 128 bytes)."""
        raw = value.encode("utf-8") if isinstance(value, str) else value
        if len(raw) > 128:
            raise ValueError("PP2_TYPE_UNIQUE_ID is at most 128 bytes")
        return cls(TlvType.UNIQUE_ID, raw)

    @classmethod
    def netns(cls, name: str) -> Tlv:
        """PP2_TYPE_NETNS: the network namespace name."""
        return cls(TlvType.NETNS, name.encode("ascii"))

    @classmethod
    def noop(cls, size: int = 0) -> Tlv:
        """PP2_TYPE_NOOP: padding of ``size`` zero bytes."""
        return cls(TlvType.NOOP, bytes(size))


def _iter_tlvs(data: bytes, start: int, end: int, where: str) -> Iterator[Tlv]:
    offset = start
    while offset < end:
        if end - offset < 3:
            raise TlvOverrun(f"{where}: {end - offset} stray bytes where a TLV header (3) was due")
        kind = data[offset]
        length = (data[offset + 1] << 8) | data[offset + 2]
        offset += 3
        if offset + length > end:
            raise TlvOverrun(
                f"{where}: TLV 0x{kind:02x} claims {length} bytes, {end - offset} remain"
            )
        yield Tlv(kind, data[offset : offset + length])
        offset += length


def _find(tlvs: Iterable[Tlv], kind: int) -> bytes | None:
    for tlv in tlvs:
        if tlv.type == kind:
            return tlv.value
    return None


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class SslInfo:
    """The PP2_TYPE_SSL TLV: how the client reached the proxy over TLS, with sub-TLVs."""

    client: int = 0x01
    """Bit field: 0x01 client connected over TLS, 0x02 sent a certificate on this
    connection, 0x04 on this TLS session (possibly resumed)."""
    verify: int = 0
    """0 when the client certificate was verified (or none was sent), else non-zero."""
    tlvs: tuple[Tlv, ...] = ()
    """Sub-TLVs: version, CN, cipher, signature and key algorithm (and any other kind)."""

    CLIENT_SSL = 0x01
    CLIENT_CERT_CONN = 0x02
    CLIENT_CERT_SESS = 0x04

    @classmethod
    def build(
        cls,
        *,
        version: str | None = None,
        cn: str | None = None,
        cipher: str | None = None,
        sig_alg: str | None = None,
        key_alg: str | None = None,
        client: int = 0x01,
        verify: int = 0,
        extra: Sequence[Tlv] = (),
    ) -> SslInfo:
        """An SslInfo from its typed fields (the sub-TLVs are written in this order)."""
        tlvs = [
            Tlv(kind, value.encode("utf-8"))
            for kind, value in (
                (TlvType.SSL_VERSION, version),
                (TlvType.SSL_CN, cn),
                (TlvType.SSL_CIPHER, cipher),
                (TlvType.SSL_SIG_ALG, sig_alg),
                (TlvType.SSL_KEY_ALG, key_alg),
            )
            if value is not None
        ]
        return cls(client, verify, (*tlvs, *extra))

    @classmethod
    def decode(cls, value: bytes) -> SslInfo:
        """Parse a PP2_TYPE_SSL value; :class:`TlvOverrun` on a malformed sub-TLV."""
        if len(value) < 5:
            raise TlvOverrun(f"PP2_TYPE_SSL of {len(value)} bytes, needs at least 5")
        client = value[0]
        verify = int.from_bytes(value[1:5], "big")
        return cls(client, verify, tuple(_iter_tlvs(value, 5, len(value), "PP2_TYPE_SSL")))

    def encode(self) -> bytes:
        """The PP2_TYPE_SSL value (client, verify, sub-TLVs)."""
        return struct.pack("!BI", self.client, self.verify) + b"".join(
            t.encode() for t in self.tlvs
        )

    def to_tlv(self) -> Tlv:
        """This as a PP2_TYPE_SSL TLV."""
        return Tlv(TlvType.SSL, self.encode())

    @property
    def client_ssl(self) -> bool:
        """The client connected over TLS."""
        return bool(self.client & self.CLIENT_SSL)

    @property
    def client_cert_conn(self) -> bool:
        """The client sent a certificate over this connection."""
        return bool(self.client & self.CLIENT_CERT_CONN)

    @property
    def client_cert_sess(self) -> bool:
        """The client sent a certificate on this TLS session (possibly resumed)."""
        return bool(self.client & self.CLIENT_CERT_SESS)

    @property
    def verified(self) -> bool:
        """The client certificate, if any, was verified."""
        return self.verify == 0

    @property
    def version(self) -> str | None:
        """PP2_SUBTYPE_SSL_VERSION, e.g. ``TLSv1.3``."""
        return _text(_find(self.tlvs, TlvType.SSL_VERSION))

    @property
    def cn(self) -> str | None:
        """PP2_SUBTYPE_SSL_CN: the client certificate's Common Name."""
        return _text(_find(self.tlvs, TlvType.SSL_CN))

    @property
    def cipher(self) -> str | None:
        """PP2_SUBTYPE_SSL_CIPHER, e.g. ``TLS_AES_256_GCM_SHA384``."""
        return _text(_find(self.tlvs, TlvType.SSL_CIPHER))

    @property
    def sig_alg(self) -> str | None:
        """PP2_SUBTYPE_SSL_SIG_ALG: the client certificate's signature algorithm."""
        return _text(_find(self.tlvs, TlvType.SSL_SIG_ALG))

    @property
    def key_alg(self) -> str | None:
        """PP2_SUBTYPE_SSL_KEY_ALG: the client certificate's key algorithm."""
        return _text(_find(self.tlvs, TlvType.SSL_KEY_ALG))


@dataclass(frozen=True, slots=True)
class ProxyProtocolHeader:
    """A parsed (or to-be-sent) PROXY protocol header.

    ``source`` is the real client, ``destination`` the address it connected
    to on the proxy; both None for v1 ``UNKNOWN``, v2 ``UNSPEC`` and v2
    ``LOCAL`` (where the connection's own addresses apply). TLVs come in wire
    order, unknown kinds included; the properties decode the registered ones.
    """

    version: int
    command: ProxyCommand = ProxyCommand.PROXY
    family: AddressFamily = AddressFamily.UNSPEC
    protocol: TransportProtocol = TransportProtocol.UNSPEC
    source: Address | None = None
    destination: Address | None = None
    tlvs: tuple[Tlv, ...] = field(default=())

    @property
    def is_local(self) -> bool:
        """A LOCAL command (a health check of the proxy's own): addresses do not apply."""
        return self.command is ProxyCommand.LOCAL

    def tlv(self, kind: int) -> bytes | None:
        """The value of the first TLV of ``kind``, or None."""
        return _find(self.tlvs, kind)

    def tlvs_of(self, kind: int) -> list[bytes]:
        """The values of every TLV of ``kind``, in order."""
        return [t.value for t in self.tlvs if t.type == kind]

    @property
    def alpn(self) -> bytes | None:
        """PP2_TYPE_ALPN: the protocol the client negotiated with the proxy."""
        return self.tlv(TlvType.ALPN)

    @property
    def authority(self) -> str | None:
        """PP2_TYPE_AUTHORITY: the host name the client asked for (TLS SNI)."""
        return _text(self.tlv(TlvType.AUTHORITY))

    @property
    def crc32c(self) -> int | None:
        """PP2_TYPE_CRC32C: the checksum sent (verified by the parser unless told not to)."""
        value = self.tlv(TlvType.CRC32C)
        return None if value is None or len(value) != 4 else int.from_bytes(value, "big")

    @property
    def unique_id(self) -> bytes | None:
        """PP2_TYPE_UNIQUE_ID: the proxy's opaque id of this connection."""
        return self.tlv(TlvType.UNIQUE_ID)

    @property
    def netns(self) -> str | None:
        """PP2_TYPE_NETNS: the network namespace the connection was accepted in."""
        return _text(self.tlv(TlvType.NETNS))

    @property
    def ssl(self) -> SslInfo | None:
        """PP2_TYPE_SSL decoded (the parser has checked it is well formed)."""
        value = self.tlv(TlvType.SSL)
        return None if value is None else SslInfo.decode(value)

    def encode(self, *, crc: bool = False) -> bytes:
        """The wire form (v1 line or v2 header; ``crc`` adds a CRC32C TLV to v2)."""
        if self.version == 1:
            if self.is_local or self.source is None or self.destination is None:
                return encode_v1(None, None)
            if not isinstance(self.source, SocketAddress) or not isinstance(
                self.destination, SocketAddress
            ):
                raise ValueError("v1 carries IP addresses only")
            return encode_v1(self.source, self.destination)
        tlvs = [t for t in self.tlvs if t.type != TlvType.CRC32C] if crc else list(self.tlvs)
        return encode_v2(
            self.source,
            self.destination,
            command=self.command,
            protocol=self.protocol,
            tlvs=tlvs,
            crc=crc,
        )


# -- detection and parsing -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NeedMoreBytes:
    """The header is incomplete: at least ``hint`` more bytes are needed."""

    hint: int = 1


def detect_proxy_header(data: bytes | bytearray) -> bool | None:
    """Whether ``data`` starts a PROXY header: True, False, or None (too few bytes to tell)."""
    n = len(data)
    if n == 0:
        return None
    if data[0] == 0x50:  # "P"
        if n < len(V1_PREFIX):
            return None if V1_PREFIX.startswith(bytes(data)) else False
        return data[:6] == V1_PREFIX
    if data[0] == 0x0D:
        if n < len(V2_SIGNATURE):
            return None if V2_SIGNATURE.startswith(bytes(data)) else False
        return data[:12] == V2_SIGNATURE
    return False


def parse_proxy_header(
    data: bytes | bytearray | memoryview,
    *,
    max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
    verify_checksum: bool = True,
) -> tuple[ProxyProtocolHeader, int] | NeedMoreBytes:
    """Parse a header at the start of ``data``.

    Returns ``(header, consumed)`` (the bytes after ``consumed`` belong to the
    application), or :class:`NeedMoreBytes` when ``data`` is an incomplete
    prefix of a valid header. Raises a :class:`ProxyProtocolError` as soon as
    the bytes cannot become a valid header. ``max_header_size`` bounds v2
    headers (v1 lines are at most 107 bytes whatever it says); with
    ``verify_checksum`` a CRC32C TLV must match.
    """
    buf = data if type(data) is bytes else bytes(data)
    detected = detect_proxy_header(buf)
    if detected is None:
        # at least the shortest header of the version begun ("PROXY UNKNOWN\r\n", or 16)
        shortest = _V1_MIN_LINE[b"UNKNOWN"] if buf[:1] == b"P" else V2_HEADER_LENGTH
        return NeedMoreBytes(shortest - len(buf) if buf else 1)
    if not detected:
        raise BadSignature("not a PROXY protocol header")
    if buf[0] == 0x50:
        return _parse_v1(buf)
    return _parse_v2(buf, max_header_size, verify_checksum)


def _parse_v1(buf: bytes) -> tuple[ProxyProtocolHeader, int] | NeedMoreBytes:
    end = buf.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end < 0:
        lf = buf.find(b"\n", 0, V1_MAX_LENGTH)
        if lf >= 0:
            raise InvalidHeader("v1 line ends without CR")
        if len(buf) >= V1_MAX_LENGTH:
            raise HeaderTooLarge(f"no CRLF within the {V1_MAX_LENGTH} bytes of a v1 line")
        if b"\r" in buf[:-1]:
            raise InvalidHeader("stray CR in a v1 line")
        return NeedMoreBytes(min(_v1_need(buf), V1_MAX_LENGTH - len(buf)))
    line = buf[:end]
    if b"\n" in line or b"\r" in line:
        raise InvalidHeader("stray CR or LF in a v1 line")
    consumed = end + 2
    parts = line.split(b" ")
    proto = parts[1] if len(parts) > 1 else b""
    if proto == b"UNKNOWN":
        # "the receiver must ignore anything presented before the CRLF"
        return ProxyProtocolHeader(version=1), consumed
    if proto not in (b"TCP4", b"TCP6"):
        raise InvalidHeader("v1 protocol must be TCP4, TCP6 or UNKNOWN")
    if len(parts) != 6:
        raise InvalidHeader(f"v1 {proto.decode()} line needs 6 fields, has {len(parts)}")
    family = AddressFamily.INET if proto == b"TCP4" else AddressFamily.INET6
    src_ip = _v1_ip(parts[2], family)
    dst_ip = _v1_ip(parts[3], family)
    src = SocketAddress(src_ip, _v1_port(parts[4]))
    dst = SocketAddress(dst_ip, _v1_port(parts[5]))
    return ProxyProtocolHeader(
        version=1,
        command=ProxyCommand.PROXY,
        family=family,
        protocol=TransportProtocol.STREAM,
        source=src,
        destination=dst,
    ), consumed


_V1_MIN_LINE = {b"UNKNOWN": 15, b"TCP4": 32, b"TCP6": 22}
"""The shortest line of each v1 protocol (``PROXY TCP6 :: :: 0 0\r\n`` ...), CRLF included."""


def _v1_need(buf: bytes) -> int:
    """A lower bound on the bytes an incomplete v1 line still needs, CRLF included.

    Reading no more than this never reads past the line, so the application's
    first bytes stay in the socket (and a zero-copy relay keeps its fast path).
    Fails early on a protocol that is none of the three.
    """
    if buf.endswith(b"\r"):
        return 1
    rest = buf[len(V1_PREFIX) :]
    space = rest.find(b" ")
    proto = rest if space < 0 else rest[:space]
    if space < 0:
        shortest = [n for name, n in _V1_MIN_LINE.items() if name.startswith(proto)]
        if not shortest:
            raise InvalidHeader("v1 protocol must be TCP4, TCP6 or UNKNOWN")
        return max(min(shortest) - len(buf), 2)
    if proto not in _V1_MIN_LINE:
        raise InvalidHeader("v1 protocol must be TCP4, TCP6 or UNKNOWN")
    if proto == b"UNKNOWN":
        return max(_V1_MIN_LINE[proto] - len(buf), 2)
    spaces = buf.count(b" ")  # a full TCP4/TCP6 line has 5
    if spaces > 5:
        raise InvalidHeader(f"v1 {proto.decode()} line with more than 6 fields")
    # each missing separator with at least one character after it, the current
    # field's first character if it has none yet, and the CRLF
    missing = (5 - spaces) * 2 + (1 if buf.endswith(b" ") else 0) + 2
    return max(_V1_MIN_LINE[proto] - len(buf), missing)


def _v1_ip(raw: bytes, family: AddressFamily) -> IpAddress:
    # inet_pton is strict (dotted quad without leading zeros, no IPv6 zone) and
    # several times faster than parsing text with ipaddress
    try:
        text = raw.decode("ascii")
        if family is AddressFamily.INET:
            return ipaddress.IPv4Address(socket.inet_pton(socket.AF_INET, text))
        return ipaddress.IPv6Address(socket.inet_pton(socket.AF_INET6, text))
    except (UnicodeDecodeError, ValueError, OSError):
        raise InvalidHeader(
            f"bad {'IPv4' if family is AddressFamily.INET else 'IPv6'} address in v1 line"
        ) from None


def _v1_port(raw: bytes) -> int:
    if not raw.isdigit() or len(raw) > 5 or (len(raw) > 1 and raw[0] == 0x30):
        raise InvalidHeader("bad port in v1 line")
    port = int(raw)
    if port > 65535:
        raise InvalidHeader("port out of range in v1 line")
    return port


def _parse_v2(
    buf: bytes, max_header_size: int, verify_checksum: bool
) -> tuple[ProxyProtocolHeader, int] | NeedMoreBytes:
    if len(buf) >= 13:
        ver_cmd = buf[12]
        if ver_cmd >> 4 != 2:
            raise InvalidHeader(f"v2 header with version {ver_cmd >> 4}")
        if ver_cmd & 0x0F > 1:
            raise InvalidHeader(f"v2 header with unknown command {ver_cmd & 0x0F}")
    if len(buf) >= 14:
        fam = buf[13]
        if fam >> 4 > 3:
            raise InvalidHeader(f"v2 header with unknown address family {fam >> 4}")
        if fam & 0x0F > 2:
            raise InvalidHeader(f"v2 header with unknown transport protocol {fam & 0x0F}")
    if len(buf) < V2_HEADER_LENGTH:
        return NeedMoreBytes(V2_HEADER_LENGTH - len(buf))
    length = (buf[14] << 8) | buf[15]
    total = V2_HEADER_LENGTH + length
    if total > max_header_size:
        raise HeaderTooLarge(f"v2 header of {total} bytes, the limit is {max_header_size}")
    command = _COMMANDS[buf[12] & 0x0F]
    family = _FAMILIES[buf[13] >> 4]
    protocol = _PROTOCOLS[buf[13] & 0x0F]
    need = _ADDRESS_LENGTH[family]
    if length < need:
        raise InvalidHeader(f"v2 {family.name} block of {length} bytes, needs {need}")
    if len(buf) < total:
        return NeedMoreBytes(total - len(buf))
    header = buf[:total]
    source, destination = _v2_addresses(header, family)
    tlvs = tuple(_iter_tlvs(header, V2_HEADER_LENGTH + need, total, "v2 header"))
    for tlv in tlvs:
        if tlv.type == TlvType.SSL:
            SslInfo.decode(tlv.value)  # a malformed SSL block is a malformed header
    if verify_checksum:
        _verify_crc(header, tlvs, V2_HEADER_LENGTH + need)
    if command is ProxyCommand.LOCAL:
        # the receiver must use the connection's own addresses
        source = destination = None
    return ProxyProtocolHeader(
        version=2,
        command=command,
        family=family,
        protocol=protocol,
        source=source,
        destination=destination,
        tlvs=tlvs,
    ), total


def _v2_addresses(header: bytes, family: AddressFamily) -> tuple[Address | None, Address | None]:
    o = V2_HEADER_LENGTH
    if family is AddressFamily.INET:
        sport, dport = struct.unpack_from("!HH", header, o + 8)
        return (
            SocketAddress(ipaddress.IPv4Address(header[o : o + 4]), sport),
            SocketAddress(ipaddress.IPv4Address(header[o + 4 : o + 8]), dport),
        )
    if family is AddressFamily.INET6:
        sport, dport = struct.unpack_from("!HH", header, o + 32)
        return (
            SocketAddress(ipaddress.IPv6Address(header[o : o + 16]), sport),
            SocketAddress(ipaddress.IPv6Address(header[o + 16 : o + 32]), dport),
        )
    if family is AddressFamily.UNIX:
        n = _UNIX_PATH_LENGTH
        return (
            UnixAddress(header[o : o + n].split(b"\x00", 1)[0]),
            UnixAddress(header[o + n : o + 2 * n].split(b"\x00", 1)[0]),
        )
    return None, None


def _verify_crc(header: bytes, tlvs: Sequence[Tlv], tlv_start: int) -> None:
    offset = tlv_start
    for tlv in tlvs:
        if tlv.type == TlvType.CRC32C:
            if len(tlv.value) != 4:
                raise InvalidHeader(f"PP2_TYPE_CRC32C of {len(tlv.value)} bytes, must be 4")
            sent = int.from_bytes(tlv.value, "big")
            zeroed = header[: offset + 3] + b"\x00\x00\x00\x00" + header[offset + 7 :]
            if crc32c(zeroed) != sent:
                raise ChecksumMismatch("PP2_TYPE_CRC32C does not match the header")
            return
        offset += 3 + len(tlv.value)


class ProxyHeaderDecoder:
    """Feed bytes as they arrive; :attr:`header` is set once one is complete.

    A stateful convenience over :func:`parse_proxy_header`: ``feed`` returns
    the header when complete (None while more bytes are needed) and
    :attr:`remainder` keeps the application bytes that came after it.
    """

    def __init__(
        self, *, max_header_size: int = DEFAULT_MAX_HEADER_SIZE, verify_checksum: bool = True
    ) -> None:
        self.max_header_size = max_header_size
        self.verify_checksum = verify_checksum
        self._buffer = bytearray()
        self.header: ProxyProtocolHeader | None = None
        self.remainder = b""
        self.needed = 1
        """Bytes still needed at least (0 once the header is complete)."""

    def feed(self, data: bytes) -> ProxyProtocolHeader | None:
        """Add received bytes; the header once complete (later bytes go to :attr:`remainder`)."""
        if self.header is not None:
            self.remainder += data
            return self.header
        self._buffer += data
        if len(self._buffer) < self.needed:
            return None
        result = parse_proxy_header(
            self._buffer,
            max_header_size=self.max_header_size,
            verify_checksum=self.verify_checksum,
        )
        if isinstance(result, NeedMoreBytes):
            self.needed = len(self._buffer) + result.hint
            return None
        self.header, consumed = result
        self.remainder = bytes(self._buffer[consumed:])
        self._buffer.clear()
        self.needed = 0
        return self.header


# -- encoding ------------------------------------------------------------------------------------
def _as_ipv6(ip: IpAddress) -> ipaddress.IPv6Address:
    if isinstance(ip, ipaddress.IPv6Address):
        return ip
    return ipaddress.IPv6Address(b"\x00" * 10 + b"\xff\xff" + ip.packed)


def encode_v1(source: SocketAddress | None, destination: SocketAddress | None) -> bytes:
    """A v1 line; ``PROXY UNKNOWN`` when either address is None.

    Mixed families are sent as TCP6 with the IPv4 address mapped (``::ffff:a.b.c.d``).
    """
    if source is None or destination is None:
        return b"PROXY UNKNOWN\r\n"
    src_ip, dst_ip = source.ip, destination.ip
    if isinstance(src_ip, ipaddress.IPv4Address) and isinstance(dst_ip, ipaddress.IPv4Address):
        proto = "TCP4"
    else:
        proto = "TCP6"
        src_ip, dst_ip = _as_ipv6(src_ip), _as_ipv6(dst_ip)
    line = f"PROXY {proto} {src_ip} {dst_ip} {source.port} {destination.port}\r\n"
    return line.encode("ascii")


def encode_v2(
    source: Address | None,
    destination: Address | None,
    *,
    command: ProxyCommand = ProxyCommand.PROXY,
    protocol: TransportProtocol = TransportProtocol.STREAM,
    tlvs: Iterable[Tlv] = (),
    crc: bool = False,
) -> bytes:
    """A v2 header for these addresses and TLVs.

    Both addresses None: family UNSPEC (and protocol UNSPEC). IPv4 with IPv6
    is sent as INET6 with the IPv4 address mapped. With ``crc`` a CRC32C TLV
    is appended and filled in. Raises ValueError when the header would exceed
    the 65535-byte v2 bound.
    """
    if (source is None) != (destination is None):
        raise ValueError("give both addresses or neither")
    if source is None or destination is None:
        family, proto, addresses = AddressFamily.UNSPEC, TransportProtocol.UNSPEC, b""
    elif isinstance(source, UnixAddress) or isinstance(destination, UnixAddress):
        if not (isinstance(source, UnixAddress) and isinstance(destination, UnixAddress)):
            raise ValueError("a unix address pairs only with another")
        family, proto = AddressFamily.UNIX, protocol
        n = _UNIX_PATH_LENGTH
        addresses = source.path.ljust(n, b"\x00") + destination.path.ljust(n, b"\x00")
    else:
        proto = protocol
        s, d = source.ip, destination.ip
        if isinstance(s, ipaddress.IPv4Address) and isinstance(d, ipaddress.IPv4Address):
            family = AddressFamily.INET
            addresses = s.packed + d.packed
        else:
            family = AddressFamily.INET6
            addresses = _as_ipv6(s).packed + _as_ipv6(d).packed
        addresses += struct.pack("!HH", source.port, destination.port)
    body = addresses + b"".join(t.encode() for t in tlvs)
    if crc:
        body += b"\x03\x00\x04\x00\x00\x00\x00"
    if len(body) > 0xFFFF:
        raise ValueError(f"v2 header body of {len(body)} bytes exceeds 65535")
    head = V2_SIGNATURE + struct.pack("!BBH", 0x20 | command, (family << 4) | proto, len(body))
    out = head + body
    if crc:
        out = out[:-4] + crc32c(out).to_bytes(4, "big")
    return out
