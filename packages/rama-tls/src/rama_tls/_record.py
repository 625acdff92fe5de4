"""Sans-IO reader of the TLS records that carry a ClientHello.

A ClientHello may span several handshake records (large post-quantum key
shares, padding) and arrive in arbitrary TCP chunks. :class:`ClientHelloReader`
is fed bytes and answers :class:`NeedMore` (with how many bytes it needs at
least) or :class:`ClientHelloComplete`; bad input raises a typed
:class:`~rama_tls.ClientHelloError` as early as it can be detected, so
the first byte alone already tells a non-TLS stream apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._client_hello import HANDSHAKE_CLIENT_HELLO, ClientHello, parse_client_hello_message
from ._errors import ClientHelloTooLarge, MalformedClientHello, NotTlsError

__all__ = [
    "CONTENT_TYPE_HANDSHAKE",
    "DEFAULT_MAX_CLIENT_HELLO",
    "MAX_RECORD_PAYLOAD",
    "ClientHelloComplete",
    "ClientHelloReader",
    "NeedMore",
    "parse_client_hello_records",
]

CONTENT_TYPE_HANDSHAKE = 22
MAX_RECORD_PAYLOAD = 1 << 14
"""Largest plaintext record fragment allowed by RFC 8446 section 5.1."""
DEFAULT_MAX_CLIENT_HELLO = 64 * 1024
"""Default size limit of one ClientHello message (real ones are below 3 KiB)."""


@dataclass(frozen=True, slots=True)
class NeedMore:
    """Not enough bytes yet: at least ``needed`` bytes must be buffered in total."""

    needed: int


@dataclass(frozen=True, slots=True)
class ClientHelloComplete:
    """A ClientHello was read; ``consumed`` is the length of the records that carried it."""

    client_hello: ClientHello
    consumed: int


class ClientHelloReader:
    """Incremental parser: ``feed`` chunks until it returns :class:`ClientHelloComplete`.

    The reader never consumes: ``consumed`` tells the caller where the hello's
    records end so the bytes can be replayed to a real TLS engine.
    """

    def __init__(self, *, max_size: int = DEFAULT_MAX_CLIENT_HELLO) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._pos = 0  # start of the next unparsed record header
        self._handshake = bytearray()
        self._record_version: int | None = None
        self._result: ClientHelloComplete | None = None
        # a record whose header (and the handshake header) passed the checks, still
        # incomplete: until this many bytes are buffered, feed only appends
        self._waiting: NeedMore | None = None

    @property
    def buffered(self) -> int:
        """How many bytes have been fed so far."""
        return len(self._buf)

    def feed(self, data: bytes) -> NeedMore | ClientHelloComplete:
        """Add bytes and try to finish; raises a ClientHelloError on bad input."""
        if self._result is not None:
            return self._result
        self._buf += data
        waiting = self._waiting
        if waiting is not None:
            if len(self._buf) < waiting.needed:
                return waiting  # a hello dripped byte by byte costs an append per byte
            self._waiting = None
        while True:
            header_end = self._pos + 5
            if len(self._buf) < header_end:
                self._check_prefix()
                return NeedMore(header_end)
            content_type = self._buf[self._pos]
            major, minor = self._buf[self._pos + 1], self._buf[self._pos + 2]
            length = (self._buf[self._pos + 3] << 8) | self._buf[self._pos + 4]
            self._check_header(content_type, major, minor, length)
            record_end = header_end + length
            if len(self._buf) < record_end:
                # only the first bytes matter: no copy of the whole partial record
                self._check_handshake(self._buf[header_end : header_end + 4])
                need = NeedMore(record_end)
                if len(self._handshake) + len(self._buf) - header_end >= 4:
                    self._waiting = need  # nothing left to check before record_end
                return need
            if self._record_version is None:
                self._record_version = (major << 8) | minor
            self._handshake += self._buf[header_end:record_end]
            self._pos = record_end
            self._check_handshake(b"")
            if len(self._handshake) >= 4:
                total = 4 + int.from_bytes(self._handshake[1:4], "big")
                if len(self._handshake) >= total:
                    hello = parse_client_hello_message(
                        bytes(self._handshake[:total]), record_version=self._record_version
                    )
                    self._result = ClientHelloComplete(hello, record_end)
                    return self._result

    # -- early validation ------------------------------------------------------------
    def _check_prefix(self) -> None:
        """Reject what is visibly not TLS before a whole header arrived."""
        head = self._buf[self._pos :]
        if head and head[0] != CONTENT_TYPE_HANDSHAKE:
            self._reject_type(head[0])
        if len(head) >= 2 and head[1] != 3:
            raise NotTlsError(f"record version major {head[1]} is not 3", offset=self._pos + 1)

    def _reject_type(self, content_type: int) -> None:
        if self._pos == 0:
            raise NotTlsError(f"first byte 0x{content_type:02x} is not a TLS handshake record")
        raise MalformedClientHello(
            f"record type {content_type} inside a fragmented ClientHello", offset=self._pos
        )

    def _check_header(self, content_type: int, major: int, minor: int, length: int) -> None:
        if content_type != CONTENT_TYPE_HANDSHAKE:
            self._reject_type(content_type)
        if major != 3:
            raise NotTlsError(f"record version {major}.{minor} is not TLS", offset=self._pos + 1)
        if length == 0:
            raise MalformedClientHello("empty handshake record", offset=self._pos + 3)
        if length > MAX_RECORD_PAYLOAD:
            raise MalformedClientHello(
                f"record of {length} bytes exceeds {MAX_RECORD_PAYLOAD}", offset=self._pos + 3
            )

    def _check_handshake(self, partial: bytes | bytearray) -> None:
        """Validate the handshake header as soon as its bytes exist (maybe mid-record)."""
        head = bytes(self._handshake[:4]) + bytes(partial[: max(0, 4 - len(self._handshake))])
        if head and head[0] != HANDSHAKE_CLIENT_HELLO:
            raise NotTlsError(f"handshake message type {head[0]} is not ClientHello")
        if len(head) == 4:
            length = int.from_bytes(head[1:4], "big")
            if length + 4 > self.max_size:
                raise ClientHelloTooLarge(
                    f"ClientHello of {length + 4} bytes exceeds the limit of {self.max_size}"
                )


def parse_client_hello_records(
    data: bytes, *, max_size: int = DEFAULT_MAX_CLIENT_HELLO
) -> NeedMore | ClientHelloComplete:
    """One-shot form of :class:`ClientHelloReader` over a whole buffer."""
    return ClientHelloReader(max_size=max_size).feed(data)
