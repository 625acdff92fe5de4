"""JA3/JA4 against the FoxIO specification's worked example and edge cases."""

from __future__ import annotations

import hashlib

import pytest
from aioquic import tls as quic_tls
from aioquic.buffer import Buffer
from hypothesis import given
from hypothesis import strategies as st
from ja4plus.fingerprinters.ja4 import compute_alpn_value, generate_ja4, get_raw_fingerprint
from ja4plus.utils.tls_utils import parse_tls_handshake

from rama_tls import (
    ClientHello,
    Ja4,
    Ja4Transport,
    encode_client_hello_message,
    encode_handshake_records,
    ja3,
    ja4,
    parse_client_hello_message,
)
from rama_tls._extensions import parse_extension
from rama_tls._ja4 import ja4_alpn_chars

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
        (b"\x20", "20"),
        (b"\x20\x61", "21"),
        (b"\x61\x20", "60"),
    ],
)
def test_alpn_characters_per_spec(alpn: bytes | None, chars: str) -> None:
    """Every example of the specification's "ALPN Extension Value" section."""
    assert ja4_alpn_chars(alpn) == chars


def ja4plus_of(hello: ClientHello) -> Ja4:
    """All four fingerprints by the independent ``ja4plus`` implementation."""
    info = parse_tls_handshake(encode_handshake_records(encode_client_hello_message(hello)))
    assert info is not None
    return Ja4(
        generate_ja4(info) or "",
        get_raw_fingerprint(info) or "",
        generate_ja4(info, original_order=True) or "",
        get_raw_fingerprint(info, original_order=True) or "",
    )


def with_extension(ext_type: int, body: bytes, hello: ClientHello | None = None) -> ClientHello:
    """``hello`` (default: the spec example) with one extension's body replaced."""
    base = hello or spec_hello()
    exts = tuple(
        parse_extension(e.type, body) if e.type == ext_type else e for e in base.extensions
    )
    return ClientHello(0x0303, bytes(32), b"", base.cipher_suites, (0,), exts)


def alpn_body(*protocols: bytes) -> bytes:
    names = b"".join(bytes([len(p)]) + p for p in protocols)
    return u16(len(names)) + names


# first and last bytes ASCII letters or digits: the spec, FoxIO's programs and ja4plus agree
AGREED_ALPN = [
    b"h2",
    b"http/1.1",
    b"h3",
    b"h",
    b"7",
    b"spdy/3.1",
    b"acme-tls/1",
    b"\x30\xab\xcd\x31",
    b"a\xffz",
]


@pytest.mark.parametrize("alpn", AGREED_ALPN)
def test_alpn_agrees_with_ja4plus(alpn: bytes) -> None:
    assert ja4_alpn_chars(alpn) == compute_alpn_value(alpn)
    hello = with_extension(0x0010, alpn_body(alpn, b"http/1.1"))
    assert ja4(hello) == ja4plus_of(hello)


_ALNUM = st.sampled_from(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


@given(_ALNUM, st.binary(max_size=12), _ALNUM, st.booleans())
def test_alpn_with_alphanumeric_ends_agrees_with_ja4plus(
    first: int, middle: bytes, last: int, single: bool
) -> None:
    alpn = bytes([first]) if single else bytes([first]) + middle + bytes([last])
    assert ja4_alpn_chars(alpn) == compute_alpn_value(alpn)


@pytest.mark.parametrize(
    ("alpn", "ours", "why"),
    [
        # FoxIO's tls-non-ascii-alpn.pcapng vector: their programs and ja4plus print "99"
        (b"\xba\xad", "bd", "non-ASCII ends: hex per spec; ja4plus writes 9 per byte"),
        (b"\xab", "ab", "spec example; ja4plus: 99"),
        (b"\x20", "20", "spec example (0x20); ja4plus prints the space twice"),
        (b"\x20\x61", "21", "spec example; ja4plus: ' a'"),
        (b"\x61\x20", "60", "spec example; ja4plus: 'a '"),
        (b"/x/", "2f", "printable but not alphanumeric: hex per spec; ja4plus: '//'"),
        (b"h2\x00", "60", "control byte: hex per spec; ja4plus: 99"),
    ],
)
def test_alpn_where_ja4plus_differs_follows_the_spec(alpn: bytes, ours: str, why: str) -> None:
    """Pinned: rama follows the specification text, ja4plus (and FoxIO's tools) do not."""
    assert ja4_alpn_chars(alpn) == ours, why
    assert compute_alpn_value(alpn) != ours, f"ja4plus now agrees ({why}): merge into AGREED"
    # everything but the two ALPN characters still matches
    hello = with_extension(0x0010, alpn_body(alpn))
    mine, theirs = ja4(hello), ja4plus_of(hello)
    for a, b in zip(
        (mine.ja4, mine.ja4_r, mine.ja4_o, mine.ja4_ro),
        (theirs.ja4, theirs.ja4_r, theirs.ja4_o, theirs.ja4_ro),
        strict=True,
    ):
        assert a[8:10] == ours
        assert a[:8] + a[10:] == b[:8] + b[10:]


def test_ja4_o_when_the_only_extensions_are_sni_and_alpn() -> None:
    """Pinned: JA4_o hashes the original-order list JA4_ro shows (``0000,0010``).

    FoxIO's Rust implementation does the same. FoxIO's Python implementation and
    ja4plus print twelve zeros: they take the empty-list sentinel from the sorted
    list, which drops SNI and ALPN, although their own JA4_ro shows ``0000,0010``.
    """
    exts = (parse_extension(0x0000, BODIES[0x0000]), parse_extension(0x0010, BODIES[0x0010]))
    hello = ClientHello(0x0303, bytes(32), b"", (0x1301, 0xC02F), (0,), exts)
    fp = ja4(hello)
    ciphers = hashlib.sha256(b"1301,c02f").hexdigest()[:12]
    assert fp.ja4 == f"t12d0202h2_{ciphers}_000000000000"
    assert fp.ja4_r == "t12d0202h2_1301,c02f_"
    assert fp.ja4_ro == "t12d0202h2_1301,c02f_0000,0010"
    assert fp.ja4_o == f"t12d0202h2_{ciphers}_{hashlib.sha256(b'0000,0010').hexdigest()[:12]}"

    theirs = ja4plus_of(hello)
    assert (theirs.ja4, theirs.ja4_r, theirs.ja4_ro) == (fp.ja4, fp.ja4_r, fp.ja4_ro)
    assert theirs.ja4_o == f"t12d0202h2_{ciphers}_000000000000"  # the difference, pinned


def test_grease_inside_signature_algorithms_is_dropped() -> None:
    greased = (0x0A0A, *SPEC_SIGS[:3], 0x1A1A, *SPEC_SIGS[3:], 0xFAFA)
    body = u16(2 * len(greased)) + b"".join(u16(v) for v in greased)
    hello = with_extension(0x000D, body)
    assert hello.signature_algorithms == greased  # kept as sent
    fp = ja4(hello)
    assert fp == ja4(spec_hello())
    sigs = ",".join(f"{v:04x}" for v in SPEC_SIGS)
    assert fp.ja4_r.endswith(f"_{sigs}")
    assert fp.ja4_ro.endswith(f"_{sigs}")
    for grease in ("0a0a", "1a1a", "fafa"):
        assert grease not in fp.ja4_r
        assert grease not in fp.ja4_ro
    assert fp == ja4plus_of(hello)


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


# -- one shape for every fingerprint -------------------------------------------------------------
def test_ja3_and_ja4_share_the_fingerprint_shape() -> None:
    from rama_tls import Fingerprint

    hello = spec_hello(grease=True)
    j3, j4 = ja3(hello), ja4(hello)
    for fp in (j3, j4):
        assert isinstance(fp, Fingerprint)
        assert str(fp) == fp.text
    # JA3: the canonical fingerprint is the MD5; raw is the string (kept as .string)
    assert j3.text == j3.hash == hashlib.md5(j3.string.encode()).hexdigest()
    assert j3.raw == j3.string
    assert j3.string.startswith("771,")
    # JA4: text and hash are ja4, raw is ja4_r; the four renderings stay
    assert j4.text == j4.hash == j4.ja4
    assert j4.raw == j4.ja4_r
    assert {j4.ja4, j4.ja4_r, j4.ja4_o, j4.ja4_ro} >= {j4.text, j4.raw}
    assert j4.ja4.split("_")[0] == j4.ja4_r.split("_")[0]
