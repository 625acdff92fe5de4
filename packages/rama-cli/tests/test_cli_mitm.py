"""``rama ca`` and ``rama serve proxy --mitm`` as subprocesses, with curl --cacert the CA:
HTTP CONNECT and SOCKS5 intercepted, a pass-through host untouched, the HAR and JSON lines
written on SIGINT."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rama_proxy.flows import Flow, TunnelFlow, load_har, read_jsonl
from rama_tls import CertificateAuthority

sys.path.insert(0, str(Path(__file__).parent))
from test_cli_proxy import RAMA, _stop, curl
from test_cli_proxy import rama_proxy as run_rama


class _Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = f"tls origin {self.path} {self.headers.get('user-agent', '')[:4]}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def tls_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    d = tmp_path_factory.mktemp("origin")
    ca = CertificateAuthority.create("cli origin CA")
    leaf = ca.issue("localhost", "127.0.0.1")
    (d / "cert.pem").write_bytes(leaf.chain_pem())
    (d / "key.pem").write_bytes(leaf.key_pem())
    (d / "ca.pem").write_bytes(ca.cert_pem())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], d / "ca.pem"
    server.shutdown()
    server.server_close()


def _rama(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RAMA, *args], capture_output=True, text=True, timeout=30, check=False)


def test_ca_init_show_path(tmp_path: Path) -> None:
    d = tmp_path / "ca"
    r = _rama("ca", "path", "--ca-dir", str(d))
    assert r.returncode == 1
    assert "rama ca init" in r.stderr
    r = _rama("ca", "init", "--ca-dir", str(d))
    assert r.returncode == 0, r.stderr
    assert "--ignore-certificate-errors-spki-list=" in r.stdout
    assert "curl --cacert" in r.stdout
    assert (d / "ca.key").stat().st_mode & 0o777 == 0o600
    cert = (d / "ca.pem").read_bytes()
    r = _rama("ca", "init", "--ca-dir", str(d))
    assert r.returncode == 1
    assert "--force" in r.stderr
    assert (d / "ca.pem").read_bytes() == cert  # not overwritten
    r = _rama("ca", "path", "--ca-dir", str(d))
    assert r.returncode == 0
    assert r.stdout.strip() == str(d / "ca.pem")
    r = _rama("ca", "show", "--ca-dir", str(d), "--json")
    assert r.returncode == 0
    assert json.loads(r.stdout)["subject"].endswith("CN=rama MITM CA")
    r = _rama("ca", "init", "--ca-dir", str(d), "--force")
    assert r.returncode == 0
    assert (d / "ca.pem").read_bytes() != cert


def test_serve_proxy_mitm_records_har_and_flows(
    tls_origin: tuple[int, Path], tmp_path: Path
) -> None:
    port, origin_ca = tls_origin
    ca_dir, har, flows = tmp_path / "ca", tmp_path / "s.har", tmp_path / "f.jsonl"
    args = ["--mitm", "--ca-dir", str(ca_dir), "--upstream-ca", str(origin_ca)]
    args += ["--pass-through", "127.0.0.1", "--har", str(har), "--flows", str(flows)]
    with run_rama(*args) as run:
        ca_file = str(ca_dir / "ca.pem")
        assert f"curl --cacert {ca_file}" in run.banner
        a = run.address
        for proxy in (["-x", f"http://{a}"], ["--socks5-hostname", a]):
            r = curl(*proxy, "--cacert", ca_file, f"https://localhost:{port}/x")
            assert r.returncode == 0, r.stderr
            assert r.stdout == "tls origin /x curl"
        # a pass-through host keeps its real certificate (the MITM CA is not enough)
        r = curl("-x", f"http://{a}", "--cacert", ca_file, f"https://127.0.0.1:{port}/pt")
        assert r.returncode == 60, r.stderr
        r = curl("-x", f"http://{a}", "--cacert", str(origin_ca), f"https://127.0.0.1:{port}/pt")
        assert r.returncode == 0, r.stderr
        assert _stop(run, signal.SIGINT) == 0
    entries = load_har(har)
    assert [f.request.url for f in entries] == [f"https://localhost:{port}/x"] * 2
    assert all(f.response is not None and f.response.status == 200 for f in entries)
    recorded = list(read_jsonl(flows))
    assert sum(isinstance(f, Flow) for f in recorded) == 2
    assert sum(isinstance(f, TunnelFlow) for f in recorded) == 2  # the two pass-through tries


def test_serve_proxy_mitm_option_errors(tmp_path: Path) -> None:
    r = _rama("serve", "proxy", "--har", str(tmp_path / "x.har"))
    assert r.returncode == 2
    assert "needs --mitm" in r.stderr
    r = _rama("serve", "proxy", "--mitm", "--upstream-insecure", "--upstream-ca", "x.pem")
    assert r.returncode == 2
    assert "exclude each other" in r.stderr
    r = _rama("serve", "proxy", "--mitm", "--workers", "2", "--har", "x.har")
    assert r.returncode == 2
    assert "--workers 1" in r.stderr
