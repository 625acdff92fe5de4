"""Sans-IO SOCKS5 (RFC 1928) with username/password authentication (RFC 1929).

Pure code over bytes, no I/O: the adapters (:class:`~rama_proxy.SocksProxy`,
:class:`~rama_proxy.Socks5ProxyConnector`) read from the socket, feed the bytes
to a state machine with ``receive_data`` and act on what ``next_event``
returns; the replies to send are built by the state machine's methods.

- :class:`Socks5ServerProtocol`: the server side (greeting -> method selection
  -> optional user/pass sub-negotiation -> request -> reply);
- :class:`Socks5ClientProtocol`: the client side of the same exchange;
- :func:`encode_udp_datagram` / :func:`decode_udp_datagram`: the UDP ASSOCIATE
  datagram header.

Bytes may arrive in any split: an incomplete message makes ``next_event``
return ``None`` (feed more); ``receive_data(b"")`` means the peer closed, after
which an incomplete message raises :class:`SocksTruncatedError`. Every bad
input raises a :class:`SocksError` subclass carrying the reply code to answer
(``reply``) and, when the protocol has one, the bytes to send before closing
(``response``).
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass
from typing import TypeAlias

from rama_core import RamaError

__all__ = [
    "Socks5Address",
    "Socks5AuthRequest",
    "Socks5AuthResult",
    "Socks5ClientProtocol",
    "Socks5Command",
    "Socks5Greeting",
    "Socks5MethodSelected",
    "Socks5Reply",
    "Socks5ReplyCode",
    "Socks5Request",
    "Socks5ClientState",
    "Socks5ServerProtocol",
    "Socks5ServerState",
    "Socks5UdpDatagram",
    "SocksAddressTypeError",
    "SocksAuthMethod",
    "SocksCommandError",
    "SocksError",
    "SocksFormatError",
    "SocksTruncatedError",
    "SocksVersionError",
    "decode_udp_datagram",
    "encode_address",
    "encode_udp_datagram",
    "parse_auth_request",
    "parse_auth_result",
    "parse_greeting",
    "parse_method_selected",
    "parse_reply",
    "parse_request",
]

SOCKS5_VERSION = 0x05
USERPASS_VERSION = 0x01

Socks5Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address | str
"""An IP address, or a domain name (a str) sent to the proxy to resolve."""

UNSPECIFIED_IPV4 = ipaddress.IPv4Address(0)
"""``0.0.0.0``: the BND.ADDR of an error reply."""


class SocksAuthMethod(enum.IntEnum):
    """RFC 1928 METHOD values rama speaks."""

    NO_AUTH = 0x00
    GSSAPI = 0x01
    USERNAME_PASSWORD = 0x02
    NO_ACCEPTABLE = 0xFF


class Socks5Command(enum.IntEnum):
    """RFC 1928 CMD values."""

    CONNECT = 0x01
    BIND = 0x02
    UDP_ASSOCIATE = 0x03


class Socks5ReplyCode(enum.IntEnum):
    """RFC 1928 REP values."""

    SUCCEEDED = 0x00
    GENERAL_FAILURE = 0x01
    NOT_ALLOWED = 0x02
    NETWORK_UNREACHABLE = 0x03
    HOST_UNREACHABLE = 0x04
    CONNECTION_REFUSED = 0x05
    TTL_EXPIRED = 0x06
    COMMAND_NOT_SUPPORTED = 0x07
    ADDRESS_TYPE_NOT_SUPPORTED = 0x08


_ATYP_IPV4 = 0x01
_ATYP_DOMAIN = 0x03
_ATYP_IPV6 = 0x04


class SocksError(RamaError, ValueError):
    """Bad SOCKS input (the peer's fault), with what to answer."""

    def __init__(self, message: str, *, reply: int = 0x01, response: bytes | None = None):
        super().__init__(message)
        self.reply = reply
        """The SOCKS5 REP code (or SOCKS4 CD code) that fits this error."""
        self.response = response
        """Bytes to send before closing, when the protocol has an error answer here."""


class SocksVersionError(SocksError):
    """A version byte other than the expected one."""


class SocksFormatError(SocksError):
    """A malformed message (no methods, an empty domain, a bad field)."""


class SocksAddressTypeError(SocksError):
    """An ATYP other than IPv4, domain or IPv6 (REP 0x08)."""


class SocksCommandError(SocksError):
    """A CMD other than CONNECT, BIND, UDP ASSOCIATE (REP 0x07)."""


class SocksTruncatedError(SocksError):
    """The peer closed in the middle of a message."""


# -- messages -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Socks5Greeting:
    """The client's first message: the authentication methods it offers."""

    methods: tuple[int, ...]

    def encode(self) -> bytes:
        """Wire form."""
        if not 1 <= len(self.methods) <= 255:
            raise ValueError("a SOCKS5 greeting offers 1..255 methods")
        return bytes((SOCKS5_VERSION, len(self.methods), *self.methods))


@dataclass(frozen=True, slots=True)
class Socks5MethodSelected:
    """The server's method choice (``0xFF``: none acceptable, the server closes)."""

    method: int

    def encode(self) -> bytes:
        """Wire form."""
        return bytes((SOCKS5_VERSION, self.method))


@dataclass(frozen=True, slots=True)
class Socks5AuthRequest:
    """RFC 1929 username/password (raw bytes; 0..255 each)."""

    username: bytes
    password: bytes

    def encode(self) -> bytes:
        """Wire form."""
        if len(self.username) > 255 or len(self.password) > 255:
            raise ValueError("RFC 1929 username and password are at most 255 bytes")
        return (
            bytes((USERPASS_VERSION, len(self.username)))
            + self.username
            + bytes((len(self.password),))
            + self.password
        )


@dataclass(frozen=True, slots=True)
class Socks5AuthResult:
    """RFC 1929 status: 0 is success, anything else a failure (the server closes)."""

    status: int

    @property
    def ok(self) -> bool:
        """Whether the credentials were accepted."""
        return self.status == 0

    def encode(self) -> bytes:
        """Wire form."""
        return bytes((USERPASS_VERSION, self.status))


@dataclass(frozen=True, slots=True)
class Socks5Request:
    """CONNECT / BIND / UDP ASSOCIATE to ``host:port``."""

    command: Socks5Command
    host: Socks5Address
    port: int

    def encode(self) -> bytes:
        """Wire form."""
        return bytes((SOCKS5_VERSION, self.command, 0)) + encode_address(self.host, self.port)


@dataclass(frozen=True, slots=True)
class Socks5Reply:
    """The server's answer: REP and the bound address (BND.ADDR, BND.PORT)."""

    code: int
    host: Socks5Address = UNSPECIFIED_IPV4
    port: int = 0

    @property
    def ok(self) -> bool:
        """Whether REP is ``succeeded``."""
        return self.code == Socks5ReplyCode.SUCCEEDED

    def encode(self) -> bytes:
        """Wire form."""
        return bytes((SOCKS5_VERSION, self.code, 0)) + encode_address(self.host, self.port)


@dataclass(frozen=True, slots=True)
class Socks5UdpDatagram:
    """One UDP ASSOCIATE datagram: header (FRAG, address) and payload."""

    host: Socks5Address
    port: int
    data: bytes
    frag: int = 0


# -- addresses ------------------------------------------------------------------------


def encode_address(host: Socks5Address, port: int) -> bytes:
    """ATYP + address + port; a domain must be 1..255 bytes (IDNA for non-ASCII)."""
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    if isinstance(host, ipaddress.IPv4Address):
        return bytes((_ATYP_IPV4,)) + host.packed + struct.pack("!H", port)
    if isinstance(host, ipaddress.IPv6Address):
        return bytes((_ATYP_IPV6,)) + host.packed + struct.pack("!H", port)
    name = host.encode("idna") if not host.isascii() else host.encode("ascii")
    if not 1 <= len(name) <= 255:
        raise ValueError("a SOCKS5 domain is 1..255 bytes")
    return bytes((_ATYP_DOMAIN, len(name))) + name + struct.pack("!H", port)


def _decode_domain(raw: bytes, server_side: bool) -> str:
    if not raw:
        raise SocksFormatError(
            "empty domain name", reply=0x01, response=_error_reply(0x01, server_side)
        )
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SocksFormatError(
            "domain name is neither ASCII nor UTF-8",
            reply=0x04,
            response=_error_reply(0x04, server_side),
        ) from None


def _error_reply(code: int, server_side: bool) -> bytes | None:
    return Socks5Reply(code).encode() if server_side else None


def _parse_address(
    buf: bytes | bytearray, offset: int, *, server_side: bool
) -> tuple[Socks5Address, int, int] | None:
    """``(host, port, end)`` for the ATYP at ``offset``; None when incomplete."""
    if len(buf) <= offset:
        return None
    atyp = buf[offset]
    if atyp == _ATYP_IPV4:
        end = offset + 1 + 4 + 2
        if len(buf) < end:
            return None
        host: Socks5Address = ipaddress.IPv4Address(bytes(buf[offset + 1 : offset + 5]))
    elif atyp == _ATYP_IPV6:
        end = offset + 1 + 16 + 2
        if len(buf) < end:
            return None
        host = ipaddress.IPv6Address(bytes(buf[offset + 1 : offset + 17]))
    elif atyp == _ATYP_DOMAIN:
        if len(buf) < offset + 2:
            return None
        n = buf[offset + 1]
        end = offset + 2 + n + 2
        if len(buf) < end:
            return None
        host = _decode_domain(bytes(buf[offset + 2 : offset + 2 + n]), server_side)
    else:
        raise SocksAddressTypeError(
            f"unknown address type 0x{atyp:02x}",
            reply=Socks5ReplyCode.ADDRESS_TYPE_NOT_SUPPORTED,
            response=_error_reply(Socks5ReplyCode.ADDRESS_TYPE_NOT_SUPPORTED, server_side),
        )
    (port,) = struct.unpack_from("!H", buf, end - 2)
    return host, port, end


# -- parsers (each returns None when the buffer holds only part of the message) -------


def parse_greeting(buf: bytes | bytearray) -> tuple[Socks5Greeting, int] | None:
    """The client greeting at the start of ``buf`` and its length."""
    if not buf:
        return None
    if buf[0] != SOCKS5_VERSION:
        raise SocksVersionError(f"SOCKS version 0x{buf[0]:02x}, expected 5")
    if len(buf) < 2:
        return None
    n = buf[1]
    if n == 0:
        raise SocksFormatError(
            "greeting offers no methods",
            response=Socks5MethodSelected(SocksAuthMethod.NO_ACCEPTABLE).encode(),
        )
    if len(buf) < 2 + n:
        return None
    return Socks5Greeting(tuple(buf[2 : 2 + n])), 2 + n


def parse_method_selected(buf: bytes | bytearray) -> tuple[Socks5MethodSelected, int] | None:
    """The server's method selection."""
    if not buf:
        return None
    if buf[0] != SOCKS5_VERSION:
        raise SocksVersionError(f"SOCKS version 0x{buf[0]:02x} in method selection, expected 5")
    if len(buf) < 2:
        return None
    return Socks5MethodSelected(buf[1]), 2


def parse_auth_request(buf: bytes | bytearray) -> tuple[Socks5AuthRequest, int] | None:
    """An RFC 1929 username/password request."""
    if not buf:
        return None
    if buf[0] != USERPASS_VERSION:
        raise SocksVersionError(
            f"username/password version 0x{buf[0]:02x}, expected 1",
            response=Socks5AuthResult(0xFF).encode(),
        )
    if len(buf) < 2:
        return None
    ulen = buf[1]
    if len(buf) < 3 + ulen:
        return None
    plen = buf[2 + ulen]
    end = 3 + ulen + plen
    if len(buf) < end:
        return None
    return Socks5AuthRequest(bytes(buf[2 : 2 + ulen]), bytes(buf[3 + ulen : end])), end


def parse_auth_result(buf: bytes | bytearray) -> tuple[Socks5AuthResult, int] | None:
    """An RFC 1929 status reply."""
    if not buf:
        return None
    if buf[0] != USERPASS_VERSION:
        raise SocksVersionError(f"username/password reply version 0x{buf[0]:02x}, expected 1")
    if len(buf) < 2:
        return None
    return Socks5AuthResult(buf[1]), 2


def parse_request(buf: bytes | bytearray) -> tuple[Socks5Request, int] | None:
    """A CONNECT/BIND/UDP ASSOCIATE request."""
    if not buf:
        return None
    if buf[0] != SOCKS5_VERSION:
        raise SocksVersionError(
            f"SOCKS version 0x{buf[0]:02x} in request, expected 5",
            response=Socks5Reply(Socks5ReplyCode.GENERAL_FAILURE).encode(),
        )
    if len(buf) < 4:
        return None
    cmd = buf[1]
    # RSV (buf[2]) must be 0 by the RFC; clients in the wild send junk: ignored
    parsed = _parse_address(buf, 3, server_side=True)
    if cmd not in (1, 2, 3):
        # the address is not needed to answer; a bad one must not hide the command error
        raise SocksCommandError(
            f"unknown command 0x{cmd:02x}",
            reply=Socks5ReplyCode.COMMAND_NOT_SUPPORTED,
            response=Socks5Reply(Socks5ReplyCode.COMMAND_NOT_SUPPORTED).encode(),
        )
    if parsed is None:
        return None
    host, port, end = parsed
    return Socks5Request(Socks5Command(cmd), host, port), end


def parse_reply(buf: bytes | bytearray) -> tuple[Socks5Reply, int] | None:
    """The server's reply to a request."""
    if not buf:
        return None
    if buf[0] != SOCKS5_VERSION:
        raise SocksVersionError(f"SOCKS version 0x{buf[0]:02x} in reply, expected 5")
    if len(buf) < 4:
        return None
    parsed = _parse_address(buf, 3, server_side=False)
    if parsed is None:
        return None
    host, port, end = parsed
    return Socks5Reply(buf[1], host, port), end


def encode_udp_datagram(datagram: Socks5UdpDatagram) -> bytes:
    """RSV(2) FRAG ATYP DST.ADDR DST.PORT DATA."""
    if not 0 <= datagram.frag <= 255:
        raise ValueError("FRAG is one byte")
    return (
        bytes((0, 0, datagram.frag)) + encode_address(datagram.host, datagram.port) + datagram.data
    )


def decode_udp_datagram(packet: bytes) -> Socks5UdpDatagram:
    """One UDP ASSOCIATE datagram; :class:`SocksError` when malformed or short."""
    if len(packet) < 4:
        raise SocksTruncatedError("UDP datagram shorter than its header")
    if packet[0] != 0 or packet[1] != 0:
        raise SocksFormatError("UDP datagram RSV is not zero")
    parsed = _parse_address(packet, 3, server_side=False)
    if parsed is None:
        raise SocksTruncatedError("UDP datagram shorter than its header")
    host, port, end = parsed
    return Socks5UdpDatagram(host, port, packet[end:], packet[2])


# -- state machines -------------------------------------------------------------------


class Socks5ServerState(enum.Enum):
    """Where a server-side exchange is."""

    GREETING = "greeting"
    """Waiting for the client's greeting."""
    SELECTING = "selecting"
    """Greeting received; the server must answer :meth:`Socks5ServerProtocol.select_method`."""
    AUTH = "auth"
    """Waiting for the RFC 1929 request."""
    AUTH_CHECKING = "auth_checking"
    """Credentials received; answer with :meth:`Socks5ServerProtocol.auth_result`."""
    REQUEST = "request"
    """Waiting for the request."""
    REPLYING = "replying"
    """Request received; answer with :meth:`Socks5ServerProtocol.reply`."""
    ESTABLISHED = "established"
    """Succeeded: the stream is a tunnel now (:attr:`Socks5ServerProtocol.trailing_data`)."""
    CLOSED = "closed"
    """Refused or failed: the server closes."""


Socks5ServerEvent: TypeAlias = Socks5Greeting | Socks5AuthRequest | Socks5Request


class Socks5ServerProtocol:
    """The server side of a SOCKS5 handshake over bytes.

    ``receive_data`` -> ``next_event`` yields a :class:`Socks5Greeting` (answer
    :meth:`select_method`), maybe a :class:`Socks5AuthRequest` (answer
    :meth:`auth_result`), then the :class:`Socks5Request` (answer :meth:`reply`).
    """

    def __init__(self, *, max_buffer: int = 64 * 1024) -> None:
        self.state = Socks5ServerState.GREETING
        self.max_buffer = max_buffer
        """Bytes a client may send ahead of the handshake before it is refused."""
        self._buf = bytearray()
        self._eof = False

    def receive_data(self, data: bytes) -> None:
        """Bytes from the client; ``b""`` when it closed its side."""
        if not data:
            self._eof = True
            return
        self._buf += data
        if len(self._buf) > self.max_buffer:
            raise SocksFormatError("client sent too much data during the handshake")

    def next_event(self) -> Socks5ServerEvent | None:
        """The next complete message, or None when more bytes are needed."""
        parsed: tuple[Socks5ServerEvent, int] | None
        try:
            if self.state is Socks5ServerState.GREETING:
                parsed = parse_greeting(self._buf)
                next_state = Socks5ServerState.SELECTING
            elif self.state is Socks5ServerState.AUTH:
                parsed = parse_auth_request(self._buf)
                next_state = Socks5ServerState.AUTH_CHECKING
            elif self.state is Socks5ServerState.REQUEST:
                parsed = parse_request(self._buf)
                next_state = Socks5ServerState.REPLYING
            else:
                return None
        except SocksError:
            self.state = Socks5ServerState.CLOSED
            raise
        if parsed is None:
            if self._eof:
                stage = self.state.value
                self.state = Socks5ServerState.CLOSED
                raise SocksTruncatedError(f"client closed during the {stage}")
            return None
        event, used = parsed
        del self._buf[:used]
        self.state = next_state
        return event

    def select_method(self, greeting: Socks5Greeting, *, require_auth: bool) -> tuple[int, bytes]:
        """Pick the method (user/pass when required, else no-auth) and its answer bytes.

        ``0xFF`` (no acceptable method) moves to CLOSED: send the bytes and close.
        """
        self._expect(Socks5ServerState.SELECTING)
        wanted = SocksAuthMethod.USERNAME_PASSWORD if require_auth else SocksAuthMethod.NO_AUTH
        if wanted in greeting.methods:
            method = int(wanted)
            self.state = (
                Socks5ServerState.AUTH
                if method == SocksAuthMethod.USERNAME_PASSWORD
                else Socks5ServerState.REQUEST
            )
        else:
            method = SocksAuthMethod.NO_ACCEPTABLE
            self.state = Socks5ServerState.CLOSED
        return method, Socks5MethodSelected(method).encode()

    def auth_result(self, ok: bool) -> bytes:
        """RFC 1929 status bytes; a failure moves to CLOSED."""
        self._expect(Socks5ServerState.AUTH_CHECKING)
        self.state = Socks5ServerState.REQUEST if ok else Socks5ServerState.CLOSED
        return Socks5AuthResult(0 if ok else 1).encode()

    def reply(self, code: int, host: Socks5Address = UNSPECIFIED_IPV4, port: int = 0) -> bytes:
        """The reply bytes; success moves to ESTABLISHED, a failure to CLOSED.

        BIND answers twice: call again in ESTABLISHED for the second reply.
        """
        if self.state is not Socks5ServerState.ESTABLISHED:
            self._expect(Socks5ServerState.REPLYING)
        self.state = (
            Socks5ServerState.ESTABLISHED
            if code == Socks5ReplyCode.SUCCEEDED
            else Socks5ServerState.CLOSED
        )
        return Socks5Reply(code, host, port).encode()

    @property
    def trailing_data(self) -> bytes:
        """Bytes the client sent after its request (early tunnel payload)."""
        return bytes(self._buf)

    def take_trailing_data(self) -> bytes:
        """:attr:`trailing_data`, removed from the buffer."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def _expect(self, state: Socks5ServerState) -> None:
        if self.state is not state:
            raise RuntimeError(f"SOCKS5 server is in state {self.state.value}, not {state.value}")


class Socks5ClientState(enum.Enum):
    """Where a client-side exchange is."""

    START = "start"
    METHOD = "method"
    """Greeting sent, waiting for the method selection."""
    AUTH_NEEDED = "auth_needed"
    """The server picked user/pass: send :meth:`Socks5ClientProtocol.auth_request`."""
    AUTH = "auth"
    """Credentials sent, waiting for their status."""
    READY = "ready"
    """Authenticated (or no auth): send :meth:`Socks5ClientProtocol.request`."""
    REPLY = "reply"
    """Request sent, waiting for the reply."""
    ESTABLISHED = "established"
    """Succeeded (a BIND waits for a second reply here)."""
    CLOSED = "closed"
    """Refused."""


Socks5ClientEvent: TypeAlias = Socks5MethodSelected | Socks5AuthResult | Socks5Reply


class Socks5ClientProtocol:
    """The client side of a SOCKS5 handshake over bytes."""

    def __init__(self, *, username: bytes | None = None, password: bytes | None = None) -> None:
        self.username = username
        self.password = password
        self.state = Socks5ClientState.START
        self._buf = bytearray()
        self._eof = False

    def greeting(self) -> bytes:
        """The greeting: user/pass is offered when credentials are set, no-auth always."""
        self._expect(Socks5ClientState.START)
        self.state = Socks5ClientState.METHOD
        methods: tuple[int, ...] = (SocksAuthMethod.NO_AUTH,)
        if self.username is not None:
            methods = (SocksAuthMethod.USERNAME_PASSWORD, SocksAuthMethod.NO_AUTH)
        return Socks5Greeting(methods).encode()

    def auth_request(self) -> bytes:
        """The RFC 1929 request (after the server picked user/pass)."""
        self._expect(Socks5ClientState.AUTH_NEEDED)
        self.state = Socks5ClientState.AUTH
        return Socks5AuthRequest(self.username or b"", self.password or b"").encode()

    def request(self, command: Socks5Command, host: Socks5Address, port: int) -> bytes:
        """The request bytes (once READY)."""
        self._expect(Socks5ClientState.READY)
        data = Socks5Request(command, host, port).encode()
        self.state = Socks5ClientState.REPLY
        return data

    def receive_data(self, data: bytes) -> None:
        """Bytes from the server; ``b""`` when it closed."""
        if not data:
            self._eof = True
            return
        self._buf += data

    def next_event(self) -> Socks5ClientEvent | None:
        """The next complete server message, or None when more bytes are needed."""
        parsed: tuple[Socks5ClientEvent, int] | None
        try:
            if self.state is Socks5ClientState.METHOD:
                parsed = parse_method_selected(self._buf)
            elif self.state is Socks5ClientState.AUTH:
                parsed = parse_auth_result(self._buf)
            elif self.state in (Socks5ClientState.REPLY, Socks5ClientState.ESTABLISHED):
                if self.state is Socks5ClientState.ESTABLISHED and not self._buf:
                    return None
                parsed = parse_reply(self._buf)
            else:
                return None
        except SocksError:
            self.state = Socks5ClientState.CLOSED
            raise
        if parsed is None:
            if self._eof:
                state = self.state
                self.state = Socks5ClientState.CLOSED
                raise SocksTruncatedError(f"proxy closed while the client was in {state.value}")
            return None
        event, used = parsed
        del self._buf[:used]
        if isinstance(event, Socks5MethodSelected):
            if event.method == SocksAuthMethod.NO_AUTH:
                self.state = Socks5ClientState.READY
            elif event.method == SocksAuthMethod.USERNAME_PASSWORD and self.username is not None:
                self.state = Socks5ClientState.AUTH_NEEDED
            else:
                self.state = Socks5ClientState.CLOSED
        elif isinstance(event, Socks5AuthResult):
            self.state = Socks5ClientState.READY if event.ok else Socks5ClientState.CLOSED
        else:
            self.state = Socks5ClientState.ESTABLISHED if event.ok else Socks5ClientState.CLOSED
        return event

    def take_trailing_data(self) -> bytes:
        """Bytes the server sent after its reply (tunnel payload), removed from the buffer."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def _expect(self, state: Socks5ClientState) -> None:
        if self.state is not state:
            raise RuntimeError(f"SOCKS5 client is in state {self.state.value}, not {state.value}")
