"""Run the rama-http examples as a user would: a real process, real clients, SIGINT to stop."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from rama_example_process import start_example, stop_example

HERE = Path(__file__).parent
START_TIMEOUT = 8.0


def _start(script: str, *args: str) -> tuple[subprocess.Popen[str], int]:
    return start_example(HERE / script, *args, timeout=START_TIMEOUT)


def _stop(proc: subprocess.Popen[str]) -> str:
    return stop_example(proc)[0]


@pytest.mark.parametrize("engine", ["fast", "h11", "httptools"])
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_http_hello_example(engine: str, backend: str, require_peer: Callable[[str], str]) -> None:
    curl = require_peer("curl")
    proc, port = _start("http_hello.py", "--engine", engine, "--backend", backend)
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as client:
            hello = client.get("/")
            echo = client.post("/echo", content=b"ping", headers={"X-Mixed-Case": "1"})
            stream = client.get("/stream", params={"n": "5"})
            fp = client.get("/ja4h").json()
            missing = client.get("/nope")
        head = subprocess.run(
            [curl, "-sS", "-I", f"{base}/"], capture_output=True, text=True, timeout=10, check=True
        )
    finally:
        out = _stop(proc)
    assert hello.text == "hello\n"
    assert hello.headers["server"] == "rama-example"
    assert echo.content == b"ping"
    assert echo.headers["x-header-names"].endswith(",X-Mixed-Case,Content-Length")
    assert stream.headers["transfer-encoding"] == "chunked"
    assert stream.text == "".join(f"line {i}\n" for i in range(5))
    assert fp["ja4h"].startswith("ge11nn")
    assert fp["ja4h_r"].split("_")[1].startswith("Host,")
    assert missing.status_code == 404
    assert head.stdout.startswith("HTTP/1.1 200 OK")
    assert "Content-Length: 6" in head.stdout
    assert out.strip().endswith("stopped (SIGINT)")


def test_http_hello_example_finishes_in_flight_request_on_sigint() -> None:
    proc, port = _start("http_hello.py", "--grace", "5")
    started = threading.Event()
    got: list[tuple[int, bytes, str | None]] = []

    def slow_stream() -> None:
        url = f"http://127.0.0.1:{port}/stream"
        with httpx.Client(timeout=10) as client:
            with client.stream("GET", url, params={"n": "10000"}) as r:
                parts = []
                for chunk in r.iter_bytes():
                    parts.append(chunk)
                    started.set()
                got.append((r.status_code, b"".join(parts), r.headers.get("connection")))

    worker = threading.Thread(target=slow_stream)
    worker.start()
    try:
        assert started.wait(10), "the response did not start"
    finally:
        out = _stop(proc)
    worker.join(10)
    assert got, "request was not answered"
    status, body, _ = got[0]
    assert status == 200
    assert body.count(b"\n") == 10000
    assert "stopped (SIGINT)" in out


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_http_auto_server_example(
    backend: str, tmp_path: Path, require_peer: Callable[[str], str]
) -> None:
    import ssl
    import time

    curl = require_peer("curl")
    cert = tmp_path / "cert.pem"
    proc, port = _start("http_auto_server.py", "--backend", backend, "--cert-out", str(cert))
    try:
        assert proc.stdout is not None
        # Printed right after the first line (already buffered, so no select here).
        second = proc.stdout.readline()
        assert second.startswith("tls on "), second
        tls_port = int(second.rsplit(":", 1)[1])

        def curl_out(*args: str) -> str:
            done = subprocess.run(
                [curl, "-sS", "--fail", "--cacert", str(cert), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
            return done.stdout

        h1 = curl_out("--http1.1", f"http://127.0.0.1:{port}/")
        h2c = curl_out("--http2-prior-knowledge", f"http://127.0.0.1:{port}/")
        h2 = curl_out("--http2", f"https://127.0.0.1:{tls_port}/")
        h1_tls = curl_out("--http1.1", f"https://127.0.0.1:{tls_port}/")
        fp = curl_out("--http2", f"https://127.0.0.1:{tls_port}/fp")

        # curl (nghttp2) finishes a stream the GOAWAY's last-stream-id covers; httpx
        # (httpcore) fails every open stream on any GOAWAY, so it cannot show this.
        slow = subprocess.Popen(
            [curl, "-sS", "--http2-prior-knowledge", f"http://127.0.0.1:{port}/slow?s=2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        verify = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(verify=verify, http2=True, timeout=10) as client:
            via_httpx = client.get(f"https://127.0.0.1:{tls_port}/")
        time.sleep(0.5)  # the slow request is in flight (it takes 2 s) when SIGINT comes
    finally:
        out = _stop(proc)
    slow_out, slow_err = slow.communicate(timeout=10)
    assert h1 == "HTTP/1.1 GET\n"
    assert h2c == "HTTP/2 GET\n"
    assert h2 == "HTTP/2 GET\n"
    assert h1_tls == "HTTP/1.1 GET\n"
    assert via_httpx.http_version == "HTTP/2"
    assert via_httpx.text == "HTTP/2 GET\n"
    akamai = httpx.Response(200, content=fp.encode()).json()["akamai"]
    assert akamai.endswith("|0|m,p,s,a")
    # The h2 request in flight when SIGINT came was finished, not cut.
    assert (slow.returncode, slow_out) == (0, "slow done\n"), slow_err
    assert "stopped (SIGINT)" in out


def test_web_router_example() -> None:
    proc, port = _start("web_router.py")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            index = client.get("/")
            created = client.post("/items", json={"name": "pen", "price": 2.5, "tags": ["office"]})
            client.post("/items", json={"name": "cup", "price": 4})
            bad = client.post("/items", json={"name": "x", "price": "cheap"})
            by_tag = client.get("/items", params={"tag": "office"})
            limited = client.get("/items", params={"limit": "1"})
            one = client.get("/items/1")
            missing = client.get("/items/99")
            not_int = client.get("/items/abc")
            forbidden = client.delete("/items/1", headers={"X-Token": "nope"})
            deleted = client.delete("/items/1", headers={"X-Token": "secret"})
            after = client.get("/items/1")
            nested = client.post("/api/v1/items", json={"name": "n", "price": 1})
            nested_at_root = client.get("/items/3")
            wrong_method = client.put("/items")
    finally:
        out = _stop(proc)
    assert index.text == "hello from rama\n"
    assert created.status_code == 201
    assert created.json() == {"name": "pen", "price": 2.5, "tags": ["office"], "id": 1}
    assert bad.status_code == 422
    assert bad.json()["errors"] == [{"field": "body.price", "message": "must be a number"}]
    assert [i["name"] for i in by_tag.json()] == ["pen"]
    assert len(limited.json()) == 1
    assert one.json()["name"] == "pen"
    assert missing.status_code == 404
    assert not_int.status_code == 404
    assert forbidden.status_code == 403
    assert deleted.status_code == 204
    assert after.status_code == 404
    assert nested.status_code == 201
    assert nested.json()["id"] == 3
    assert nested_at_root.json()["name"] == "n"  # one store behind both mounts
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "GET, HEAD, POST, OPTIONS"
    assert out.strip().endswith("stopped (SIGINT)")


def test_static_files_example(tmp_path: Path, require_peer: Callable[[str], str]) -> None:
    curl = require_peer("curl")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("alpha " * 500)
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)) * 40)
    proc, port = _start("static_files.py", "--root", str(tmp_path), "--listing")
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as client:
            index = client.get("/")
            text = client.get("/docs/a.txt", headers={"Accept-Encoding": "gzip"})
            etag = text.headers["etag"]
            again = client.get("/docs/a.txt", headers={"If-None-Match": etag})
            ranged = client.get("/blob.bin", headers={"Range": "bytes=256-511"})
            health = client.get("/healthz")
            traversal = subprocess.run(
                [
                    curl,
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--path-as-is",
                    f"{base}/docs/../../etc/passwd",
                ],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
    finally:
        out = _stop(proc)
    assert 'href="docs/"' in index.text
    assert text.headers["content-encoding"] == "gzip"
    assert text.text == "alpha " * 500
    assert again.status_code == 304
    assert ranged.status_code == 206
    assert ranged.content == bytes(range(256))
    assert health.text == "ok\n"
    assert traversal.stdout in ("400", "404")
    assert out.strip().endswith("stopped (SIGINT)")


def test_websocket_echo_example() -> None:
    import asyncio
    import contextlib

    import websockets
    from websockets.asyncio.client import connect

    proc, port = _start("websocket_echo.py")

    async def talk() -> tuple[list[object], int | None]:
        got: list[object] = []
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send("one")
            got.append(await ws.recv())
            await ws.send(b"\x01\x02")
            got.append(await ws.recv())
            await ws.send("stats")
            got.append(await ws.recv())
            await ws.send("bye")
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.recv()
            return got, ws.close_code

    try:
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        got, code = asyncio.run(talk())
    finally:
        out = _stop(proc)
    assert "new WebSocket" in page.text
    assert got == ["one", b"\x01\x02", '{"text": 1, "binary": 1}']
    assert code == 4000
    assert out.strip().endswith("stopped (SIGINT)")
