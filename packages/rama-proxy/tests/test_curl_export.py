"""curl export: run the exported command with real curl (bash and dash) against a raw
socket server and compare the exact request bytes with the recorded request."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketStream
from hypothesis import given, settings
from hypothesis import strategies as st

from rama_proxy.flows import CapturedBody, Flow, HttpRequestRecord, to_curl
from rama_proxy.flows._curl import _posix_word

pytestmark = pytest.mark.anyio

ODD = "q'uo\"te $HOME `id` \\back ! ;|&<>(){}[]*? \t tab"
UTF8_AS_WIRE = "h\u00e9llo \u2603 \U0001f600".encode().decode("latin-1")  # UTF-8 bytes
RAW_LATIN1 = "caf\u00e9 \u00ff\u00fe"  # bytes E9 FF FE: not valid UTF-8


def expected_bytes(req: HttpRequestRecord, port: int) -> bytes:
    target = req.url.split(f"127.0.0.1:{port}", 1)[1] or "/"
    head = f"{req.method} {target} {req.http_version}\r\n"
    head += "".join(f"{n}: {v}\r\n" for n, v in req.headers)
    return (head + "\r\n").encode("latin-1") + req.body.data


class Capture:
    """A raw TCP server that stores the exact bytes of each request and answers 200."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.port = 0

    async def handle(self, stream: SocketStream) -> None:
        async with stream:
            buf = b""
            while b"\r\n\r\n" not in buf:
                try:
                    buf += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
            head, _, rest = buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            if b"expect: 100-continue" in head.lower():
                await stream.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            while len(rest) < length:
                try:
                    rest += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
            self.requests.append(head + b"\r\n\r\n" + rest)
            await stream.send(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            )


async def run_commands(
    build: Callable[[int], list[HttpRequestRecord]], shells: tuple[str, ...] = ("bash", "sh")
) -> tuple[list[HttpRequestRecord], list[bytes], int, list[str]]:
    cap = Capture()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    cap.port = listener.extra(anyio.abc.SocketAttribute.local_port)
    reqs = build(cap.port)
    cmds: list[str] = []
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, cap.handle)
        for req in reqs:
            for sh in shells:
                cmd = to_curl(req)
                cmds.append(cmd)
                # a script file, as a user pastes it (one argv string is limited to 128 KiB)
                with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as script:
                    script.write(cmd + " -sS --max-time 10 -o /dev/null\n")
                try:
                    with anyio.fail_after(20):
                        res = await anyio.run_process(
                            [sh, script.name], check=False, stdin=subprocess.DEVNULL
                        )
                finally:
                    os.unlink(script.name)
                assert res.returncode == 0, (cmd, res.stderr)
        tg.cancel_scope.cancel()
    return reqs, cap.requests, cap.port, cmds


def url(port: int, path: str) -> str:
    return f"http://127.0.0.1:{port}{path}"


async def test_headers_in_order_with_casing_and_odd_values(require_peer: Callable) -> None:
    require_peer("curl")

    def build(port: int) -> list[HttpRequestRecord]:
        return [
            HttpRequestRecord(
                "GET",
                url(port, "/a/../b/./c?x=[1]&y={2}&z=%20"),
                "HTTP/1.1",
                [
                    ("x-first", "1"),
                    ("accept", "text/html"),
                    ("HOST", f"127.0.0.1:{port}"),
                    ("X-Odd", ODD),
                    ("X-Utf8", UTF8_AS_WIRE),
                    ("X-Latin1", RAW_LATIN1),
                    ("X-Empty", ""),
                    ("user-AGENT", "Mozilla/5.0 (rama)"),
                    ("X-Dup", "1"),
                    ("X-Dup", "2"),
                    ("Cookie", "a=b; c=d"),
                ],
            ),
            # no User-Agent / Accept: curl must not add its own
            HttpRequestRecord(
                "GET", url(port, "/bare"), "HTTP/1.1", [("Host", f"127.0.0.1:{port}")]
            ),
            # a Host that differs from the URL's authority
            HttpRequestRecord(
                "OPTIONS", url(port, "/opt"), "HTTP/1.1", [("Host", "virtual.example:8080")]
            ),
            HttpRequestRecord(
                "HEAD", url(port, "/head"), "HTTP/1.1", [("Host", f"127.0.0.1:{port}")]
            ),
            HttpRequestRecord(
                "PURGE", url(port, "/cache"), "HTTP/1.0", [("Host", f"127.0.0.1:{port}")]
            ),
            # Host after an empty header, and a second Host
            HttpRequestRecord(
                "GET",
                url(port, "/2"),
                "HTTP/1.1",
                [("X-E", ""), ("host", "a"), ("X-M", "m"), ("Host", "b"), ("accept", "")],
            ),
        ]

    reqs, got, port, _ = await run_commands(build)
    assert len(got) == 2 * len(reqs)
    for i, req in enumerate(reqs):
        want = expected_bytes(req, port)
        if req.headers[-1] == ("Cookie", "a=b; c=d"):
            # an empty value goes out as "X-Empty:" (curl's only way to send one)
            want = want.replace(b"X-Empty: \r\n", b"X-Empty:\r\n")
        want = want.replace(b"X-E: \r\n", b"X-E:\r\n").replace(b"accept: \r\n", b"accept:\r\n")
        assert got[2 * i] == want
        assert got[2 * i + 1] == want  # dash: same bytes


async def test_a_leading_host_keeps_its_place_but_curl_writes_it_as_host(
    require_peer: Callable,
) -> None:
    require_peer("curl")

    def build(port: int) -> list[HttpRequestRecord]:
        return [HttpRequestRecord("GET", url(port, "/"), "HTTP/1.1", [("host", "h"), ("A", "1")])]

    _, got, _, _ = await run_commands(build, shells=("sh",))
    assert got == [b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\n\r\n"]


def body_req(
    port: int, method: str, body: bytes, headers: list[tuple[str, str]]
) -> HttpRequestRecord:
    return HttpRequestRecord(
        method,
        url(port, f"/{method.lower()}"),
        "HTTP/1.1",
        [("Host", f"127.0.0.1:{port}"), *headers],
        CapturedBody.of(body),
    )


TEXT = "line 1\nline 'two' \"quoted\" $PATH `uname` \\n é ☃\n\ttabbed\n".encode()


async def test_text_and_binary_bodies(require_peer: Callable) -> None:
    require_peer("curl")
    everything = bytes(range(256)) * 3

    def build(port: int) -> list[HttpRequestRecord]:
        return [
            body_req(
                port,
                "POST",
                TEXT,
                [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(TEXT)))],
            ),
            body_req(port, "POST", b"@/etc/passwd", [("Content-Length", "12")]),
            body_req(
                port,
                "PUT",
                everything,
                [("content-length", str(len(everything))), ("X-After", "body-headers")],
            ),
            body_req(port, "PATCH", b"\r\nCRLF\r\n", [("Content-Length", "8")]),
            body_req(port, "DELETE", b"{}", [("Content-Length", "2"), ("Content-Type", "x/y")]),
            body_req(port, "POST", b"", [("Content-Length", "0")]),
            # over 1 MiB: curl would send "Expect: 100-continue" unless told not to
            body_req(port, "POST", b"\x00\xff" * 600_000, [("Content-Length", "1200000")]),
        ]

    reqs, got, port, cmds = await run_commands(build)
    assert "--data-binary 'line 1" in cmds[0]
    assert "--data-raw '@/etc/passwd'" in cmds[2]
    assert "base64 -d" in cmds[4]
    assert "--compressed" not in " ".join(cmds)
    for i, req in enumerate(reqs):
        want = expected_bytes(req, port)
        assert got[2 * i] == want, req.method
        assert got[2 * i + 1] == want, req.method


async def test_binary_body_from_a_file(require_peer: Callable, tmp_path: Path) -> None:
    require_peer("curl")
    body = bytes(range(256))[::-1]
    cap = Capture()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    req = body_req(port, "POST", body, [("Content-Length", "256"), ("Content-Type", "a/b")])
    path = tmp_path / "body with 'quote'.bin"
    cmd = to_curl(Flow(req), binary_body="file", body_file=path)
    assert path.read_bytes() == body
    assert path.stat().st_mode & 0o777 == 0o600
    tmp_cmd = to_curl(req, binary_body="file")
    tmp_file = tmp_cmd.split("'@", 1)[1].split("'", 1)[0]
    try:
        assert Path(tmp_file).read_bytes() == body
    finally:
        os.unlink(tmp_file)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, cap.handle)
        with anyio.fail_after(20):
            res = await anyio.run_process(["sh", "-c", cmd + " -sS -o /dev/null"], check=False)
        assert res.returncode == 0, res.stderr
        tg.cancel_scope.cancel()
    assert cap.requests == [expected_bytes(req, port)]


def test_truncated_bodies_are_refused_unless_allowed() -> None:
    req = HttpRequestRecord(
        "POST", "http://h.test/", body=CapturedBody.of(b"abcdef", limit=3), headers=[("Host", "h")]
    )
    with pytest.raises(ValueError, match="truncated"):
        to_curl(req)
    assert "--data-binary 'abc'" in to_curl(req, allow_truncated=True)
    with pytest.raises(ValueError, match="absolute"):
        to_curl(HttpRequestRecord("GET", "/relative"))
    with pytest.raises(ValueError, match="shell"):
        to_curl(req, shell="fish", allow_truncated=True)  # type: ignore[arg-type]


def test_userinfo_is_not_given_to_curl() -> None:
    req = HttpRequestRecord("GET", "http://u:p@h.test/x", "HTTP/1.1", [("Host", "h.test")])
    cmd = to_curl(req)
    assert "'http://h.test/x'" in cmd
    assert "u:p" not in cmd


def test_version_flags() -> None:
    def cmd(version: str, url: str = "https://h.test/") -> str:
        return to_curl(HttpRequestRecord("GET", url, version, [("accept", "*/*")]))

    assert cmd("HTTP/1.1").startswith("curl --http1.1 -g --path-as-is ")
    assert "--http1.0" in cmd("HTTP/1.0")
    assert "--http2 " in cmd("HTTP/2")
    assert "--http2-prior-knowledge" in cmd("HTTP/2", "http://h.test/")
    assert "--http3" in cmd("HTTP/3")
    # h2: :authority comes from the URL; no Host suppression, pseudo-headers skipped
    h2 = to_curl(
        HttpRequestRecord(
            "GET", "https://h.test/", "HTTP/2", [(":authority", "h.test"), ("a", "1")]
        )
    )
    assert h2 == (
        "curl --http2 -g --path-as-is 'https://h.test/' -H 'a: 1' -H 'User-Agent:' -H 'Accept:'"
    )


# -- PowerShell: golden strings (pwsh is not installed) -------------------------------------
def test_powershell_golden_get() -> None:
    req = HttpRequestRecord(
        "GET",
        "https://h.test/p?q='1'",
        "HTTP/1.1",
        [("Host", "h.test"), ("X-Odd", 'it\'s $x `y` "z"'), ("X-Empty", "")],
    )
    assert to_curl(req, shell="powershell") == (
        "& curl.exe --http1.1 -g --path-as-is 'https://h.test/p?q=''1''' "
        "-H 'Host: h.test' -H 'X-Odd: it''s $x `y` \"z\"' -H 'X-Empty;' "
        "-H 'User-Agent:' -H 'Accept:'"
    )


def test_powershell_golden_text_body() -> None:
    req = HttpRequestRecord(
        "PUT",
        "http://h.test/t",
        "HTTP/1.1",
        [("Host", "h.test"), ("Content-Length", "9")],
        CapturedBody.of(b"a'b\nc $d"),
    )
    assert to_curl(req, shell="powershell") == (
        "& curl.exe --http1.1 -g --path-as-is -X 'PUT' 'http://h.test/t' -H 'Host: h.test' "
        "-H 'Content-Length: 9' -H 'User-Agent:' -H 'Accept:' -H 'Content-Type:' -H 'Expect:' "
        "--data-binary 'a''b\nc $d'"
    )


def test_powershell_golden_binary_body_base64_and_file(tmp_path: Path) -> None:
    req = HttpRequestRecord(
        "POST",
        "http://h.test/b",
        "HTTP/1.1",
        [("Host", "h.test"), ("Content-Length", "3"), ("Content-Type", "application/x")],
        CapturedBody.of(b"\x00\x01\xff"),
    )
    assert to_curl(req, shell="powershell") == (
        "$rama_body = New-TemporaryFile; "
        "[IO.File]::WriteAllBytes($rama_body, [Convert]::FromBase64String('AAH/')); "
        "& curl.exe --http1.1 -g --path-as-is 'http://h.test/b' -H 'Host: h.test' "
        "-H 'Content-Length: 3' -H 'Content-Type: application/x' -H 'User-Agent:' "
        "-H 'Accept:' -H 'Expect:' --data-binary \"@$rama_body\"; Remove-Item $rama_body"
    )
    path = tmp_path / "b.bin"
    assert to_curl(req, shell="powershell", binary_body="file", body_file=path) == (
        "& curl.exe --http1.1 -g --path-as-is 'http://h.test/b' -H 'Host: h.test' "
        "-H 'Content-Length: 3' -H 'Content-Type: application/x' -H 'User-Agent:' "
        f"-H 'Accept:' -H 'Expect:' --data-binary '@{path}'"
    )
    assert path.read_bytes() == b"\x00\x01\xff"


def test_posix_golden_binary_base64() -> None:
    req = HttpRequestRecord(
        "POST",
        "http://h.test/b",
        "HTTP/1.1",
        [("Host", "h.test"), ("Content-Length", "3"), ("X-L", "\u00e9")],
        CapturedBody.of(b"\x00\x01\xff"),
    )
    assert to_curl(req) == (
        "printf '%s' 'AAH/' | base64 -d | curl --http1.1 -g --path-as-is 'http://h.test/b' "
        "-H 'Host: h.test' -H 'Content-Length: 3' -H 'X-L: '\"$(printf '\\351')\" "
        "-H 'User-Agent:' -H 'Accept:' -H 'Content-Type:' -H 'Expect:' --data-binary @-"
    )


def test_powershell_golden_host_glued_to_the_previous_header() -> None:
    req = HttpRequestRecord("GET", "http://h.test/", "HTTP/1.1", [("A", "1"), ("HOST", "h")])
    assert to_curl(req, shell="powershell") == (
        "& curl.exe --http1.1 -g --path-as-is 'http://h.test/' "
        "-H ('A: 1' + \"`r`n\" + 'HOST: h') -H 'Host:' -H 'User-Agent:' -H 'Accept:'"
    )


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=40).filter(lambda b: b"\x00" not in b))
def test_posix_words_survive_a_real_shell(data: bytes) -> None:
    """Whatever the bytes (quotes, $, backticks, CR, invalid UTF-8), sh hands them over as is."""
    word = _posix_word(data)
    out = subprocess.run(
        ["sh", "-c", f"printf '%s' {word}"], capture_output=True, check=True, timeout=10
    ).stdout
    assert out == data


async def test_http2_export_against_the_rama_h2_server(
    require_peer: Callable, tmp_path: Path
) -> None:
    """--http2 over TLS: curl sends the recorded header fields in order, and the body."""
    import ssl

    from rama_http_client_peer import rama_server

    from rama_core import Context
    from rama_http import Request, Response
    from rama_tls import CertificateAuthority

    curl = require_peer("curl")
    ca = CertificateAuthority.create()
    leaf = ca.issue("localhost", "127.0.0.1")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem())
    (tmp_path / "leaf.pem").write_bytes(leaf.chain_pem())
    (tmp_path / "leaf.key").write_bytes(leaf.key_pem())
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    ctx.set_alpn_protocols(["h2"])
    seen: list[tuple[str, str, str, list[tuple[str, str]], bytes]] = []

    async def record(c: Context, req: Request) -> Response:
        body = await req.read(limit=1 << 20)
        seen.append((req.method, req.target, req.version.value, req.headers.items(), body))
        return Response(200, body=b"ok")

    body = bytes(range(256))
    async with rama_server(record, ssl_context=ctx) as port:
        req = HttpRequestRecord(
            "PUT",
            f"https://localhost:{port}/h2/path?q=1",
            "HTTP/2",
            [
                (":authority", f"localhost:{port}"),
                ("x-z", "last-alphabetically-first"),
                ("content-type", "application/octet-stream"),
                ("x-odd", ODD),
                ("content-length", "256"),
                ("accept", "*/*"),
            ],
            CapturedBody.of(body),
        )
        cmd = to_curl(req)
        assert cmd.startswith("printf '%s' ")
        assert "--http2 " in cmd
        extra = f" -sS --max-time 10 -o /dev/null --cacert {tmp_path / 'ca.pem'}"
        extra += f" --resolve localhost:{port}:127.0.0.1"
        with anyio.fail_after(20):
            res = await anyio.run_process(["sh", "-c", cmd.replace("curl ", f"{curl} ", 1) + extra])
        assert res.returncode == 0, res.stderr
    method, target, version, headers, got = seen[0]
    assert (method, target, version) == ("PUT", "/h2/path?q=1", "HTTP/2")
    assert [(n, v) for n, v in headers if n.lower() != "host"] == [
        (n, v) for n, v in req.headers if not n.startswith(":")
    ]
    assert got == body


def test_to_curl_takes_a_rama_request() -> None:
    from rama_http import Body, Request

    req = Request("PUT", "/x", headers=[("Host", "h.test"), ("Content-Length", "2")], body=b"hi")
    assert to_curl(req) == (
        "curl --http1.1 -g --path-as-is -X 'PUT' 'http://h.test/x' -H 'Host: h.test' "
        "-H 'Content-Length: 2' -H 'User-Agent:' -H 'Accept:' -H 'Content-Type:' -H 'Expect:' "
        "--data-binary 'hi'"
    )

    async def chunks():  # type: ignore[no-untyped-def]
        yield b"x"

    with pytest.raises(ValueError, match="streaming"):
        to_curl(Request("POST", "http://h.test/", body=Body.from_iter(chunks())))
