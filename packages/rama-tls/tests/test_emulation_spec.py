"""ClientHelloSpec: every shipped browser profile builds a hello with the profile's JA3/JA4.

The expected fingerprints come from the profile itself: its ``tls_client_hello``
serialized literally (its own SNI, key share bytes, GREASE and padding), parsed
by rama's parser. tshark (JA3) and ja4plus (JA4) cross-check emulated hellos.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ja4plus.fingerprinters.ja4 import generate_ja4
from ja4plus.utils.tls_utils import parse_tls_handshake

from rama_tls import (
    ClientHello,
    ClientHelloComplete,
    is_grease,
    ja3,
    ja4,
    parse_client_hello_records,
)
from rama_tls._extensions import EncryptedClientHello, KeyShare, SupportedGroups, SupportedVersions
from rama_tls.emulation import ClientHelloSpec, ExtensionSpec, PaddingRule

PROFILES_PATH = Path(__file__).parents[2] / "rama-ua/src/rama_ua/data/ua_profiles.json"
PROFILES: list[dict[str, Any]] = json.loads(PROFILES_PATH.read_text())


def _name(i: int) -> str:
    info = PROFILES[i]["source_info"]
    return f"{i}-{info.get('browser_name', '')}-{info.get('os', '')}".replace(" ", "_")


def _u16(v: int) -> bytes:
    return v.to_bytes(2, "big")


def literal_record(spec: ClientHelloSpec) -> bytes:
    """The spec's templates serialized as they are (the profile's own hello)."""
    suites = b"".join(_u16(s) for s in spec.cipher_suites)
    block = b"".join(_u16(e.type) + _u16(len(e.data)) + e.data for e in spec.extensions)
    body = (
        _u16(spec.legacy_version)
        + bytes(32)
        + bytes([32])
        + bytes(32)
        + _u16(len(suites))
        + suites
        + bytes([len(spec.compression_methods)])
        + bytes(spec.compression_methods)
        + _u16(len(block))
        + block
    )
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + _u16(len(message)) + message


def parse(record: bytes) -> ClientHello:
    result = parse_client_hello_records(record)
    assert isinstance(result, ClientHelloComplete)
    assert result.consumed == len(record)
    return result.client_hello


def profile_spec(i: int, **kw: Any) -> ClientHelloSpec:
    return ClientHelloSpec.from_profile(PROFILES[i]["tls_client_hello"], **kw)


def profile_sni(i: int) -> str:
    for e in PROFILES[i]["tls_client_hello"]["extensions"]:
        if "ServerName" in e:
            return str(e["ServerName"])
    raise AssertionError("profile without SNI")


ALL = list(range(len(PROFILES)))


def test_all_profiles_shipped() -> None:
    assert len(PROFILES) == 52
    names = {p["source_info"].get("browser_name", "").lower() for p in PROFILES}
    assert {"chrome", "firefox", "safari", "edge"} <= names


@pytest.mark.parametrize("i", ALL, ids=_name)
def test_profile_fingerprints(i: int) -> None:
    spec = profile_spec(i)
    expected = parse(literal_record(spec))
    permuted = parse(spec.build(server_name="example.com"))
    assert ja4(permuted).ja4 == ja4(expected).ja4
    assert ja4(permuted).ja4_r == ja4(expected).ja4_r
    plain = spec.replace(permute_extensions=False)
    built = parse(plain.build(server_name="www.example.org"))
    assert ja3(built).hash == ja3(expected).hash
    assert ja3(built).string == ja3(expected).string
    assert ja4(built).ja4 == ja4(expected).ja4
    assert ja4(built).ja4_o == ja4(expected).ja4_o
    assert built.server_name == "www.example.org"


@pytest.mark.parametrize("i", ALL, ids=_name)
def test_profile_bytes_identical_but_fresh_fields(i: int) -> None:
    """With the profile's own host name, only the per-connection fields differ."""
    spec = profile_spec(i, permute_extensions=False)
    lit = literal_record(spec)
    built_rec = spec.build(server_name=profile_sni(i))
    expected, built = parse(lit), parse(built_rec)
    ech_a, ech_b = expected.find(EncryptedClientHello), built.find(EncryptedClientHello)
    ech_delta = len(ech_b.payload) - len(ech_a.payload) if ech_a and ech_b else 0
    assert len(built_rec) == len(lit) + ech_delta
    assert built.legacy_version == expected.legacy_version
    assert built.record_version == 0x0301
    assert len(built.session_id) == 32
    assert built.compression_methods == expected.compression_methods
    assert [s if not is_grease(s) else -1 for s in built.cipher_suites] == [
        s if not is_grease(s) else -1 for s in expected.cipher_suites
    ]
    assert len(built.extensions) == len(expected.extensions)
    fresh = {0x0033, 0xFE0D, 0x000A, 0x002B}
    for a, b in zip(expected.extensions, built.extensions, strict=True):
        assert is_grease(a.type) == is_grease(b.type)
        if is_grease(a.type):
            assert a.data == b.data
            continue
        assert a.type == b.type
        if a.type != 0xFE0D:
            assert len(a.data) == len(b.data), hex(a.type)
        if a.type not in fresh:
            assert a.data == b.data, hex(a.type)


@pytest.mark.parametrize("i", [0, 27, 30, 40, 46], ids=_name)
def test_fresh_per_connection(i: int) -> None:
    spec = profile_spec(i)
    a, b = parse(spec.build(server_name="a.test")), parse(spec.build(server_name="a.test"))
    assert a.random != b.random
    assert a.session_id != b.session_id
    ka, kb = a.find(KeyShare), b.find(KeyShare)
    assert ka is not None
    assert kb is not None
    real_a = [e.key_exchange for e in ka.entries if not is_grease(e.group)]
    real_b = [e.key_exchange for e in kb.entries if not is_grease(e.group)]
    assert real_a
    assert all(x != y for x, y in zip(real_a, real_b, strict=True))
    ech_a, ech_b = a.find(EncryptedClientHello), b.find(EncryptedClientHello)
    if ech_a is not None and ech_b is not None:
        assert ech_a.payload != ech_b.payload
        assert (ech_a.kdf_id, ech_a.aead_id) == (ech_b.kdf_id, ech_b.aead_id)


@pytest.mark.parametrize("i", [27, 46, 40], ids=_name)
def test_ech_grease_payload_lengths(i: int) -> None:
    """Chrome's (BoringSSL's) lengths vary per connection; Firefox's template length stays."""
    spec = profile_spec(i)
    template = parse(literal_record(spec)).find(EncryptedClientHello)
    assert template is not None
    lengths = set()
    for _ in range(40):
        ech = parse(spec.build(server_name="e.test")).find(EncryptedClientHello)
        assert ech is not None
        assert len(ech.enc) == 32
        lengths.add(len(ech.payload))
    if len(template.payload) in (144, 176, 208, 240):
        assert lengths == {144, 176, 208, 240}
    else:
        assert lengths == {len(template.payload)}


@pytest.mark.parametrize("i", ALL, ids=_name)
def test_grease_consistent_like_boringssl(i: int) -> None:
    hello = parse(profile_spec(i).build(server_name="g.test"))
    groups = hello.find(SupportedGroups)
    shares = hello.find(KeyShare)
    assert groups is not None
    assert shares is not None
    g_groups = [g for g in groups.groups if is_grease(g)]
    g_shares = [e.group for e in shares.entries if is_grease(e.group)]
    if g_groups and g_shares:
        assert g_groups == g_shares
    exts = [t for t in hello.extension_types if is_grease(t)]
    assert len(exts) == len(set(exts))  # first and last GREASE extension differ
    sv = hello.find(SupportedVersions)
    assert sv is not None
    assert sum(is_grease(v) for v in sv.versions) <= 1


@pytest.mark.parametrize("i", [27, 41, 46], ids=_name)
def test_chrome_permutation_varies_ja3_keeps_ja4(i: int) -> None:
    spec = profile_spec(i)
    assert spec.permute_extensions  # Chrome/Edge profiles default to permuted
    hellos = [parse(spec.build(server_name="p.test")) for _ in range(12)]
    assert len({ja4(h).ja4 for h in hellos}) == 1
    assert len({ja3(h).hash for h in hellos}) > 1
    for h in hellos:  # GREASE stays first and last
        assert is_grease(h.extension_types[0])
        assert is_grease(h.extension_types[-1])


def test_firefox_and_safari_not_permuted_by_default() -> None:
    assert not profile_spec(40).permute_extensions
    assert not profile_spec(0).permute_extensions


@pytest.mark.parametrize("i", [0, 30, 40, 46], ids=_name)
def test_from_client_hello_round_trip(i: int) -> None:
    first = parse(profile_spec(i, permute_extensions=False).build(server_name="c.test"))
    again = parse(ClientHelloSpec.from_client_hello(first).build(server_name="c.test"))
    assert ja3(again).string == ja3(first).string
    assert ja4(again).ja4_o == ja4(first).ja4_o
    ech_a, ech_b = first.find(EncryptedClientHello), again.find(EncryptedClientHello)
    delta = len(ech_b.payload) - len(ech_a.payload) if ech_a and ech_b else 0
    assert len(again.raw) == len(first.raw) + delta


def test_ip_literal_omits_sni_like_browsers() -> None:
    hello = parse(profile_spec(40).build(server_name="127.0.0.1"))
    assert hello.server_name is None
    assert ja4(hello).ja4.startswith("t13i")


def test_padding_rules() -> None:
    spec = profile_spec(0, permute_extensions=False)  # Safari: pads to 512
    for name in ("a.b", "x" * 40 + ".example"):
        assert len(parse(spec.build(server_name=name)).raw) == 512
    long = "x" * 60 + "." + "y" * 60 + "." + "z" * 60 + "." + "w" * 60 + ".test"
    h = parse(spec.build(server_name=long))  # longer than 512: one byte of padding
    assert h.extension(0x15) is not None
    assert len(h.extension(0x15).data) == 1  # type: ignore[union-attr]
    h2 = parse(spec.replace(padding=PaddingRule.BORINGSSL).build(server_name=long))
    assert h2.extension(0x15) is None  # what BoringSSL does for a long hello
    h3 = parse(spec.replace(padding=PaddingRule.EXACT).build(server_name="a.b"))
    assert len(h3.extension(0x15).data) == len(spec.extension_data(0x15) or b"")  # type: ignore[union-attr]


def test_invalid_specs() -> None:
    with pytest.raises(ValueError, match="cipher suite"):
        ClientHelloSpec(cipher_suites=(), extensions=())
    with pytest.raises(ValueError, match="twice"):
        ClientHelloSpec(cipher_suites=(0x1301,), extensions=(ExtensionSpec(23), ExtensionSpec(23)))
    with pytest.raises(ValueError, match="tls_client_hello"):
        ClientHelloSpec.from_profile({"extensions": [{"Nope": 1}], "cipher_suites": [1]})


# -- independent oracles ----------------------------------------------------------------
@pytest.mark.peer
def test_tshark_and_ja4plus_agree_on_every_profile(
    tmp_path: Path,
    make_multi_pcap: Callable[[list[bytes]], bytes],
    require_peer: Callable[[str], str],
) -> None:
    """Every profile's hello, in one pcap: tshark's JA3 and ja4plus's JA4 are the profile's."""
    tshark = require_peer("tshark")
    specs = [profile_spec(i) for i in range(len(PROFILES))]
    expected = [parse(literal_record(spec)) for spec in specs]
    unpermuted = [
        s.replace(permute_extensions=False).build(server_name="oracle.example") for s in specs
    ]
    pcap = tmp_path / "hellos.pcap"
    pcap.write_bytes(make_multi_pcap(unpermuted))
    out = subprocess.run(
        [
            tshark,
            "-n",
            "-r",
            str(pcap),
            "-T",
            "fields",
            "-e",
            "tcp.srcport",
            "-e",
            "tls.handshake.ja3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen = dict(line.split("\t") for line in out.stdout.strip().splitlines())
    assert len(seen) == len(specs)
    for n, hello in enumerate(expected):
        assert seen[str(50000 + n)] == ja3(hello).hash, _name(n)
    for n, spec in enumerate(specs):
        info = parse_tls_handshake(spec.build(server_name="oracle.example"))  # permuted when Chrome
        assert info is not None
        assert generate_ja4(info) == ja4(expected[n]).ja4, _name(n)


# -- property tests -----------------------------------------------------------------------
_EXTS = st.sampled_from(
    [
        ExtensionSpec(23),
        ExtensionSpec(0xFF01, b"\x00"),
        ExtensionSpec(0x0A, b"\x00\x06\x0a\x0a\x00\x1d\x00\x17"),
        ExtensionSpec(0x0B, b"\x01\x00"),
        ExtensionSpec(0x10, b"\x00\x0c\x02h2\x08http/1.1"),
        ExtensionSpec(0x0D, b"\x00\x04\x04\x03\x08\x04"),
        ExtensionSpec(0x2B, b"\x06\x3a\x3a\x03\x04\x03\x03"),
        ExtensionSpec(0x2D, b"\x01\x01"),
        ExtensionSpec(0x33, b"\x00\x29\x0a\x0a\x00\x01\x00\x00\x1d\x00\x20" + bytes(32)),
        ExtensionSpec(0x1B, b"\x02\x00\x02"),
        ExtensionSpec(0x12),
        ExtensionSpec(0x05, b"\x01\x00\x00\x00\x00"),
        ExtensionSpec(0x23),
        ExtensionSpec(0x15, b"\x00"),
        ExtensionSpec(0x0A0A),
        ExtensionSpec(0x4469, b"\x00\x03\x02h2"),
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    suites=st.lists(
        st.sampled_from([0x0A0A, 0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0x009C]),
        min_size=1,
        max_size=7,
    ),
    exts=st.lists(_EXTS, max_size=16, unique_by=lambda e: e.type),
    name=st.from_regex(r"[a-z][a-z0-9-]{0,30}(\.[a-z][a-z0-9-]{0,20}){0,3}", fullmatch=True),
    permute=st.booleans(),
    sni=st.booleans(),
)
def test_any_spec_builds_a_valid_hello(
    suites: list[int], exts: list[ExtensionSpec], name: str, permute: bool, sni: bool
) -> None:
    if sni:
        exts = [ExtensionSpec(0, b"\x00\x06\x00\x00\x03x.y"), *exts]
    spec = ClientHelloSpec(
        cipher_suites=tuple(suites), extensions=tuple(exts), permute_extensions=permute
    )
    hello = parse(spec.build(server_name=name))
    assert len(hello.extensions) == len(exts)
    assert [is_grease(s) for s in hello.cipher_suites] == [is_grease(s) for s in suites]
    if sni:
        assert hello.server_name == name
    expected = parse(literal_record(spec.replace(permute_extensions=False)))
    assert ja4(hello).ja4 == ja4(expected).ja4
    if not permute:
        assert [t for t in hello.extension_types if not is_grease(t)] == [
            t for t in expected.extension_types if not is_grease(t)
        ]


def test_rama_ua_wheel_ships_the_profiles(tmp_path: Path) -> None:
    """The profiles the specs come from are package data of rama-ua's wheel."""
    import sys
    import zipfile

    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(PROFILES_PATH.parents[3]),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = tmp_path.glob("rama_ua-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = json.loads(zf.read("rama_ua/data/ua_profiles.json"))
    assert shipped == PROFILES


def test_malformed_templates_are_rejected_up_front() -> None:
    with pytest.raises(ValueError, match="0x0033"):
        ClientHelloSpec(cipher_suites=(0x1301,), extensions=(ExtensionSpec(0x33, b"\x00\x05\x00"),))
    with pytest.raises(ValueError, match="0x002b"):
        ClientHelloSpec(cipher_suites=(0x1301,), extensions=(ExtensionSpec(0x2B, b"\x03\x03\x04"),))
    # SNI and padding are made per connection: any template will do
    spec = ClientHelloSpec(
        cipher_suites=(0x1301,), extensions=(ExtensionSpec(0), ExtensionSpec(21))
    )
    assert parse(spec.build(server_name="ok.test")).server_name == "ok.test"
