"""Run examples/record_har.py as a user would: curl through its HTTP proxy and its SOCKS5
port to a local TLS origin, SIGINT, then the HAR (schema-valid, redacted) and JSON lines."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import anyio
import jsonschema  # type: ignore[import-untyped]
import pytest
from rama_example_process import start_example_lines, stop_example
from rama_peer_process import run_curl
from rama_test_origin import tls_origin

from rama_core import Context
from rama_http import Request, Response
from rama_proxy.flows import REDACTED, Flow, TunnelFlow, har_schema, load_har, read_jsonl
from rama_tls import CertificateAuthority

HERE = Path(__file__).parent
START_TIMEOUT = 10.0


async def _origin(ctx: Context, req: Request) -> Response:
    body = await req.body.read()
    return Response.from_text(f"{req.method} {req.path} {len(body)}\n")


def _start(*args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    return start_example_lines(HERE / "record_har.py", *args, until="ca", timeout=START_TIMEOUT)


def _stop(proc: subprocess.Popen[str]) -> str:
    return stop_example(proc)[0]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the example runs in a subprocess
async def test_record_har_example(
    tmp_path: Path, require_peer: Callable[[str], str], anyio_backend: str
) -> None:
    require_peer("curl")
    origin_ca = CertificateAuthority.create("example origin CA")
    origin_ca_file = tmp_path / "origin-ca.pem"
    origin_ca_file.write_bytes(origin_ca.cert_pem())
    har, flows = tmp_path / "session.har", tmp_path / "flows.jsonl"
    async with tls_origin(origin_ca, _origin) as oport:
        proc, lines = await anyio.to_thread.run_sync(
            lambda: _start(
                "--har",
                str(har),
                "--flows",
                str(flows),
                "--listen",
                "127.0.0.1:0",
                "--socks-listen",
                "127.0.0.1:0",
                "--ca-dir",
                str(tmp_path / "ca"),
                "--upstream-ca",
                str(origin_ca_file),
                "--pass-through",
                "127.0.0.1",
            )
        )
        try:
            ca_file = lines["ca"]
            code, out, err = await run_curl(
                "-x", f"http://{lines['listening on']}", "--cacert", ca_file,
                "-H", "Authorization: Basic c2VjcmV0", "--data-binary", "abc",
                f"https://localhost:{oport}/via-http",
            )  # fmt: skip
            assert code == 0, err
            assert out == "POST /via-http 3\n"
            code, out, err = await run_curl(
                "--socks5-hostname", lines["socks on"], "--cacert", ca_file,
                f"https://localhost:{oport}/via-socks",
            )  # fmt: skip
            assert code == 0, err
            assert out == "GET /via-socks 0\n"
            code, out, err = await run_curl(  # passed through: the origin's own certificate
                "-x", f"http://{lines['listening on']}", "--cacert", str(origin_ca_file),
                f"https://127.0.0.1:{oport}/tunnel",
            )  # fmt: skip
            assert code == 0, err
        finally:
            out = await anyio.to_thread.run_sync(_stop, proc)
    assert "recorded 3 flows" in out
    doc = json.loads(har.read_text())
    jsonschema.validate(doc, har_schema())
    entries = {e["request"]["url"].rsplit("/", 1)[1]: e for e in doc["log"]["entries"]}
    assert set(entries) == {"via-http", "via-socks"}
    post = entries["via-http"]
    assert post["request"]["httpVersion"] == "HTTP/2"  # h2 end to end, recorded as such
    assert post["request"]["postData"]["text"] == "abc"
    assert post["response"]["content"]["text"] == "POST /via-http 3\n"
    assert post["serverIPAddress"] == "127.0.0.1"
    auth = [h["value"] for h in post["request"]["headers"] if h["name"].lower() == "authorization"]
    assert auth == [REDACTED]
    assert len(load_har(har)) == 2
    records = list(read_jsonl(flows))
    assert sum(isinstance(f, Flow) for f in records) == 2
    [tunnel] = [f for f in records if isinstance(f, TunnelFlow)]
    assert tunnel.target == ("127.0.0.1", oport)
    assert tunnel.bytes_down > 0
