"""The ClientHello message: a typed value and its sans-IO parser.

:func:`parse_client_hello_message` reads one handshake message (type 1 plus a
24-bit length), as found inside TLS records (see :mod:`rama_tls._record`) or in
QUIC CRYPTO frames. Every malformed length or vector raises
:class:`~rama_tls.MalformedClientHello`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from ._cursor import Cursor
from ._errors import MalformedClientHello, NotTlsError
from ._extensions import (
    Alpn,
    EcPointFormats,
    Extension,
    ExtensionType,
    ExtensionValue,
    ServerName,
    SignatureAlgorithms,
    SupportedGroups,
    SupportedVersions,
    parse_extension,
)
from ._grease import is_grease

__all__ = [
    "HANDSHAKE_CLIENT_HELLO",
    "ClientHello",
    "parse_client_hello_body",
    "parse_client_hello_message",
]

HANDSHAKE_CLIENT_HELLO = 1
"""HandshakeType of a ClientHello."""

V = TypeVar("V", bound=ExtensionValue)


@dataclass(frozen=True, slots=True)
class ClientHello:
    """A parsed ClientHello, values in wire order, GREASE included.

    Fingerprints (:mod:`rama_tls._ja3`, :mod:`rama_tls._ja4`) are pure functions
    of this value. The acceptor stores it in the Context of each connection.
    """

    legacy_version: int
    """``client_version`` of the hello (0x0303 for TLS 1.2 and 1.3 clients)."""
    random: bytes
    session_id: bytes
    cipher_suites: tuple[int, ...]
    compression_methods: tuple[int, ...]
    extensions: tuple[Extension, ...]
    record_version: int | None = None
    """Version of the first record header; ``None`` when parsed from QUIC."""
    raw: bytes = field(default=b"", repr=False)
    """The whole handshake message (4-byte header and body) as received."""

    # -- lookups ----------------------------------------------------------------------
    def extension(self, ext_type: int) -> Extension | None:
        """The extension with this type code, if present."""
        for ext in self.extensions:
            if ext.type == ext_type:
                return ext
        return None

    def find(self, kind: type[V]) -> V | None:
        """The first extension value of class ``kind`` (e.g. ``hello.find(Alpn)``)."""
        for ext in self.extensions:
            if isinstance(ext.value, kind):
                return ext.value
        return None

    @property
    def extension_types(self) -> tuple[int, ...]:
        """Extension type codes in wire order, GREASE included."""
        return tuple(ext.type for ext in self.extensions)

    @property
    def server_name(self) -> str | None:
        """The SNI host name, if the client sent one."""
        sni = self.find(ServerName)
        return sni.host_name if sni is not None else None

    @property
    def alpn_protocols(self) -> tuple[bytes, ...]:
        """ALPN protocols offered, in preference order (empty when no ALPN extension)."""
        alpn = self.find(Alpn)
        return alpn.protocols if alpn is not None else ()

    @property
    def supported_versions(self) -> tuple[int, ...]:
        """Versions from supported_versions (GREASE included), empty if absent."""
        sv = self.find(SupportedVersions)
        return sv.versions if sv is not None else ()

    @property
    def max_version(self) -> int:
        """The highest non-GREASE version offered (supported_versions, else legacy_version)."""
        versions = [v for v in self.supported_versions if not is_grease(v)]
        return max(versions) if versions else self.legacy_version

    @property
    def signature_algorithms(self) -> tuple[int, ...]:
        """signature_algorithms schemes in wire order (empty if absent)."""
        sa = self.find(SignatureAlgorithms)
        return sa.schemes if sa is not None else ()

    @property
    def supported_groups(self) -> tuple[int, ...]:
        """supported_groups in wire order (empty if absent)."""
        sg = self.find(SupportedGroups)
        return sg.groups if sg is not None else ()

    @property
    def ec_point_formats(self) -> tuple[int, ...]:
        """ec_point_formats in wire order (empty if absent)."""
        pf = self.find(EcPointFormats)
        return pf.formats if pf is not None else ()


def parse_client_hello_body(
    body: bytes, *, record_version: int | None = None, raw: bytes = b""
) -> ClientHello:
    """Parse a ClientHello body (the bytes after the 4-byte handshake header)."""
    c = Cursor(body, what="ClientHello")
    legacy_version = c.u16("legacy_version")
    random = c.take(32, "random")
    session_id = c.opaque8("legacy_session_id")
    if len(session_id) > 32:
        raise MalformedClientHello("ClientHello: session id longer than 32 bytes")
    suites = c.u16_list("cipher_suites", min_len=2)
    compression = c.u8_list("legacy_compression_methods", min_len=1)
    extensions: list[Extension] = []
    if not c.at_end():
        block = c.vec16("extensions")
        seen: set[int] = set()
        while not block.at_end():
            start = block.offset
            ext_type = block.u16("extension_type")
            data = block.opaque16("extension_data")
            if ext_type in seen:
                raise MalformedClientHello(f"duplicate extension 0x{ext_type:04x}", offset=start)
            seen.add(ext_type)
            extensions.append(parse_extension(ext_type, data))
        c.expect_end()
        psk = ExtensionType.PRE_SHARED_KEY
        if psk in seen and extensions[-1].type != psk:
            raise MalformedClientHello("pre_shared_key is not the last extension")
    return ClientHello(
        legacy_version=legacy_version,
        random=random,
        session_id=session_id,
        cipher_suites=suites,
        compression_methods=compression,
        extensions=tuple(extensions),
        record_version=record_version,
        raw=raw,
    )


def parse_client_hello_message(message: bytes, *, record_version: int | None = None) -> ClientHello:
    """Parse a complete handshake message that must be a ClientHello.

    Use this for QUIC (the CRYPTO stream carries handshake messages without
    records). Raises :class:`~rama_tls.NotTlsError` if the message
    type is not ClientHello, :class:`~rama_tls.MalformedClientHello`
    for a wrong length or body.
    """
    c = Cursor(message, what="handshake")
    msg_type = c.u8("msg_type")
    if msg_type != HANDSHAKE_CLIENT_HELLO:
        raise NotTlsError(f"handshake message type {msg_type} is not ClientHello")
    length = c.u24("length")
    body = c.take(length, "body")
    c.expect_end()
    return parse_client_hello_body(body, record_version=record_version, raw=bytes(message))
