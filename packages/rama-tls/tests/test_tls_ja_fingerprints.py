"""JA3/JA4 against the FoxIO specification's worked example and edge cases."""

from __future__ import annotations

import hashlib

import pytest
from aioquic import tls as quic_tls
from aioquic.buffer import Buffer
from ja4plus.fingerprinters.ja4 import generate_ja4, get_raw_fingerprint
from ja4plus.utils.tls_utils import parse_tls_handshake

from rama_tls import (
    ClientHello,
    Ja4Transport,
    encode_client_hello_message,
    encode_handshake_records,
    ja3,
    ja4,
    parse_client_hello_message,
)
from rama_tls.extensions import parse_extension
from rama_tls.ja4 import ja4_alpn_chars

SPEC_CIPHERS = (0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8)
SPEC_CIPHERS += (0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035)
SPEC_EXTS = (0x001B, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002D, 0x000D, 0x0005, 0x0023)
SPEC_EXTS += (0x0012, 0x002B, 0xFF01, 0x000B, 0x000A, 0x0015)
SPEC_SIGS = (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601)


def u16(v: int) -> bytes:
    return v.to_bytes(2, "big")


BODIES = {
    0x0000: u16(14) + b"\x00" + u16(11) + b"example.com",
    0x0010: u16(3) + b"\x02h2",
    0x000D: u16(2 * len(SPEC_SIGS)) + b"".join(u16(s) for s in SPEC_SIGS),
    0x002B: b"\x04\x0a\x0a\x03\x04",
    0x0033: u16(0),
    0x4469: u16(3) + b"\x02h2",
    0x0017: b"",
    0x002D: b"\x01\x01",
    0x0005: b"\x01" + u16(0) + u16(0),
    0x0023: b"",
    0x0012: b"",
    0xFF01: b"\x00",
    0x000B: b"\x01\x00",
    0x000A: u16(6) + u16(0x0A0A) + u16(29) + u16(23),
    0x0015: bytes(5),
    0x001B: b"\x02\x00\x02",
}


def spec_hello(*, grease: bool = False, exts: tuple[int, ...] = SPEC_EXTS) -> ClientHello:
    ciphers = ((0x0A0A,) if grease else ()) + SPEC_CIPHERS
    ext_list = [parse_extension(e, BODIES[e]) for e in exts]
    if grease:
        ext_list = [parse_extension(0x1A1A, b""), *ext_list, parse_extension(0xFAFA, b"\x00")]
    return ClientHello(0x0303, bytes(32), b"", ciphers, (0,), tuple(ext_list))


def test_spec_example_all_four_variants() -> None:
    fp = ja4(spec_hello())
    assert fp.ja4 == "t13d1516h2_8daaf6152771_e5627efa2ab1"
    assert fp.ja4_o == "t13d1516h2_acb858a92679_18f69afefd3d"
    assert fp.ja4_r == (
        "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_"
        "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_"
        "0403,0804,0401,0503,0805,0501,0806,0601"
    )
    assert fp.ja4_ro == (
        "t13d1516h2_1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035_"
        "001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015_"
        "0403,0804,0401,0503,0805,0501,0806,0601"
    )
    assert str(fp) == fp.ja4


def test_grease_is_ignored_everywhere() -> None:
    assert ja4(spec_hello(grease=True)) == ja4(spec_hello())
    plain, greased = ja3(spec_hello()), ja3(spec_hello(grease=True))
    assert plain == greased
    assert "2570" not in greased.string
    assert "64250" not in greased.string
    assert greased.hash == hashlib.md5(greased.string.encode()).hexdigest()


def test_ja3_string_layout() -> None:
    fp = ja3(spec_hello())
    version, ciphers, exts, groups, formats = fp.string.split(",")
    assert version == "771"
    assert ciphers.split("-")[:3] == ["4865", "4866", "4867"]
    assert exts.split("-")[:2] == ["27", "0"]
    assert (groups, formats) == ("29-23", "0")
    assert str(fp) == fp.hash
    assert len(fp.hash) == 32


def test_no_sni_no_alpn_no_sigalgs() -> None:
    exts = tuple(e for e in SPEC_EXTS if e not in (0x0000, 0x0010, 0x000D))
    fp = ja4(spec_hello(exts=exts))
    assert fp.ja4.startswith("t13i151300_")
    assert fp.ja4_r.endswith("002d,0033,4469,ff01")  # no trailing underscore


def test_empty_lists_hash_to_zeros() -> None:
    hello = ClientHello(0x0303, bytes(32), b"", (), (0,), ())
    fp = ja4(hello)
    assert fp.ja4 == "t12i000000_000000000000_000000000000"
    assert fp.ja4_r == "t12i000000__"


def test_version_mapping_and_transport_override() -> None:
    sv = parse_extension(0x002B, b"\x02\xfe\xfd")
    hello = ClientHello(0x0303, bytes(32), b"", (0x002F,), (0,), (sv,))
    assert ja4(hello, Ja4Transport.DTLS).ja4.startswith("dd2i")
    for legacy, text in [(0x0301, "10"), (0x0300, "s3"), (0x0302, "11"), (0x9999, "00")]:
        old = ClientHello(legacy, bytes(32), b"", (0x002F,), (0,), ())
        assert ja4(old).ja4[1:3] == text


@pytest.mark.parametrize(
    ("alpn", "chars"),
    [
        (b"h2", "h2"),
        (b"http/1.1", "h1"),
        (b"h", "hh"),
        (b"", "00"),
        (None, "00"),
        (b"\xab", "ab"),
        (b"\xab\xcd", "ad"),
        (b"\x30\xab", "3b"),
        (b"\x30\x31\xab\xcd", "3d"),
        (b"\x30\xab\xcd\x31", "01"),
    ],
)
def test_alpn_characters_per_spec(alpn: bytes | None, chars: str) -> None:
    assert ja4_alpn_chars(alpn) == chars


def test_counts_cap_at_99() -> None:
    hello = ClientHello(0x0303, bytes(32), b"", tuple(range(1, 150)), (0,), ())
    assert ja4(hello).ja4[4:6] == "99"


def _aioquic_client_hello(alpn: list[str]) -> bytes:
    ctx = quic_tls.Context(is_client=True, alpn_protocols=alpn, server_name="example.test")
    ctx.handshake_extensions.append(
        (quic_tls.ExtensionType.QUIC_TRANSPORT_PARAMETERS, b"\x01\x02\x44\x00")
    )
    buffers = {epoch: Buffer(capacity=8192) for epoch in quic_tls.Epoch}
    ctx.handle_message(b"", buffers)
    return buffers[quic_tls.Epoch.INITIAL].data


def test_quic_client_hello_from_aioquic_matches_ja4plus() -> None:
    message = _aioquic_client_hello(["h3"])
    hello = parse_client_hello_message(message)
    fp = ja4(hello)
    assert fp.ja4.startswith("q13d")
    assert fp.ja4[8:10] == "h3"
    assert ja4(hello, Ja4Transport.TCP).ja4[0] == "t"
    info = parse_tls_handshake(encode_handshake_records(encode_client_hello_message(hello)))
    assert info is not None
    info["is_quic"] = True
    assert fp.ja4 == generate_ja4(info)
    assert fp.ja4_o == generate_ja4(info, original_order=True)
    assert fp.ja4_r == get_raw_fingerprint(info)
    assert fp.ja4_ro == get_raw_fingerprint(info, original_order=True)
