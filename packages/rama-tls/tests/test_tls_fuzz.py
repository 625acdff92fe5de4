"""Hypothesis fuzzing of the ClientHello reader: only typed errors, never a crash.

Regression corpus
-----------------
``corpus/*.bin`` holds byte streams (TLS records, as a client would send them)
that once crashed the reader or cover an edge; ``corpus/expected.json`` gives
each one its expected outcome, checked at several chunk sizes by
:func:`test_crash_corpus`:

* ``{"error": "MalformedClientHello", "match": "..."}`` - that exact error class,
  its message containing ``match``;
* ``{"need_more": 104}`` - an incomplete hello, and how many bytes the reader wants;
* ``{"ja4": ..., "ja3": ..., "consumed": ...}`` - a parsed hello and its fingerprints.

When a hypothesis test below finds a crashing input, the falsifying example
(the shrunk one hypothesis reports) is written as ``corpus/crash-<sha256>.bin``
(byte-stream form) before the failure is reported. Fix the bug, then run::

    .venv/bin/python packages/rama-tls/tests/test_tls_fuzz.py --record

which adds the new files' current outcomes to ``expected.json``; review that
diff and commit both. A corpus file without an expected outcome fails the
corpus test, so a crash cannot be half-recorded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis.control import current_build_context, currently_in_test_context

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
from rama_tls._extensions import Extension, ExtensionType, UnknownExtension, parse_extension

CORPUS = Path(__file__).parent / "corpus"
EXPECTED = CORPUS / "expected.json"
CORPUS_CHUNKS = (1, 5, 4096)
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


def _check(data: bytes, chunk: int) -> None:
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


def _corpus_path(wire: bytes) -> Path:
    return CORPUS / f"crash-{hashlib.sha256(wire).hexdigest()[:16]}.bin"


def save_crash(wire: bytes) -> Path | None:
    """Write a crashing byte stream into the corpus (once: the name is its hash).

    Inside a hypothesis test only the final, shrunk example is kept, not every
    attempt made while shrinking.
    """
    if currently_in_test_context() and not getattr(current_build_context(), "is_final", True):
        return None
    path = _corpus_path(wire)
    if not path.exists():
        path.write_bytes(wire)
    message = f"crashing input saved as {path}; after the fix, run {Path(__file__).name} --record"
    if currently_in_test_context():
        note(message)
    else:
        print(message, file=sys.stderr)
    return path


@contextmanager
def crash_to_corpus(wire: bytes) -> Iterator[None]:
    """Anything but a passing check saves ``wire`` (TLS records) into the corpus, then re-raises."""
    try:
        yield
    except Exception:
        save_crash(wire)
        raise


def _exercise(data: bytes, chunk: int = 7) -> None:
    with crash_to_corpus(data):
        _check(data, chunk)


def _records_with_extension(ext_type: int, body: bytes) -> bytes:
    """The seed hello as records, with one extension (replacing any of that type)."""
    hello = parse_client_hello_message(SEED)
    extension = Extension(ext_type, body, UnknownExtension(body))  # encoded from type and data
    exts = (*(e for e in hello.extensions if e.type != ext_type), extension)
    return encode_handshake_records(encode_client_hello_message(replace(hello, extensions=exts)))


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
    with crash_to_corpus(_records_with_extension(ext_type, body)):
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
    with crash_to_corpus(encode_handshake_records(msg)):
        parsed = parse_client_hello_message(msg)
        assert (parsed.cipher_suites, parsed.extension_types) == (
            hello.cipher_suites,
            hello.extension_types,
        )
        assert ja4(parsed) == ja4(hello)


# -- the regression corpus --------------------------------------------------------------


def outcome(data: bytes, chunk: int = 4096) -> dict[str, Any]:
    """What the reader makes of ``data`` fed in ``chunk``-sized pieces (see the module doc)."""
    try:
        result = _feed_all(data, chunk)
    except ClientHelloError as exc:
        return {"error": type(exc).__name__, "match": str(exc)}
    if isinstance(result, NeedMore):
        return {"need_more": result.needed}
    hello = result.client_hello
    return {"ja4": ja4(hello).ja4, "ja3": ja3(hello).hash, "consumed": result.consumed}


def _matches(expected: dict[str, Any], got: dict[str, Any]) -> bool:
    if "error" in expected:
        return expected["error"] == got.get("error") and expected["match"] in got["match"]
    return expected == got


def _expected() -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = json.loads(EXPECTED.read_text())
    return data


def _corpus() -> list[Path]:
    return sorted(CORPUS.glob("*.bin"))


@pytest.mark.parametrize("path", _corpus(), ids=lambda p: p.name)
def test_crash_corpus(path: Path) -> None:
    expected = _expected().get(path.name)
    assert expected is not None, (
        f"{path.name} has no expected outcome in {EXPECTED.name}: once the crash is fixed, "
        f"run {Path(__file__).name} --record and review the entry"
    )
    data = path.read_bytes()
    for chunk in CORPUS_CHUNKS:
        _check(data, chunk)
        got = outcome(data, chunk)
        assert _matches(expected, got), f"{path.name} in chunks of {chunk}: {got}"


def test_corpus_expectations_name_existing_files() -> None:
    assert sorted(_expected()) == [p.name for p in _corpus()]


def test_crashes_land_in_the_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The helper the fuzz tests use: a failing check leaves the input behind, once."""
    monkeypatch.setattr(sys.modules[__name__], "CORPUS", tmp_path)
    wire = encode_handshake_records(SEED)
    with pytest.raises(ZeroDivisionError), crash_to_corpus(wire):
        _ = 1 // 0
    saved = list(tmp_path.iterdir())
    assert [p.read_bytes() for p in saved] == [wire]
    assert saved[0].name.startswith("crash-")
    with crash_to_corpus(wire):
        pass  # a passing check saves nothing
    assert list(tmp_path.iterdir()) == saved


def record_missing() -> list[str]:
    """Add the current outcome of every corpus file without one to ``expected.json``."""
    expected = _expected()
    added = []
    for path in _corpus():
        if path.name in expected:
            continue
        data = path.read_bytes()
        outcomes = [outcome(data, chunk) for chunk in CORPUS_CHUNKS]
        if any(o != outcomes[0] for o in outcomes):
            raise SystemExit(f"{path.name}: the outcome depends on the chunk size: {outcomes}")
        for chunk in CORPUS_CHUNKS:
            _check(data, chunk)  # still crashing? fix the bug first
        expected[path.name] = outcomes[0]
        added.append(f"{path.name}: {outcomes[0]}")
    EXPECTED.write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
    return added


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description="Maintain the rama-tls fuzz regression corpus.")
    cli.add_argument("--record", action="store_true", help="record outcomes of new corpus files")
    if cli.parse_args().record:
        print("\n".join(record_missing()) or "every corpus file has an expected outcome")
