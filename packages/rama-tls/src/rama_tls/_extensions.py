"""ClientHello extensions as typed values.

:func:`parse_extension` turns one ``(type, data)`` pair into a typed value:
every extension named in :class:`ExtensionType` that a ClientHello carries has
its own frozen dataclass; GREASE types become :class:`GreaseExtension` and
anything else stays :class:`UnknownExtension` with its raw bytes. The raw
``data`` of every extension is kept on :class:`Extension` either way, so an
emulator can re-serialize the hello byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from ._cursor import Cursor
from ._errors import MalformedClientHello
from ._grease import is_grease

__all__ = [
    "Alpn",
    "ApplicationSettings",
    "CompressCertificate",
    "DelegatedCredentials",
    "EarlyData",
    "EcPointFormats",
    "EncryptedClientHello",
    "Extension",
    "ExtensionType",
    "ExtensionValue",
    "ExtendedMasterSecret",
    "GreaseExtension",
    "KeyShare",
    "KeyShareEntry",
    "Padding",
    "PostHandshakeAuth",
    "PreSharedKey",
    "PskIdentity",
    "PskKeyExchangeModes",
    "QuicTransportParameters",
    "RecordSizeLimit",
    "RenegotiationInfo",
    "ServerName",
    "SessionTicket",
    "SignatureAlgorithms",
    "SignatureAlgorithmsCert",
    "SignedCertificateTimestamp",
    "StatusRequest",
    "SupportedGroups",
    "SupportedVersions",
    "UnknownExtension",
    "parse_extension",
]


class ExtensionType(IntEnum):
    """IANA TLS ExtensionType values rama-tls knows by name."""

    SERVER_NAME = 0x0000
    MAX_FRAGMENT_LENGTH = 0x0001
    STATUS_REQUEST = 0x0005
    SUPPORTED_GROUPS = 0x000A
    EC_POINT_FORMATS = 0x000B
    SIGNATURE_ALGORITHMS = 0x000D
    USE_SRTP = 0x000E
    HEARTBEAT = 0x000F
    APPLICATION_LAYER_PROTOCOL_NEGOTIATION = 0x0010
    STATUS_REQUEST_V2 = 0x0011
    SIGNED_CERTIFICATE_TIMESTAMP = 0x0012
    CLIENT_CERTIFICATE_TYPE = 0x0013
    SERVER_CERTIFICATE_TYPE = 0x0014
    PADDING = 0x0015
    ENCRYPT_THEN_MAC = 0x0016
    EXTENDED_MASTER_SECRET = 0x0017
    COMPRESS_CERTIFICATE = 0x001B
    RECORD_SIZE_LIMIT = 0x001C
    DELEGATED_CREDENTIALS = 0x0022
    SESSION_TICKET = 0x0023
    PRE_SHARED_KEY = 0x0029
    EARLY_DATA = 0x002A
    SUPPORTED_VERSIONS = 0x002B
    COOKIE = 0x002C
    PSK_KEY_EXCHANGE_MODES = 0x002D
    CERTIFICATE_AUTHORITIES = 0x002F
    OID_FILTERS = 0x0030
    POST_HANDSHAKE_AUTH = 0x0031
    SIGNATURE_ALGORITHMS_CERT = 0x0032
    KEY_SHARE = 0x0033
    QUIC_TRANSPORT_PARAMETERS = 0x0039
    NEXT_PROTOCOL_NEGOTIATION = 0x3374
    APPLICATION_SETTINGS_OLD = 0x4469
    APPLICATION_SETTINGS = 0x44CD
    ENCRYPTED_CLIENT_HELLO = 0xFE0D
    QUIC_TRANSPORT_PARAMETERS_DRAFT = 0xFFA5
    RENEGOTIATION_INFO = 0xFF01


# -- typed values -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerName:
    """server_name (0): the SNI list; ``host_name`` is the DNS name clients send.

    The parser enforces RFC 6066: a non-empty list with at most one name per
    name_type (so at most one host_name), host names non-empty ASCII.
    """

    entries: tuple[tuple[int, bytes], ...]
    """(name_type, name) pairs in wire order; name_type 0 is host_name."""

    @property
    def host_name(self) -> str | None:
        """The first host_name entry decoded as ASCII (lower-cased as DNS is), if any."""
        for kind, name in self.entries:
            if kind == 0:
                return name.decode("ascii").lower()
        return None


@dataclass(frozen=True, slots=True)
class Alpn:
    """application_layer_protocol_negotiation (16): protocols offered, in preference order.

    The parser enforces RFC 7301: at least one protocol, none of them empty.
    """

    protocols: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SupportedVersions:
    """supported_versions (43): protocol versions offered (0x0304 is TLS 1.3)."""

    versions: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SupportedGroups:
    """supported_groups (10), formerly elliptic_curves: named groups offered."""

    groups: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SignatureAlgorithms:
    """signature_algorithms (13): SignatureScheme values in preference order."""

    schemes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SignatureAlgorithmsCert:
    """signature_algorithms_cert (50): schemes accepted in certificates."""

    schemes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DelegatedCredentials:
    """delegated_credentials (34): schemes accepted for delegated credentials."""

    schemes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class KeyShareEntry:
    """One key share: a named group and its public key bytes."""

    group: int
    key_exchange: bytes


@dataclass(frozen=True, slots=True)
class KeyShare:
    """key_share (51): the client's key shares."""

    entries: tuple[KeyShareEntry, ...]


@dataclass(frozen=True, slots=True)
class PskKeyExchangeModes:
    """psk_key_exchange_modes (45): 0 = psk_ke, 1 = psk_dhe_ke."""

    modes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class EcPointFormats:
    """ec_point_formats (11): 0 = uncompressed."""

    formats: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class StatusRequest:
    """status_request (5): OCSP stapling request (status_type 1 = ocsp)."""

    status_type: int
    responder_id_list: bytes
    request_extensions: bytes


@dataclass(frozen=True, slots=True)
class SignedCertificateTimestamp:
    """signed_certificate_timestamp (18): empty in a ClientHello."""

    data: bytes = b""


@dataclass(frozen=True, slots=True)
class SessionTicket:
    """session_ticket (35): an empty or resumed ticket."""

    ticket: bytes


@dataclass(frozen=True, slots=True)
class ExtendedMasterSecret:
    """extended_master_secret (23): always empty."""


@dataclass(frozen=True, slots=True)
class RenegotiationInfo:
    """renegotiation_info (0xff01): empty on a first handshake."""

    renegotiated_connection: bytes


@dataclass(frozen=True, slots=True)
class CompressCertificate:
    """compress_certificate (27): 1 = zlib, 2 = brotli, 3 = zstd."""

    algorithms: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ApplicationSettings:
    """application_settings / ALPS (0x4469 old, 0x44cd new codepoint): protocols with settings."""

    protocols: tuple[bytes, ...]
    codepoint: int


@dataclass(frozen=True, slots=True)
class EncryptedClientHello:
    """encrypted_client_hello (0xfe0d).

    ``ech_type`` 0 is the outer hello (cipher suite, config id, enc and payload
    are set); 1 is the inner marker (the others are empty).
    """

    ech_type: int
    kdf_id: int | None = None
    aead_id: int | None = None
    config_id: int | None = None
    enc: bytes = b""
    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Padding:
    """padding (21): ``length`` bytes, normally zero."""

    length: int


@dataclass(frozen=True, slots=True)
class RecordSizeLimit:
    """record_size_limit (28): the largest record the client wants to receive."""

    limit: int


@dataclass(frozen=True, slots=True)
class PskIdentity:
    """One pre-shared-key identity with its obfuscated ticket age."""

    identity: bytes
    obfuscated_ticket_age: int


@dataclass(frozen=True, slots=True)
class PreSharedKey:
    """pre_shared_key (41): identities and binders (must be the last extension)."""

    identities: tuple[PskIdentity, ...]
    binders: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class EarlyData:
    """early_data (42): empty in a ClientHello."""


@dataclass(frozen=True, slots=True)
class PostHandshakeAuth:
    """post_handshake_auth (49): always empty."""


@dataclass(frozen=True, slots=True)
class QuicTransportParameters:
    """quic_transport_parameters (57 or draft 0xffa5): kept raw."""

    data: bytes


@dataclass(frozen=True, slots=True)
class GreaseExtension:
    """An extension whose type is a GREASE value (RFC 8701)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class UnknownExtension:
    """Any extension rama-tls has no typed value for; its bytes are kept as sent."""

    data: bytes


ExtensionValue = (
    ServerName
    | Alpn
    | SupportedVersions
    | SupportedGroups
    | SignatureAlgorithms
    | SignatureAlgorithmsCert
    | DelegatedCredentials
    | KeyShare
    | PskKeyExchangeModes
    | EcPointFormats
    | StatusRequest
    | SignedCertificateTimestamp
    | SessionTicket
    | ExtendedMasterSecret
    | RenegotiationInfo
    | CompressCertificate
    | ApplicationSettings
    | EncryptedClientHello
    | Padding
    | RecordSizeLimit
    | PreSharedKey
    | EarlyData
    | PostHandshakeAuth
    | QuicTransportParameters
    | GreaseExtension
    | UnknownExtension
)
"""Union of every typed extension value."""


@dataclass(frozen=True, slots=True)
class Extension:
    """One extension as it appeared on the wire, with its typed value."""

    type: int
    data: bytes
    value: ExtensionValue

    @property
    def is_grease(self) -> bool:
        """Whether the extension type is a GREASE value."""
        return is_grease(self.type)

    @property
    def name(self) -> str:
        """IANA name (``server_name``), ``grease`` or ``unknown_0x....``."""
        if is_grease(self.type):
            return "grease"
        try:
            return ExtensionType(self.type).name.lower()
        except ValueError:
            return f"unknown_0x{self.type:04x}"


# -- parsers ----------------------------------------------------------------------------


def _server_name(c: Cursor) -> ServerName:
    # RFC 6066 section 3: ServerName server_name_list<1..2^16-1>, at most one name per type
    lst = c.vec16("server_name_list")
    if lst.at_end():
        raise MalformedClientHello("server_name: empty server_name_list", offset=lst.offset)
    entries: list[tuple[int, bytes]] = []
    while not lst.at_end():
        start = lst.offset
        kind = lst.u8("name_type")
        name = lst.opaque16("host_name")
        if kind == 0 and (not name or not name.isascii()):
            raise MalformedClientHello("server_name: host_name is empty or not ASCII", offset=start)
        if any(kind == seen for seen, _ in entries):
            what = "host_name" if kind == 0 else f"name_type {kind}"
            raise MalformedClientHello(f"server_name: more than one {what}", offset=start)
        entries.append((kind, name))
    return ServerName(tuple(entries))


def _alpn(c: Cursor) -> Alpn:
    # RFC 7301 section 3.1: ProtocolName protocol_name_list<2..2^16-1>, ProtocolName<1..2^8-1>
    lst = c.vec16("protocol_name_list")
    if lst.at_end():
        raise MalformedClientHello("alpn: empty protocol_name_list", offset=lst.offset)
    protocols: list[bytes] = []
    while not lst.at_end():
        start = lst.offset
        name = lst.opaque8("protocol_name")
        if not name:
            raise MalformedClientHello("alpn: empty protocol name", offset=start)
        protocols.append(name)
    return Alpn(tuple(protocols))


def _supported_versions(c: Cursor) -> SupportedVersions:
    lst = c.vec8("versions")
    if lst.remaining % 2:
        raise MalformedClientHello("supported_versions: odd length", offset=lst.offset)
    return SupportedVersions(tuple(lst.u16("version") for _ in range(lst.remaining // 2)))


def _key_share(c: Cursor) -> KeyShare:
    lst = c.vec16("client_shares")
    entries: list[KeyShareEntry] = []
    while not lst.at_end():
        group = lst.u16("group")
        entries.append(KeyShareEntry(group, lst.opaque16("key_exchange")))
    return KeyShare(tuple(entries))


def _status_request(c: Cursor) -> StatusRequest:
    status_type = c.u8("status_type")
    if status_type != 1:
        return StatusRequest(status_type, b"", c.take(c.remaining, "request"))
    return StatusRequest(status_type, c.opaque16("responder_id_list"), c.opaque16("extensions"))


def _compress_certificate(c: Cursor) -> CompressCertificate:
    lst = c.vec8("algorithms")
    if lst.remaining % 2 or lst.remaining == 0:
        raise MalformedClientHello("compress_certificate: bad length", offset=lst.offset)
    return CompressCertificate(tuple(lst.u16("algorithm") for _ in range(lst.remaining // 2)))


def _application_settings(codepoint: int) -> Callable[[Cursor], ApplicationSettings]:
    def parse(c: Cursor) -> ApplicationSettings:
        lst = c.vec16("supported_protocols")
        protocols: list[bytes] = []
        while not lst.at_end():
            protocols.append(lst.opaque8("protocol"))
        return ApplicationSettings(tuple(protocols), codepoint)

    return parse


def _ech(c: Cursor) -> EncryptedClientHello:
    ech_type = c.u8("ech_type")
    if ech_type == 0:
        kdf = c.u16("kdf_id")
        aead = c.u16("aead_id")
        config_id = c.u8("config_id")
        enc = c.opaque16("enc")
        payload = c.opaque16("payload")
        return EncryptedClientHello(ech_type, kdf, aead, config_id, enc, payload)
    if ech_type == 1:
        return EncryptedClientHello(ech_type)
    raise MalformedClientHello(f"encrypted_client_hello: unknown type {ech_type}")


def _pre_shared_key(c: Cursor) -> PreSharedKey:
    ids = c.vec16("identities")
    identities: list[PskIdentity] = []
    while not ids.at_end():
        identity = ids.opaque16("identity")
        identities.append(PskIdentity(identity, ids.u32("obfuscated_ticket_age")))
    bl = c.vec16("binders")
    binders: list[bytes] = []
    while not bl.at_end():
        binders.append(bl.opaque8("binder"))
    if not identities or len(identities) != len(binders):
        raise MalformedClientHello("pre_shared_key: identities and binders do not match")
    return PreSharedKey(tuple(identities), tuple(binders))


def _record_size_limit(c: Cursor) -> RecordSizeLimit:
    limit = c.u16("record_size_limit")
    if limit < 64:
        raise MalformedClientHello(f"record_size_limit: {limit} is below 64")
    return RecordSizeLimit(limit)


def _empty(factory: Callable[[], ExtensionValue], name: str) -> Callable[[Cursor], ExtensionValue]:
    def parse(c: Cursor) -> ExtensionValue:
        if not c.at_end():
            raise MalformedClientHello(f"{name}: must be empty")
        return factory()

    return parse


def _rest(factory: Callable[[bytes], ExtensionValue]) -> Callable[[Cursor], ExtensionValue]:
    return lambda c: factory(c.take(c.remaining))


_T = ExtensionType
_PARSERS: dict[int, Callable[[Cursor], ExtensionValue]] = {
    _T.SERVER_NAME: _server_name,
    _T.APPLICATION_LAYER_PROTOCOL_NEGOTIATION: _alpn,
    _T.SUPPORTED_VERSIONS: _supported_versions,
    _T.SUPPORTED_GROUPS: lambda c: SupportedGroups(c.u16_list("named_group_list")),
    _T.SIGNATURE_ALGORITHMS: lambda c: SignatureAlgorithms(c.u16_list("schemes")),
    _T.SIGNATURE_ALGORITHMS_CERT: lambda c: SignatureAlgorithmsCert(c.u16_list("schemes")),
    _T.DELEGATED_CREDENTIALS: lambda c: DelegatedCredentials(c.u16_list("schemes")),
    _T.KEY_SHARE: _key_share,
    _T.PSK_KEY_EXCHANGE_MODES: lambda c: PskKeyExchangeModes(c.u8_list("ke_modes", min_len=1)),
    _T.EC_POINT_FORMATS: lambda c: EcPointFormats(c.u8_list("ec_point_formats", min_len=1)),
    _T.STATUS_REQUEST: _status_request,
    _T.SIGNED_CERTIFICATE_TIMESTAMP: _rest(SignedCertificateTimestamp),
    _T.SESSION_TICKET: _rest(SessionTicket),
    _T.EXTENDED_MASTER_SECRET: _empty(ExtendedMasterSecret, "extended_master_secret"),
    _T.RENEGOTIATION_INFO: lambda c: RenegotiationInfo(c.opaque8("renegotiated_connection")),
    _T.COMPRESS_CERTIFICATE: _compress_certificate,
    _T.APPLICATION_SETTINGS_OLD: _application_settings(_T.APPLICATION_SETTINGS_OLD),
    _T.APPLICATION_SETTINGS: _application_settings(_T.APPLICATION_SETTINGS),
    _T.ENCRYPTED_CLIENT_HELLO: _ech,
    _T.PADDING: lambda c: Padding(len(c.take(c.remaining))),
    _T.RECORD_SIZE_LIMIT: _record_size_limit,
    _T.PRE_SHARED_KEY: _pre_shared_key,
    _T.EARLY_DATA: _empty(EarlyData, "early_data"),
    _T.POST_HANDSHAKE_AUTH: _empty(PostHandshakeAuth, "post_handshake_auth"),
    _T.QUIC_TRANSPORT_PARAMETERS: _rest(QuicTransportParameters),
    _T.QUIC_TRANSPORT_PARAMETERS_DRAFT: _rest(QuicTransportParameters),
}


def parse_extension(ext_type: int, data: bytes) -> Extension:
    """Parse one ClientHello extension body into an :class:`Extension`.

    Raises :class:`~rama_tls.MalformedClientHello` when a known
    extension's body does not match its wire format.
    """
    if is_grease(ext_type):
        return Extension(ext_type, data, GreaseExtension(data))
    parser = _PARSERS.get(ext_type)
    if parser is None:
        return Extension(ext_type, data, UnknownExtension(data))
    name = f"extension 0x{ext_type:04x}"
    cursor = Cursor(data, what=name)
    value = parser(cursor)
    cursor.expect_end()
    return Extension(ext_type, data, value)
