"""Sans-IO ClientHello parser: typed extensions, record framing, typed errors."""

from __future__ import annotations

import pytest

from rama_tls import (
    ClientHello,
    ClientHelloComplete,
    ClientHelloReader,
    ClientHelloTooLarge,
    MalformedClientHello,
    NeedMore,
    NotTlsError,
    encode_client_hello_message,
    encode_handshake_records,
    parse_client_hello_message,
    parse_client_hello_records,
)
from rama_tls._extensions import (
    Alpn,
    ApplicationSettings,
    CompressCertificate,
    DelegatedCredentials,
    EarlyData,
    EcPointFormats,
    EncryptedClientHello,
    ExtendedMasterSecret,
    GreaseExtension,
    KeyShare,
    KeyShareEntry,
    Padding,
    PostHandshakeAuth,
    PreSharedKey,
    PskIdentity,
    PskKeyExchangeModes,
    QuicTransportParameters,
    RecordSizeLimit,
    RenegotiationInfo,
    ServerName,
    SessionTicket,
    SignatureAlgorithms,
    SignatureAlgorithmsCert,
    SignedCertificateTimestamp,
    StatusRequest,
    SupportedGroups,
    SupportedVersions,
    UnknownExtension,
    parse_extension,
)


def u16(v: int) -> bytes:
    return v.to_bytes(2, "big")


def vec16(b: bytes) -> bytes:
    return u16(len(b)) + b


def vec8(b: bytes) -> bytes:
    return bytes([len(b)]) + b


# Every extension the issue lists, in a browser-like order, as (type, body).
ALL_EXTENSIONS: list[tuple[int, bytes]] = [
    (0x0A0A, b""),  # GREASE
    (0x0000, vec16(b"\x00" + vec16(b"Example.COM"))),
    (0x0017, b""),
    (0xFF01, vec8(b"")),
    (0x000A, vec16(u16(0x1A1A) + u16(29) + u16(23))),
    (0x000B, vec8(b"\x00")),
    (0x0023, b"ticket"),
    (0x0010, vec16(vec8(b"h2") + vec8(b"http/1.1"))),
    (0x0005, b"\x01" + vec16(b"") + vec16(b"")),
    (0x000D, vec16(u16(0x0403) + u16(0x0804))),
    (0x0032, vec16(u16(0x0403))),
    (0x0012, b""),
    (0x0033, vec16(u16(29) + vec16(b"k" * 32))),
    (0x002D, vec8(b"\x01")),
    (0x002B, vec8(u16(0x2A2A) + u16(0x0304) + u16(0x0303))),
    (0x001B, vec8(u16(2))),
    (0x44CD, vec16(vec8(b"h2"))),
    (0x4469, vec16(vec8(b"h2"))),
    (0xFE0D, b"\x00" + u16(1) + u16(1) + b"\x07" + vec16(b"E" * 32) + vec16(b"P" * 40)),
    (0x001C, u16(0x4001)),
    (0x0022, vec16(u16(0x0403))),
    (0x002A, b""),
    (0x0031, b""),
    (0x0039, b"\x01\x02\x03"),
    (0x1234, b"opaque"),
    (0x0015, b"\x00" * 11),
    (0x0029, vec16(vec16(b"id") + b"\x00\x00\x00\x07") + vec16(vec8(b"B" * 32))),
]


def make_hello(
    extensions: list[tuple[int, bytes]] | None = None,
    *,
    suites: tuple[int, ...] = (0x3A3A, 0x1301, 0xC02F),
) -> bytes:
    exts = ALL_EXTENSIONS if extensions is None else extensions
    body = u16(0x0303) + bytes(32) + vec8(b"S" * 32) + vec16(b"".join(u16(s) for s in suites))
    body += vec8(b"\x00") + vec16(b"".join(u16(t) + vec16(d) for t, d in exts))
    return b"\x01" + len(body).to_bytes(3, "big") + body


def test_every_listed_extension_is_typed() -> None:
    hello = parse_client_hello_message(make_hello())
    assert hello.server_name == "example.com"
    assert hello.alpn_protocols == (b"h2", b"http/1.1")
    assert hello.cipher_suites == (0x3A3A, 0x1301, 0xC02F)
    assert hello.session_id == b"S" * 32
    assert hello.max_version == 0x0304
    assert hello.find(ServerName) == ServerName(((0, b"Example.COM"),))
    assert hello.find(ExtendedMasterSecret) == ExtendedMasterSecret()
    assert hello.find(RenegotiationInfo) == RenegotiationInfo(b"")
    assert hello.find(SupportedGroups) == SupportedGroups((0x1A1A, 29, 23))
    assert hello.find(EcPointFormats) == EcPointFormats((0,))
    assert hello.find(SessionTicket) == SessionTicket(b"ticket")
    assert hello.find(Alpn) == Alpn((b"h2", b"http/1.1"))
    assert hello.find(StatusRequest) == StatusRequest(1, b"", b"")
    assert hello.find(SignatureAlgorithms) == SignatureAlgorithms((0x0403, 0x0804))
    assert hello.find(SignatureAlgorithmsCert) == SignatureAlgorithmsCert((0x0403,))
    assert hello.find(SignedCertificateTimestamp) == SignedCertificateTimestamp(b"")
    assert hello.find(KeyShare) == KeyShare((KeyShareEntry(29, b"k" * 32),))
    assert hello.find(PskKeyExchangeModes) == PskKeyExchangeModes((1,))
    assert hello.find(SupportedVersions) == SupportedVersions((0x2A2A, 0x0304, 0x0303))
    assert hello.find(CompressCertificate) == CompressCertificate((2,))
    assert hello.find(ApplicationSettings) == ApplicationSettings((b"h2",), 0x44CD)
    ech = hello.find(EncryptedClientHello)
    assert ech is not None
    assert (ech.ech_type, ech.config_id, len(ech.payload)) == (0, 7, 40)
    assert hello.find(RecordSizeLimit) == RecordSizeLimit(0x4001)
    assert hello.find(DelegatedCredentials) == DelegatedCredentials((0x0403,))
    assert hello.find(EarlyData) == EarlyData()
    assert hello.find(PostHandshakeAuth) == PostHandshakeAuth()
    assert hello.find(QuicTransportParameters) == QuicTransportParameters(b"\x01\x02\x03")
    assert hello.find(UnknownExtension) == UnknownExtension(b"opaque")
    assert hello.find(Padding) == Padding(11)
    assert hello.find(PreSharedKey) == PreSharedKey((PskIdentity(b"id", 7),), (b"B" * 32,))
    assert hello.find(GreaseExtension) == GreaseExtension(b"")
    assert hello.extensions[0].is_grease
    assert hello.extensions[0].name == "grease"
    assert hello.extension(0x1234) is not None
    assert hello.extension(0x1234).name == "unknown_0x1234"  # type: ignore[union-attr]
    old_alps = [e.value for e in hello.extensions if e.type == 0x4469]
    assert old_alps == [ApplicationSettings((b"h2",), 0x4469)]


def test_encode_roundtrip() -> None:
    msg = make_hello()
    hello = parse_client_hello_message(msg)
    assert encode_client_hello_message(hello) == msg
    assert hello.raw == msg


def test_hello_without_extensions_block() -> None:
    body = u16(0x0301) + bytes(32) + vec8(b"") + vec16(u16(0x002F)) + vec8(b"\x00")
    hello = parse_client_hello_message(b"\x01" + len(body).to_bytes(3, "big") + body)
    assert hello.extensions == ()
    assert hello.max_version == 0x0301


@pytest.mark.parametrize("fragment", [1, 2, 5, 100, 16384])
def test_records_fed_byte_by_byte(fragment: int) -> None:
    msg = make_hello()
    wire = encode_handshake_records(msg, max_fragment=fragment) + b"\x17\x03\x03trailing"
    reader = ClientHelloReader()
    results = [reader.feed(wire[i : i + 1]) for i in range(len(wire))]
    done = [i for i, r in enumerate(results) if isinstance(r, ClientHelloComplete)]
    consumed = len(encode_handshake_records(msg, max_fragment=fragment))
    assert done[0] == consumed - 1  # complete exactly at the last byte of the last record
    final = results[-1]
    assert isinstance(final, ClientHelloComplete)
    assert final.consumed == consumed
    assert final.client_hello.raw == msg
    assert final.client_hello.record_version == 0x0301
    for i, r in enumerate(results[: done[0]]):
        assert isinstance(r, NeedMore)
        assert r.needed > i + 1


def test_need_more_reports_record_end() -> None:
    wire = encode_handshake_records(make_hello())
    assert parse_client_hello_records(wire[:3]) == NeedMore(5)
    assert parse_client_hello_records(wire[:10]) == NeedMore(len(wire))


@pytest.mark.parametrize(
    "data",
    [b"G", b"GET / HTTP/1.1\r\n", b"\x05\x01\x00", b"\x16\x02", b"\x80\x2e\x01\x03\x01"],
)
def test_not_tls_is_detected_early(data: bytes) -> None:
    with pytest.raises(NotTlsError):
        ClientHelloReader().feed(data)


def test_server_hello_is_not_a_client_hello() -> None:
    with pytest.raises(NotTlsError):
        ClientHelloReader().feed(b"\x16\x03\x03\x00\x10\x02")


def test_too_large_is_rejected_from_the_header() -> None:
    reader = ClientHelloReader(max_size=1000)
    with pytest.raises(ClientHelloTooLarge):
        reader.feed(b"\x16\x03\x01\x40\x00\x01\x00\x10\x00")


@pytest.mark.parametrize(
    ("wire", "what"),
    [
        (b"\x16\x03\x01\x00\x00", "empty handshake record"),
        (b"\x16\x03\x01\x40\x01", "exceeds"),
        (encode_handshake_records(make_hello(), max_fragment=50)[:55] + b"\x15\x03\x01", "type"),
    ],
)
def test_bad_records(wire: bytes, what: str) -> None:
    with pytest.raises(MalformedClientHello, match=what):
        ClientHelloReader().feed(wire)


@pytest.mark.parametrize(
    ("exts", "what"),
    [
        ([(0x0017, b""), (0x0017, b"")], "duplicate"),
        ([(0x0029, ALL_EXTENSIONS[-1][1]), (0x0017, b"")], "last"),
        ([(0x0017, b"x")], "empty"),
        ([(0x0010, b"\x00\x05\x02h2")], "needs"),
        ([(0x000A, b"\x00\x03\x00\x1d\x00")], "odd"),
        ([(0x0000, vec16(b"\x00" + vec16(b"")))], "host_name"),
        ([(0x0000, vec16(b"\x00" + vec16("bü".encode())))], "host_name"),
        ([(0x0000, vec16(b""))], "empty server_name_list"),
        (
            [(0x0000, vec16(b"\x00" + vec16(b"a.test") + b"\x00" + vec16(b"b.test")))],
            "more than one host_name",
        ),
        (
            [(0x0000, vec16(b"\x00" + vec16(b"a.test") + b"\x00" + vec16(b"a.test")))],
            "more than one host_name",
        ),
        ([(0x0000, vec16(b"\x07" + vec16(b"x") + b"\x07" + vec16(b"y")))], "name_type 7"),
        ([(0x0010, vec16(b""))], "empty protocol_name_list"),
        ([(0x0010, vec16(vec8(b"")))], "empty protocol name"),
        ([(0x0010, vec16(vec8(b"h2") + vec8(b"")))], "empty protocol name"),
        ([(0x001C, u16(10))], "below 64"),
        ([(0xFE0D, b"\x07")], "unknown type"),
        ([(0x002B, b"\x03\x03\x04\x03")], "odd"),
        ([(0x0029, vec16(b"") + vec16(b""))], "identities"),
        ([(0x0033, vec16(u16(29) + vec16(b"k")) + b"!")], "trailing"),
    ],
)
def test_malformed_extensions(exts: list[tuple[int, bytes]], what: str) -> None:
    with pytest.raises(MalformedClientHello, match=what):
        parse_client_hello_message(make_hello(exts))


def test_malformed_body_and_header() -> None:
    msg = make_hello([])
    with pytest.raises(MalformedClientHello):
        parse_client_hello_message(msg + b"x")  # longer than declared
    with pytest.raises(MalformedClientHello):
        parse_client_hello_message(msg[:-1])
    with pytest.raises(MalformedClientHello, match="cipher_suites"):
        body = u16(0x0303) + bytes(32) + vec8(b"") + vec16(b"") + vec8(b"\x00")
        parse_client_hello_message(b"\x01" + len(body).to_bytes(3, "big") + body)
    with pytest.raises(MalformedClientHello, match="session id"):
        body = u16(0x0303) + bytes(32) + vec8(b"s" * 33) + vec16(u16(1)) + vec8(b"\x00")
        parse_client_hello_message(b"\x01" + len(body).to_bytes(3, "big") + body)


def test_server_name_with_other_name_types_is_accepted() -> None:
    """Only repeats are refused: one host_name beside a (future) name type is fine."""
    body = vec16(b"\x00" + vec16(b"a.test") + b"\x07" + vec16(b"opaque"))
    hello = parse_client_hello_message(make_hello([(0x0000, body)]))
    assert hello.find(ServerName) == ServerName(((0, b"a.test"), (7, b"opaque")))
    assert hello.server_name == "a.test"


def test_parse_extension_is_public_and_typed() -> None:
    ext = parse_extension(0x0010, vec16(vec8(b"h2")))
    assert ext.value == Alpn((b"h2",))
    assert ext.name == "application_layer_protocol_negotiation"
    assert isinstance(parse_client_hello_message(make_hello()), ClientHello)
