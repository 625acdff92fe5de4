"""JA3/JA4 of real ClientHellos (curl, openssl, Python ssl, httpx), cross-checked.

Each test captures the first bytes a real client sends to a loopback
listener, parses them with rama-tls and compares the fingerprints with two
independent implementations: tshark's JA3 fields and the ``ja4plus`` package.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from ja4plus.fingerprinters.ja4 import generate_ja4, get_raw_fingerprint
from ja4plus.utils.tls_utils import parse_tls_handshake

from rama_tls import ClientHello, ClientHelloComplete, ClientHelloReader, ja3, ja4

Capture = Callable[[Callable[[int], object]], bytes]
HOST = "example.test"


def _parse(data: bytes) -> ClientHello:
    result = ClientHelloReader().feed(data)
    assert isinstance(result, ClientHelloComplete)
    return result.client_hello


def _tshark_ja3(
    tmp_path: Path, data: bytes, make_pcap: Callable[[bytes], bytes]
) -> tuple[str, str]:
    pcap = tmp_path / "hello.pcap"
    pcap.write_bytes(make_pcap(data))
    out = subprocess.run(
        [
            "tshark",
            "-n",
            "-r",
            str(pcap),
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "tls.handshake.ja3_full",
            "-e",
            "tls.handshake.ja3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    full, digest = out.stdout.strip().split("|")
    return full, digest


def _check_independent(
    data: bytes, hello: ClientHello, tmp_path: Path, make_pcap: Callable[[bytes], bytes]
) -> None:
    fp = ja4(hello)
    info = parse_tls_handshake(data)
    assert info is not None
    assert fp.ja4 == generate_ja4(info)
    assert fp.ja4_o == generate_ja4(info, original_order=True)
    assert fp.ja4_r == get_raw_fingerprint(info)
    assert fp.ja4_ro == get_raw_fingerprint(info, original_order=True)
    j3 = ja3(hello)
    assert (j3.string, j3.hash) == _tshark_ja3(tmp_path, data, make_pcap)


@pytest.mark.peer
@pytest.mark.parametrize(
    ("flags", "version"),
    [([], "13"), (["--tlsv1.2", "--tls-max", "1.2"], "12")],
    ids=["tls13", "tls12"],
)
def test_curl(
    capture_client_hello: Capture,
    run_peer: Callable[[list[str]], None],
    require_peer: Callable[[str], str],
    make_pcap: Callable[[bytes], bytes],
    tmp_path: Path,
    flags: list[str],
    version: str,
) -> None:
    curl = require_peer("curl")
    data = capture_client_hello(
        lambda port: run_peer(
            [
                curl,
                "-sk",
                "--max-time",
                "5",
                *flags,
                "--resolve",
                f"{HOST}:{port}:127.0.0.1",
                f"https://{HOST}:{port}/",
            ]
        )
    )
    hello = _parse(data)
    assert hello.server_name == HOST
    assert b"http/1.1" in hello.alpn_protocols
    fp = ja4(hello)
    assert fp.ja4.startswith(f"t{version}d")
    _check_independent(data, hello, tmp_path, make_pcap)


@pytest.mark.peer
@pytest.mark.parametrize("version", ["1_2", "1_3"])
def test_openssl_s_client(
    capture_client_hello: Capture,
    run_peer: Callable[[list[str]], None],
    require_peer: Callable[[str], str],
    make_pcap: Callable[[bytes], bytes],
    tmp_path: Path,
    version: str,
) -> None:
    openssl = require_peer("openssl")
    data = capture_client_hello(
        lambda port: run_peer(
            [
                openssl,
                "s_client",
                "-connect",
                f"127.0.0.1:{port}",
                "-servername",
                HOST,
                f"-tls{version}",
            ]
        )
    )
    hello = _parse(data)
    assert hello.server_name == HOST
    assert hello.alpn_protocols == ()
    fp = ja4(hello)
    assert fp.ja4.startswith(f"t1{version[-1]}d")
    assert fp.ja4[8:10] == "00"  # no ALPN offered
    _check_independent(data, hello, tmp_path, make_pcap)


def _python_ssl_client(port: int) -> None:
    ctx = ssl.create_default_context()
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            ctx.wrap_socket(sock, server_hostname=HOST)
        except (OSError, ssl.SSLError):
            pass


def test_python_ssl(
    capture_client_hello: Capture, make_pcap: Callable[[bytes], bytes], tmp_path: Path
) -> None:
    data = capture_client_hello(_python_ssl_client)
    hello = _parse(data)
    assert hello.server_name == HOST
    assert hello.alpn_protocols == (b"h2", b"http/1.1")
    assert ja4(hello).ja4.startswith("t13d")
    assert ja4(hello).ja4[8:10] == "h2"
    _check_independent(data, hello, tmp_path, make_pcap)


def _httpx_client(port: int) -> None:
    try:
        httpx.get(f"https://localhost:{port}/", verify=False, timeout=5)
    except httpx.HTTPError:
        pass


def test_httpx(
    capture_client_hello: Capture, make_pcap: Callable[[bytes], bytes], tmp_path: Path
) -> None:
    data = capture_client_hello(_httpx_client)
    hello = _parse(data)
    assert hello.server_name == "localhost"
    assert hello.alpn_protocols == (b"http/1.1",)
    assert ja4(hello).ja4[8:10] == "h1"
    _check_independent(data, hello, tmp_path, make_pcap)


def test_hello_split_over_records_has_same_fingerprint(capture_client_hello: Capture) -> None:
    """A real hello re-framed into tiny records parses to the same value."""
    from rama_tls import encode_client_hello_message, encode_handshake_records

    data = capture_client_hello(_python_ssl_client)
    hello = _parse(data)
    message = encode_client_hello_message(hello)
    assert message == hello.raw
    split = encode_handshake_records(message, max_fragment=7)
    reader = ClientHelloReader()
    result = None
    for i in range(0, len(split), 3):
        result = reader.feed(split[i : i + 3])
    assert isinstance(result, ClientHelloComplete)
    assert result.consumed == len(split)
    assert ja4(result.client_hello) == ja4(hello)
    assert ja3(result.client_hello) == ja3(hello)
