"""PROXY protocol v1/v2 codec: spec examples, errors, incremental input, fuzzing, round trips."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rama_net import SocketAddress
from rama_proxy._haproxy_codec import (
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    AddressFamily,
    BadSignature,
    ChecksumMismatch,
    HeaderTooLarge,
    InvalidHeader,
    NeedMoreBytes,
    ProxyCommand,
    ProxyHeaderDecoder,
    ProxyProtocolError,
    ProxyProtocolHeader,
    SslInfo,
    Tlv,
    TlvOverrun,
    TlvType,
    TransportProtocol,
    UnixAddress,
    crc32c,
    detect_proxy_header,
    encode_v1,
    encode_v2,
    parse_proxy_header,
)

SRC4 = SocketAddress.parse("192.0.2.10:56324")
DST4 = SocketAddress.parse("198.51.100.1:443")
SRC6 = SocketAddress.parse("[2001:db8::1]:1234")
DST6 = SocketAddress.parse("[2001:db8::2]:80")


def parse(data: bytes, **kw: object) -> tuple[ProxyProtocolHeader, int]:
    result = parse_proxy_header(data, **kw)  # type: ignore[arg-type]
    assert not isinstance(result, NeedMoreBytes), result
    return result


# -- CRC32C ----------------------------------------------------------------------------------------
def test_crc32c_known_values() -> None:
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E


@given(st.binary(), st.binary())
def test_crc32c_continues(a: bytes, b: bytes) -> None:
    assert crc32c(b, crc32c(a)) == crc32c(a + b)


# -- detection -------------------------------------------------------------------------------------
def test_detect() -> None:
    assert detect_proxy_header(b"") is None
    assert detect_proxy_header(b"PRO") is None
    assert detect_proxy_header(b"PROXY ") is True
    assert detect_proxy_header(b"PROXY TCP4") is True
    assert detect_proxy_header(b"PROXX ") is False
    assert detect_proxy_header(b"POST / HTTP/1.1") is False
    assert detect_proxy_header(b"GET /") is False
    assert detect_proxy_header(b"\x16\x03\x01") is False
    assert detect_proxy_header(V2_SIGNATURE[:5]) is None
    assert detect_proxy_header(V2_SIGNATURE) is True
    assert detect_proxy_header(b"\r\n\r\nX") is False


# -- v1 --------------------------------------------------------------------------------------------
def test_v1_tcp4() -> None:
    data = b"PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n"
    header, n = parse(data)
    assert data[n:] == b"GET / HTTP/1.1\r\n"
    assert header == ProxyProtocolHeader(
        version=1,
        command=ProxyCommand.PROXY,
        family=AddressFamily.INET,
        protocol=TransportProtocol.STREAM,
        source=SRC4,
        destination=DST4,
    )
    assert header.encode() == data[:n]


def test_v1_tcp6() -> None:
    data = b"PROXY TCP6 2001:db8::1 2001:db8::2 1234 80\r\n"
    header, n = parse(data)
    assert n == len(data)
    assert (header.family, header.source, header.destination) == (AddressFamily.INET6, SRC6, DST6)
    assert encode_v1(SRC6, DST6) == data


def test_v1_unknown() -> None:
    for line in (b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"):
        header, n = parse(line + b"rest")
        assert n == len(line)
        assert header.source is None
        assert header.family is AddressFamily.UNSPEC
    assert encode_v1(None, None) == b"PROXY UNKNOWN\r\n"


def test_v1_longest_line_fits() -> None:
    ip = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    line = f"PROXY UNKNOWN {ip} {ip} 65535 65535\r\n".encode()
    assert len(line) == V1_MAX_LENGTH
    assert parse(line)[1] == V1_MAX_LENGTH
    line6 = f"PROXY TCP6 {ip} {ip} 65535 65535\r\n".encode()
    assert parse(line6)[0].source == SocketAddress(ipaddress.IPv6Address(ip), 65535)


def test_v1_mixed_families_encode_as_mapped_tcp6() -> None:
    line = encode_v1(SRC4, DST6)
    assert line == b"PROXY TCP6 ::ffff:c000:20a 2001:db8::2 56324 80\r\n"
    assert parse(line)[0].source == SocketAddress(ipaddress.IPv6Address("::ffff:192.0.2.10"), 56324)


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 192.0.2.10 198.51.100.1 56324\r\n",  # missing a field
        b"PROXY TCP4 192.0.2.10 198.51.100.1 56324 443 x\r\n",  # one too many
        b"PROXY TCP4  192.0.2.10 198.51.100.1 56324 443\r\n",  # double space
        b"PROXY TCP5 192.0.2.10 198.51.100.1 56324 443\r\n",
        b"PROXY tcp4 192.0.2.10 198.51.100.1 56324 443\r\n",
        b"PROXY TCP4 2001:db8::1 198.51.100.1 56324 443\r\n",  # v6 in TCP4
        b"PROXY TCP6 192.0.2.10 2001:db8::2 1 2\r\n",  # v4 in TCP6
        b"PROXY TCP4 192.0.2.256 198.51.100.1 1 2\r\n",
        b"PROXY TCP4 192.0.2.010 198.51.100.1 1 2\r\n",  # leading zero
        b"PROXY TCP4 192.0.2.10 198.51.100.1 65536 443\r\n",
        b"PROXY TCP4 192.0.2.10 198.51.100.1 -1 443\r\n",
        b"PROXY TCP4 192.0.2.10 198.51.100.1 +1 443\r\n",
        b"PROXY TCP4 192.0.2.10 198.51.100.1 0443 443\r\n",
        b"PROXY TCP4 192.0.2.10 198.51.100.1 \xd9\xa1 443\r\n",  # a non-ASCII digit
        b"PROXY TCP6 fe80::1%eth0 2001:db8::2 1 2\r\n",  # scope id
        b"PROXY TCP4 192.0.2.10 198.51.100.1 1 2\n",  # LF without CR
        b"PROXY TCP4 192.0.2.10\r198.51.100.1 1 2\r\n",  # stray CR
        b"PROXY \r\n",
    ],
)
def test_v1_invalid(line: bytes) -> None:
    with pytest.raises(InvalidHeader):
        parse_proxy_header(line)


def test_v1_too_long() -> None:
    with pytest.raises(HeaderTooLarge):
        parse_proxy_header(b"PROXY UNKNOWN " + b"x" * 200)
    # exactly 107 bytes without CRLF: cannot become a header any more
    with pytest.raises(HeaderTooLarge):
        parse_proxy_header(b"PROXY UNKNOWN".ljust(V1_MAX_LENGTH, b"x"))
    # 106 bytes and a CR: one byte more may still complete it
    assert parse_proxy_header(b"PROXY UNKNOWN".ljust(V1_MAX_LENGTH - 2, b"x") + b"\r") == (
        NeedMoreBytes(1)
    )


def test_bad_signature() -> None:
    for data in (
        b"GET / HTTP/1.1\r\n",
        b"\x16\x03\x01\x02\x00",
        b"PROXZ",
        b"\r\n\r\n\x00\r\nQUIX\n",
    ):
        with pytest.raises(BadSignature):
            parse_proxy_header(data)


# -- v2 --------------------------------------------------------------------------------------------
def v2(fam: int, body: bytes, ver_cmd: int = 0x21) -> bytes:
    return V2_SIGNATURE + struct.pack("!BBH", ver_cmd, fam, len(body)) + body


def test_v2_inet_stream() -> None:
    body = bytes([192, 0, 2, 10, 198, 51, 100, 1]) + struct.pack("!HH", 56324, 443)
    data = v2(0x11, body)
    header, n = parse(data + b"app")
    assert n == len(data) == 28
    assert header.version == 2
    assert header.command is ProxyCommand.PROXY
    assert header.family is AddressFamily.INET
    assert header.protocol is TransportProtocol.STREAM
    assert (header.source, header.destination) == (SRC4, DST4)
    assert encode_v2(SRC4, DST4) == data
    assert header.encode() == data


def test_v2_inet6_dgram() -> None:
    data = encode_v2(SRC6, DST6, protocol=TransportProtocol.DGRAM)
    assert data[13] == 0x22
    assert len(data) == 16 + 36
    header, _ = parse(data)
    assert header.protocol is TransportProtocol.DGRAM
    assert (header.source, header.destination) == (SRC6, DST6)


def test_v2_mixed_families_are_mapped() -> None:
    header, _ = parse(encode_v2(SRC4, DST6))
    assert header.family is AddressFamily.INET6
    assert header.source == SocketAddress(ipaddress.IPv6Address("::ffff:192.0.2.10"), 56324)


def test_v2_unix() -> None:
    src, dst = UnixAddress(b"/run/client.sock"), UnixAddress(b"/run/haproxy.sock")
    data = encode_v2(src, dst)
    assert len(data) == 16 + 216
    assert data[13] == 0x31
    header, _ = parse(data)
    assert (header.source, header.destination) == (src, dst)
    assert str(src) == "unix:/run/client.sock"
    with pytest.raises(ValueError, match="108"):
        UnixAddress(b"x" * 109)
    with pytest.raises(ValueError, match="unix"):
        encode_v2(src, DST4)


def test_v2_unspec_and_local() -> None:
    header, n = parse(encode_v2(None, None))
    assert n == 16
    assert header.family is AddressFamily.UNSPEC
    assert header.source is None
    # LOCAL: the addresses sent are to be ignored
    local = encode_v2(SRC4, DST4, command=ProxyCommand.LOCAL)
    assert local[12] == 0x20
    header, _ = parse(local)
    assert header.is_local
    assert header.source is None
    assert header.family is AddressFamily.INET
    # haproxy's health check: LOCAL, UNSPEC, no body
    header, _ = parse(V2_SIGNATURE + b"\x20\x00\x00\x00")
    assert header.is_local


def test_v2_tlvs_typed_accessors_and_unknown_kept() -> None:
    ssl = SslInfo.build(
        version="TLSv1.3",
        cn="client.example",
        cipher="TLS_AES_128_GCM_SHA256",
        sig_alg="SHA256",
        key_alg="RSA2048",
        client=0x07,
        extra=[Tlv(0x2F, b"custom-sub")],
    )
    tlvs = [
        Tlv.alpn("h2"),
        Tlv.authority("www.example.com"),
        Tlv.unique_id(b"\x01\x02id"),
        ssl.to_tlv(),
        Tlv.netns("blue"),
        Tlv.noop(3),
        Tlv(0xE0, b"gcp-psc"),
        Tlv(0xEA, b"\x01vpce-123"),
    ]
    data = encode_v2(SRC4, DST4, tlvs=tlvs, crc=True)
    header, n = parse(data)
    assert n == len(data)
    assert header.alpn == b"h2"
    assert header.authority == "www.example.com"
    assert header.unique_id == b"\x01\x02id"
    assert header.netns == "blue"
    assert header.crc32c is not None
    assert header.crc32c == int.from_bytes(data[-4:], "big")
    assert header.tlv(0xE0) == b"gcp-psc"
    assert header.tlvs_of(0xEA) == [b"\x01vpce-123"]
    assert header.tlv(0x99) is None
    assert [t.type for t in header.tlvs] == [1, 2, 5, 0x20, 0x30, 4, 0xE0, 0xEA, 3]
    assert header.tlvs[6].kind is None
    assert header.tlvs[0].kind is TlvType.ALPN
    got = header.ssl
    assert got is not None
    assert got == ssl
    assert (got.version, got.cn, got.cipher, got.sig_alg, got.key_alg) == (
        "TLSv1.3",
        "client.example",
        "TLS_AES_128_GCM_SHA256",
        "SHA256",
        "RSA2048",
    )
    assert got.client_ssl
    assert got.client_cert_conn
    assert got.client_cert_sess
    assert got.verified
    assert got.tlvs[-1] == Tlv(0x2F, b"custom-sub")
    # re-encoding with crc=True replaces the checksum (does not add a second one)
    assert header.encode(crc=True) == data


def test_ssl_flags_and_verify() -> None:
    info = SslInfo.decode(SslInfo(client=0x01, verify=7).encode())
    assert info.client_ssl
    assert not info.client_cert_conn
    assert not info.verified
    assert info.version is None
    assert info.cn is None


def test_v2_crc_detects_any_flip() -> None:
    data = bytearray(encode_v2(SRC4, DST4, tlvs=[Tlv.authority("a.example")], crc=True))
    # the address block, the authority's value and the checksum itself
    values = [*range(16, 28), *range(31, 40), *range(len(data) - 4, len(data))]
    for i in range(16, len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 0x01
        if i == len(data) - 7:
            # the CRC TLV's kind turned into another: no checksum left to verify
            # (what ProxyProtocolLayer(require_checksum=True) is for)
            assert parse(bytes(flipped))[0].crc32c is None
            continue
        # elsewhere (the length, a TLV's type or length) it is another typed error
        expected = ChecksumMismatch if i in values else ProxyProtocolError
        with pytest.raises(expected):
            parse_proxy_header(bytes(flipped))
    # unverified: the header is taken as sent
    flipped = bytearray(data)
    flipped[20] ^= 0xFF
    header, _ = parse(bytes(flipped), verify_checksum=False)
    assert header.crc32c is not None


def test_v2_crc_wrong_length() -> None:
    with pytest.raises(InvalidHeader, match="must be 4"):
        parse_proxy_header(encode_v2(SRC4, DST4, tlvs=[Tlv(TlvType.CRC32C, b"\x00\x00")]))


@pytest.mark.parametrize(
    "tail",
    [
        b"\x01",  # stray byte where a TLV was due
        b"\x01\x00",
        b"\x02\x00\x05abcd",  # claims 5, has 4
        b"\x02\x00\x01a\x05\xff\xff",  # a good one, then one claiming 65535
        b"\x20\x00\x03\x01\x00\x00",  # SSL shorter than its 5 fixed bytes
        b"\x20\x00\x09\x01\x00\x00\x00\x00\x22\x00\x09x",  # SSL sub-TLV overrun
    ],
)
def test_v2_tlv_overrun(tail: bytes) -> None:
    body = bytes(12) + tail
    with pytest.raises(TlvOverrun):
        parse_proxy_header(v2(0x11, body))


@pytest.mark.parametrize(
    ("ver_cmd", "fam", "match"),
    [
        (0x11, 0x11, "version 1"),
        (0x31, 0x11, "version 3"),
        (0x22, 0x11, "command"),
        (0x2F, 0x11, "command"),
        (0x21, 0x41, "family"),
        (0x21, 0x13, "transport"),
    ],
)
def test_v2_bad_fields_fail_early(ver_cmd: int, fam: int, match: str) -> None:
    data = V2_SIGNATURE + bytes([ver_cmd, fam])
    with pytest.raises(InvalidHeader, match=match):
        parse_proxy_header(data)  # decided before the length is even in


def test_v2_short_address_block() -> None:
    with pytest.raises(InvalidHeader, match="needs 12"):
        parse_proxy_header(v2(0x11, bytes(11)))
    with pytest.raises(InvalidHeader, match="needs 36"):
        parse_proxy_header(v2(0x21, bytes(12)))


def test_v2_too_large() -> None:
    big = encode_v2(SRC4, DST4, tlvs=[Tlv(0xE1, bytes(5000))])
    with pytest.raises(HeaderTooLarge):
        parse_proxy_header(big[:16])  # refused from the fixed part alone
    assert parse(big, max_header_size=65551)[1] == len(big)
    with pytest.raises(ValueError, match="65535"):
        encode_v2(SRC4, DST4, tlvs=[Tlv(0xE1, bytes(65535))])


def test_tlv_bounds() -> None:
    with pytest.raises(ValueError, match="out of range"):
        Tlv(256, b"")
    with pytest.raises(ValueError, match="65535"):
        Tlv(1, bytes(65536))
    with pytest.raises(ValueError, match="128"):
        Tlv.unique_id(bytes(129))
    with pytest.raises(ValueError, match="both"):
        encode_v2(SRC4, None)


# -- incremental input ----------------------------------------------------------------------
SAMPLES = [
    b"PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\n",
    b"PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n",
    b"PROXY TCP6 :: :: 0 0\r\n",
    b"PROXY TCP6 2001:db8::1 2001:db8::2 1234 80\r\n",
    b"PROXY UNKNOWN\r\n",
    b"PROXY UNKNOWN whatever follows\r\n",
    encode_v2(
        SRC6, DST6, tlvs=[Tlv.alpn("h2"), SslInfo.build(version="TLSv1.2").to_tlv()], crc=True
    ),
    encode_v2(None, None, command=ProxyCommand.LOCAL),
]


@pytest.mark.parametrize("data", SAMPLES)
def test_every_prefix_needs_more(data: bytes) -> None:
    for i in range(len(data)):
        result = parse_proxy_header(data[:i])
        assert isinstance(result, NeedMoreBytes), i
        assert 1 <= result.hint <= len(data) - i
    assert parse(data)[1] == len(data)


@pytest.mark.parametrize(
    "prefix",
    [
        b"PROXY TCPX",
        b"PROXY X",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3",
        b"PROXY TCP4 1.2.3.4\rx",
    ],
)
def test_v1_fails_before_the_crlf(prefix: bytes) -> None:
    with pytest.raises(InvalidHeader):
        parse_proxy_header(prefix)


@pytest.mark.parametrize("data", SAMPLES)
def test_decoder_byte_by_byte(data: bytes) -> None:
    decoder = ProxyHeaderDecoder()
    for i in range(len(data)):
        assert decoder.feed(data[i : i + 1]) is None
        assert decoder.needed > 0
        if i == len(data) - 2:
            break
    assert decoder.feed(data[len(data) - 1 :] + b"hello") is not None
    assert decoder.remainder == b"hello"
    assert decoder.needed == 0
    assert decoder.header == parse(data)[0]
    decoder.feed(b" world")
    assert decoder.remainder == b"hello world"


# -- fuzzing and round trips ----------------------------------------------------------------
ipv4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
ipv6 = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1))
ports = st.integers(0, 65535)
addr4 = st.builds(SocketAddress, ipv4, ports)
addr6 = st.builds(SocketAddress, ipv6, ports)
unix = st.builds(UnixAddress, st.binary(max_size=108).map(lambda b: b.replace(b"\x00", b"x")))
tlv = st.builds(
    Tlv,
    st.integers(0, 255).filter(lambda t: t not in (TlvType.CRC32C, TlvType.SSL)),
    st.binary(max_size=64),
)
ssl_tlv = st.builds(
    SslInfo.build,
    version=st.none() | st.sampled_from(["TLSv1.2", "TLSv1.3"]),
    cn=st.none() | st.text(st.characters(codec="utf-8"), max_size=20),
    cipher=st.none() | st.sampled_from(["TLS_AES_128_GCM_SHA256", "ECDHE-RSA-AES256-GCM-SHA384"]),
    client=st.integers(0, 7),
    verify=st.integers(0, 2**32 - 1),
).map(SslInfo.to_tlv)
pairs = st.one_of(
    st.tuples(addr4, addr4),
    st.tuples(addr6, addr6),
    st.tuples(unix, unix),
    st.just((None, None)),
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    pairs,
    st.sampled_from(list(TransportProtocol)),
    st.lists(tlv | ssl_tlv, max_size=6),
    st.booleans(),
)
def test_v2_round_trip(
    addrs: tuple[object, object], proto: TransportProtocol, tlvs: list[Tlv], crc: bool
) -> None:
    src, dst = addrs
    data = encode_v2(src, dst, protocol=proto, tlvs=tlvs, crc=crc)  # type: ignore[arg-type]
    header, n = parse(data + b"tail", max_header_size=65551)
    assert n == len(data)
    assert (header.source, header.destination) == (src, dst)
    assert list(header.tlvs[: len(tlvs)]) == tlvs
    assert (header.crc32c is not None) == crc
    if src is not None:
        assert header.protocol is proto
    assert header.encode(crc=crc) == data
    decoder = ProxyHeaderDecoder(max_header_size=65551)
    for i in range(0, len(data), 7):
        decoder.feed(data[i : i + 7])
    assert decoder.header == header


@given(st.one_of(st.tuples(addr4, addr4), st.tuples(addr6, addr6)))
def test_v1_round_trip(addrs: tuple[SocketAddress, SocketAddress]) -> None:
    line = encode_v1(*addrs)
    assert len(line) <= V1_MAX_LENGTH
    header, n = parse(line)
    assert n == len(line)
    assert (header.source, header.destination) == addrs
    assert header.encode() == line
    # the hint never asks for a byte past the line (the layer reads exactly that)
    for i in range(len(line)):
        result = parse_proxy_header(line[:i])
        assert isinstance(result, NeedMoreBytes)
        assert result.hint <= len(line) - i


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    try:
        result = parse_proxy_header(data, max_header_size=65551)
    except ProxyProtocolError:
        return
    if isinstance(result, NeedMoreBytes):
        assert result.hint >= 1
    else:
        assert 0 < result[1] <= len(data)


@settings(max_examples=500)
@given(st.sampled_from(SAMPLES), st.data())
def test_fuzz_mutated_headers(sample: bytes, data: st.DataObject) -> None:
    """Flip, cut or extend real headers: only typed errors, never a crash or a wrong length."""
    buf = bytearray(sample)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    buf += data.draw(st.binary(max_size=20))
    try:
        result = parse_proxy_header(bytes(buf))
    except ProxyProtocolError:
        return
    if not isinstance(result, NeedMoreBytes):
        header, n = result
        assert n <= len(buf)
        assert header.version in (1, 2)


@given(st.binary(min_size=0, max_size=80))
def test_fuzz_tlv_blocks(body: bytes) -> None:
    """Arbitrary TLV areas: parsed exactly, or TlvOverrun/InvalidHeader, never anything else."""
    data = v2(0x11, bytes(12) + body)
    try:
        header, n = parse(data)
    except InvalidHeader:
        return
    assert n == len(data)
    assert sum(3 + len(t.value) for t in header.tlvs) == len(body)
