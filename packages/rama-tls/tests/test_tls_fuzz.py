"""Hypothesis fuzzing of the ClientHello reader: only typed errors, never a crash.

Inputs that ever crashed the parser are kept in ``corpus/`` and replayed here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rama_tls import (
    ClientHello,
    ClientHelloComplete,
    ClientHelloError,
    ClientHelloReader,
    NeedMore,
    encode_client_hello_message,
    encode_handshake_records,
    ja3,
    ja4,
    parse_client_hello_message,
)
from rama_tls.extensions import ExtensionType, parse_extension

CORPUS = Path(__file__).parent / "corpus"
# RAMA_FUZZ_EXAMPLES=20000 runs a longer campaign locally; CI keeps the default.
FUZZ = settings(
    max_examples=int(os.environ.get("RAMA_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _u16(v: int) -> bytes:
    return v.to_bytes(2, "big")


def _seed() -> bytes:
    exts = [
        (0x0000, b"\x00\x0c\x00\x00\x09localhost"),
        (0x0010, b"\x00\x03\x02h2"),
        (0x002B, b"\x02\x03\x04"),
        (0x000D, b"\x00\x02\x04\x03"),
        (0x0033, b"\x00\x06\x00\x1d\x00\x02ab"),
    ]
    block = b"".join(_u16(t) + _u16(len(d)) + d for t, d in exts)
    body = b"\x03\x03" + bytes(32) + b"\x00\x00\x04\x13\x01\x0a\x0a\x01\x00"
    body += _u16(len(block)) + block
    return b"\x01" + len(body).to_bytes(3, "big") + body


SEED = _seed()


def _feed_all(data: bytes, chunk: int) -> NeedMore | ClientHelloComplete:
    reader = ClientHelloReader(max_size=4096)
    result: NeedMore | ClientHelloComplete = NeedMore(5)
    for i in range(0, max(len(data), 1), chunk):
        result = reader.feed(data[i : i + chunk])
        if isinstance(result, ClientHelloComplete):
            break
    return result


def _exercise(data: bytes, chunk: int = 7) -> None:
    try:
        result = _feed_all(data, chunk)
    except ClientHelloError:
        return
    if isinstance(result, ClientHelloComplete):
        hello = result.client_hello
        assert result.consumed <= len(data)
        ja3(hello)
        ja4(hello)
        again = encode_client_hello_message(hello)
        assert again == hello.raw
        assert parse_client_hello_message(again, record_version=hello.record_version) == hello


def test_seed_is_valid() -> None:
    hello = parse_client_hello_message(SEED)
    assert hello.server_name == "localhost"


@FUZZ
@given(st.binary(max_size=600), st.integers(1, 64))
def test_random_bytes(data: bytes, chunk: int) -> None:
    _exercise(data, chunk)


@FUZZ
@given(st.binary(max_size=600), st.integers(1, 64))
def test_random_bytes_behind_a_handshake_header(data: bytes, chunk: int) -> None:
    _exercise(b"\x16\x03\x01" + _u16(len(data) + 4) + b"\x01" + len(data).to_bytes(3, "big") + data)


@FUZZ
@given(
    st.lists(st.tuples(st.integers(0, len(SEED) - 1), st.integers(0, 255)), max_size=8),
    st.integers(0, len(SEED)),
    st.integers(1, 200),
)
def test_mutated_valid_hello(flips: list[tuple[int, int]], cut: int, fragment: int) -> None:
    msg = bytearray(SEED)
    for pos, value in flips:
        msg[pos] = value
    wire = encode_handshake_records(bytes(msg[:cut] if cut else msg), max_fragment=fragment)
    _exercise(wire)


@FUZZ
@given(st.integers(0, 0xFFFF), st.binary(max_size=80))
def test_any_extension_body(ext_type: int, body: bytes) -> None:
    try:
        ext = parse_extension(ext_type, body)
    except ClientHelloError:
        return
    assert ext.data == body
    assert ext.type == ext_type


_KNOWN = [int(t) for t in ExtensionType] + [0x0A0A, 0xFAFA, 0x7777]


@FUZZ
@given(
    st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=40),
    st.lists(st.sampled_from(_KNOWN), unique=True, max_size=20),
    st.binary(max_size=32),
)
def test_structured_roundtrip(suites: list[int], ext_types: list[int], sid: bytes) -> None:
    """Hellos built from valid pieces parse, re-encode identically and fingerprint."""
    exts = []
    for t in ext_types:
        if t == ExtensionType.PRE_SHARED_KEY:
            continue
        try:
            exts.append(parse_extension(t, b""))
        except ClientHelloError:
            exts.append(parse_extension(0x7777 if t != 0x7777 else 0x7778, b""))
    exts = list({e.type: e for e in exts}.values())
    hello = ClientHello(0x0303, bytes(32), sid, tuple(suites), (0,), tuple(exts))
    msg = encode_client_hello_message(hello)
    parsed = parse_client_hello_message(msg)
    assert (parsed.cipher_suites, parsed.extension_types) == (
        hello.cipher_suites,
        hello.extension_types,
    )
    assert ja4(parsed) == ja4(hello)


def _corpus() -> list[Path]:
    return sorted(CORPUS.glob("*.bin"))


@pytest.mark.parametrize("path", _corpus(), ids=lambda p: p.name)
def test_crash_corpus(path: Path) -> None:
    for chunk in (1, 5, 4096):
        _exercise(path.read_bytes(), chunk)
