"""Run examples/tls_emulated_client.py as a user would: a real process, real servers."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rama_tls import CertificateAuthority, ClientHelloComplete, ja4, parse_client_hello_records

HERE = Path(__file__).parent
EXAMPLE = HERE / "tls_emulated_client.py"
PROFILES: list[dict[str, Any]] = json.loads(
    (HERE.parent / "packages/rama-ua/src/rama_ua/data/ua_profiles.json").read_text()
)


def _u16(v: int) -> bytes:
    return v.to_bytes(2, "big")


def _ext_bytes(entry: dict[str, Any]) -> tuple[int, bytes]:
    """The few profile extension kinds serialized here, independently of the engine."""
    ((kind, v),) = entry.items()
    if kind == "Opaque":
        return v["id"], bytes(v["data"])
    if kind == "ServerName":
        name = v.encode()
        return 0, _u16(len(name) + 3) + b"\0" + _u16(len(name)) + name
    if kind in ("SupportedGroups", "SignatureAlgorithms", "DelegatedCredentials"):
        code = {"SupportedGroups": 10, "SignatureAlgorithms": 13, "DelegatedCredentials": 34}[kind]
        return code, _u16(2 * len(v)) + b"".join(_u16(x) for x in v)
    if kind == "ECPointFormats":
        return 11, bytes([len(v)]) + bytes(v)
    if kind == "ApplicationLayerProtocolNegotiation":
        body = b"".join(bytes([len(p)]) + bytes(p) for p in v)
        return 16, _u16(len(body)) + body
    if kind == "SupportedVersions":
        return 43, bytes([2 * len(v)]) + b"".join(_u16(x) for x in v)
    if kind == "CertificateCompression":
        return 27, bytes([2 * len(v)]) + b"".join(_u16(x) for x in v)
    if kind == "RecordSizeLimit":
        return 28, _u16(v)
    if kind == "ApplicationSettings":
        body = b"".join(bytes([len(p)]) + bytes(p) for p in v["protocols"])
        return (0x44CD if v["new_codepoint"] else 0x4469), _u16(len(body)) + body
    if kind == "EncryptedClientHello":
        o = v["Outer"]
        enc, payload = bytes(o["enc"]), bytes(o["payload"])
        body = b"\0" + _u16(o["cipher_suite"]["kdf_id"]) + _u16(o["cipher_suite"]["aead_id"])
        body += bytes([o["config_id"]]) + _u16(len(enc)) + enc + _u16(len(payload)) + payload
        return 0xFE0D, body
    raise AssertionError(kind)


def expected_ja4(profile: dict[str, Any]) -> str:
    hello = profile["tls_client_hello"]
    suites = b"".join(_u16(s) for s in hello["cipher_suites"])
    exts = [_ext_bytes(e) for e in hello["extensions"]]
    block = b"".join(_u16(t) + _u16(len(d)) + d for t, d in exts)
    body = _u16(0x0303) + bytes(32) + b"\0" + _u16(len(suites)) + suites + b"\x01\0"
    body += _u16(len(block)) + block
    msg = b"\x01" + len(body).to_bytes(3, "big") + body
    result = parse_client_hello_records(b"\x16\x03\x01" + _u16(len(msg)) + msg)
    assert isinstance(result, ClientHelloComplete)
    return ja4(result.client_hello).ja4


def newest(browser: str) -> int:
    return max(
        i
        for i, p in enumerate(PROFILES)
        if p["source_info"].get("browser_name", "").lower() == browser
    )


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_prints_the_ja4_the_server_saw_equal_to_the_profiles() -> None:
    browsers = ["chrome", "firefox", "safari", "edge"]
    args = [a for b in browsers for a in ("--profile", b)]
    out = run(*args)
    assert out.returncode == 0, out.stdout + out.stderr
    blocks = out.stdout.split("profile #")[1:]
    assert len(blocks) == 4
    for browser, block in zip(browsers, blocks, strict=True):
        index = int(block.split(":", 1)[0])
        assert index == newest(browser)
        profile_ja4 = re.search(r"profile JA4:\s+(\S+)", block)
        seen = re.search(r"server saw JA4:\s+(\S+)", block)
        assert profile_ja4 is not None
        assert seen is not None
        assert seen.group(1) == profile_ja4.group(1) == expected_ja4(PROFILES[index])
        assert "match: yes" in block


def test_profile_by_index_and_unknown_browser() -> None:
    out = run("--profile", "3")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("profile #3:")
    assert expected_ja4(PROFILES[3]) in out.stdout
    bad = run("--profile", "netscape")
    assert bad.returncode != 0
    assert "no profile for browser 'netscape'" in bad.stderr


@pytest.mark.peer
def test_connect_to_a_real_server(tmp_path: Path, require_peer: Callable[[str], str]) -> None:
    ca = CertificateAuthority.create("example test CA")
    ca.issue("localhost").save(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [require_peer("openssl"), "s_server", "-accept", f"127.0.0.1:{port}", "-www", "-quiet"]
    argv += ["-cert", str(tmp_path / "leaf.pem"), "-key", str(tmp_path / "leaf.key")]
    server = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "s_server did not listen"
                time.sleep(0.05)
        out = run(
            "--connect",
            f"localhost:{port}",
            "--ca",
            str(tmp_path / "ca.pem"),
            "--profile",
            "firefox",
        )
        assert out.returncode == 0, out.stderr
        assert "TLSv1.3" in out.stdout
        assert "HTTP/1.0 200 ok" in out.stdout
        untrusted = run("--connect", f"localhost:{port}", "--profile", "firefox")
        assert untrusted.returncode != 0
        assert "CertificateVerificationError" in untrusted.stderr
    finally:
        server.terminate()
        server.wait(5)
