"""The MITM CA on disk: permissions, no silent overwrite, load round trip, and leaves
from the loaded CA accepted by openssl verify and by curl --cacert."""

from __future__ import annotations

import base64
import http.server
import logging
import os
import ssl
import stat
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from cryptography.hazmat.primitives import hashes
from rama_http_client_peer import rama_server, server_ssl

from rama_core import Context
from rama_http import Request, Response
from rama_proxy.ca import (
    CaExistsError,
    CaNotFoundError,
    CaStore,
    default_ca_dir,
    spki_sha256,
)
from rama_tls import CertificateError


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_init_writes_cert_and_key_with_tight_permissions(tmp_path: Path) -> None:
    store = CaStore(tmp_path / "deep" / "ca")
    assert not store.exists()
    ca = store.init()
    assert store.exists()
    assert mode(store.directory) == 0o700
    assert mode(store.key_path) == 0o600
    assert mode(store.cert_path) == 0o644
    assert store.cert_path.read_bytes() == ca.cert_pem()
    assert b"PRIVATE KEY" in store.key_path.read_bytes()
    assert sorted(p.name for p in store.directory.iterdir()) == ["ca.key", "ca.pem"]  # no temps
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    CaStore(shared).init()  # an existing directory keeps its mode; the key is still 0600
    assert mode(shared) == 0o755
    assert mode(shared / "ca.key") == 0o600


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    store = CaStore(tmp_path)
    first = store.init()
    before = (store.cert_path.read_bytes(), store.key_path.read_bytes())
    with pytest.raises(CaExistsError, match="force"):
        store.init()
    assert (store.cert_path.read_bytes(), store.key_path.read_bytes()) == before
    # a lone key (or certificate) also counts: never clobber half a CA
    store.cert_path.unlink()
    with pytest.raises(CaExistsError):
        store.init()
    second = store.init(force=True)
    assert second.cert.fingerprint(hashes.SHA256()) != first.cert.fingerprint(hashes.SHA256())
    assert store.load().cert == second.cert
    assert mode(store.key_path) == 0o600


def test_concurrent_inits_leave_exactly_one_consistent_ca(tmp_path: Path) -> None:
    store = CaStore(tmp_path)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        try:
            CaStore(tmp_path).init()
        except CaExistsError as e:
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) >= 3
    store.load()  # key and certificate belong together


def test_load_round_trip_and_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = CaStore(tmp_path)
    with pytest.raises(CaNotFoundError, match="rama ca init"):
        store.load()
    with pytest.raises(CaNotFoundError):
        store.show()
    ca = store.init(key_type="rsa", common_name="Test CA")
    loaded = store.load()
    assert loaded.cert == ca.cert
    assert loaded.cert_pem() == ca.cert_pem()
    assert loaded.as_certified_key().key_pem() == ca.as_certified_key().key_pem()
    # world-readable key: loads, with a warning
    store.key_path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="rama_proxy.ca"):
        store.load()
    assert "chmod 600" in caplog.text
    # a key that does not match the certificate
    other = CaStore(tmp_path / "other")
    other.init()
    store.key_path.write_bytes(other.key_path.read_bytes())
    with pytest.raises(CertificateError):
        store.load()
    store.cert_path.write_bytes(b"garbage")
    with pytest.raises(CertificateError):
        store.load()


def test_load_or_init(tmp_path: Path) -> None:
    store = CaStore(tmp_path / "x")
    a = store.load_or_init()
    b = store.load_or_init()
    assert a.cert == b.cert


def openssl(*args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        ["openssl", *args], input=stdin, capture_output=True, check=True, timeout=30
    ).stdout


def test_show_matches_openssl(tmp_path: Path, require_peer: Callable[[str], str]) -> None:
    require_peer("openssl")
    store = CaStore(tmp_path)
    store.init(common_name="Show CA", valid_days=30)
    info = store.show()
    assert info.subject == "O=rama,CN=Show CA"
    assert info.key == "EC secp256r1"
    assert not info.expired
    assert (info.not_after - info.not_before).days == 31  # backdated a day
    out = openssl("x509", "-noout", "-fingerprint", "-sha256", "-in", str(store.cert_path))
    assert out.decode().strip().split("=", 1)[1] == info.sha256_fingerprint
    pub = openssl("x509", "-pubkey", "-noout", "-in", str(store.cert_path))
    der = openssl("pkey", "-pubin", "-outform", "der", stdin=pub)
    digest = openssl("dgst", "-sha256", "-binary", stdin=der)
    assert base64.b64encode(digest).decode() == info.spki_sha256
    assert spki_sha256(store.load().cert) == info.spki_sha256
    d = info.to_dict()
    assert d["spki_sha256"] == info.spki_sha256
    assert d["cert_path"] == str(store.cert_path)
    assert info.spki_sha256 in info.text()
    serial = openssl("x509", "-noout", "-serial", "-in", str(store.cert_path)).decode()
    assert serial.strip().split("=", 1)[1].lstrip("0") == info.serial


def test_trust_instructions(tmp_path: Path) -> None:
    store = CaStore(tmp_path)
    store.init()
    text = store.trust_instructions(proxy="http://127.0.0.1:9999")
    info = store.show()
    pem = str(store.cert_path)
    for needle in (
        f"--cacert '{pem}'",
        f"--ignore-certificate-errors-spki-list={info.spki_sha256}",
        "--proxy-server=http://127.0.0.1:9999",
        "certutil -d sql:$HOME/.pki/nssdb -A",
        "update-ca-certificates",
        "security add-trusted-cert -d -r trustRoot",
        "certutil -addstore -f ROOT",
        info.sha256_fingerprint,
    ):
        assert needle in text


def test_default_dir_is_xdg_aware(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("RAMA_CA_DIR", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert default_ca_dir() == home / ".rama" / "ca"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_ca_dir() == tmp_path / "xdg" / "rama" / "ca"
    assert CaStore().directory == tmp_path / "xdg" / "rama" / "ca"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    assert default_ca_dir() == home / ".rama" / "ca"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    (home / ".rama" / "ca").mkdir(parents=True)  # an existing ~/.rama/ca wins
    assert default_ca_dir() == home / ".rama" / "ca"
    monkeypatch.setenv("RAMA_CA_DIR", str(tmp_path / "explicit"))
    assert default_ca_dir() == tmp_path / "explicit"


def test_leaf_from_loaded_ca_passes_openssl_verify(
    tmp_path: Path, require_peer: Callable[[str], str]
) -> None:
    require_peer("openssl")
    store = CaStore(tmp_path / "ca")
    store.init()
    leaf = store.load().issue("example.test", "127.0.0.1")
    leaf_pem = tmp_path / "leaf.pem"
    leaf_pem.write_bytes(leaf.cert_pem())
    out = openssl("verify", "-CAfile", str(store.cert_path), str(leaf_pem))
    assert out.strip().endswith(b": OK")
    # and a CA that is not ours does not verify it
    other = CaStore(tmp_path / "other")
    other.init()
    bad = subprocess.run(
        ["openssl", "verify", "-CAfile", str(other.cert_path), str(leaf_pem)],
        capture_output=True,
        timeout=30,
    )
    assert bad.returncode != 0


@pytest.mark.anyio
async def test_curl_cacert_trusts_a_server_using_a_leaf_from_the_store(
    tmp_path: Path, require_peer: Callable[[str], str]
) -> None:
    curl = require_peer("curl")
    store = CaStore(tmp_path / "ca")
    store.init()
    leaf = store.load().issue("localhost", "127.0.0.1")
    ctx = server_ssl(leaf, tmp_path)

    async def hello(ctx: Context, req: Request) -> Response:
        return Response.from_text("trusted\n")

    async with rama_server(hello, ssl_context=ctx) as port:
        with anyio.fail_after(20):
            ok = await anyio.run_process(
                [
                    curl,
                    "-sS",
                    "--max-time",
                    "10",
                    "--cacert",
                    str(store.cert_path),
                    f"https://127.0.0.1:{port}/",
                    "--resolve",
                    f"localhost:{port}:127.0.0.1",
                ],
                check=False,
            )
            by_name = await anyio.run_process(
                [
                    curl,
                    "-sS",
                    "--max-time",
                    "10",
                    "--cacert",
                    str(store.cert_path),
                    "--resolve",
                    f"localhost:{port}:127.0.0.1",
                    f"https://localhost:{port}/",
                ],
                check=False,
            )
            other = CaStore(tmp_path / "other")
            other.init()
            refused = await anyio.run_process(
                [
                    curl,
                    "-sS",
                    "--max-time",
                    "10",
                    "--cacert",
                    str(other.cert_path),
                    f"https://127.0.0.1:{port}/",
                ],
                check=False,
            )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == b"trusted\n"
    assert by_name.returncode == 0, by_name.stderr
    assert by_name.stdout == b"trusted\n"
    assert refused.returncode == 60  # peer certificate cannot be authenticated


class PageServer:
    """A stdlib HTTPS server (a thread) answering every GET with ``page``."""

    def __init__(self, ctx: ssl.SSLContext, page: bytes) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args: object) -> None:
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.srv.server_address[1]}/"

    def __enter__(self) -> PageServer:
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.srv.shutdown()
        self.srv.server_close()


def headless(
    chromium: str, url: str, profile: Path, *flags: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={profile}",
            *flags,
            "--dump-dom",
            url,
        ],
        capture_output=True,
        timeout=60,
        env=env,
    )


def test_chromium_accepts_the_ca_by_its_spki_hash(
    tmp_path: Path, require_peer: Callable[[str], str]
) -> None:
    """The flag from trust_instructions() works: headless Chromium loads a page whose leaf
    comes from the store's CA when given the CA's SPKI hash, and refuses it without."""
    chromium = require_peer("chromium")
    store = CaStore(tmp_path / "ca")
    store.init()
    leaf = store.load().issue("localhost", "127.0.0.1")  # the chain includes the CA
    with PageServer(server_ssl(leaf, tmp_path), b"<p>trusted-by-spki</p>") as srv:
        spki = store.show().spki_sha256
        flag = f"--ignore-certificate-errors-spki-list={spki}"
        assert flag in store.trust_instructions()
        ok = headless(chromium, srv.url, tmp_path / "p1", flag)
        assert b"trusted-by-spki" in ok.stdout, ok.stderr[-500:]
        refused = headless(chromium, srv.url, tmp_path / "p2")
        assert b"trusted-by-spki" not in refused.stdout
        assert b"ERR_CERT_AUTHORITY_INVALID" in refused.stderr


def test_the_nss_instructions_make_chromium_trust_the_ca(
    tmp_path: Path, require_peer: Callable[[str], str]
) -> None:
    """Run the NSS lines of trust_instructions() as printed (with HOME in a temp dir);
    Chromium then trusts the CA without any flag."""
    chromium = require_peer("chromium")
    require_peer("certutil")
    store = CaStore(tmp_path / "ca")
    store.init()
    leaf = store.load().issue("localhost", "127.0.0.1")
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    lines = [
        line.strip()
        for line in store.trust_instructions().splitlines()
        if ".pki/nssdb" in line and "(" not in line
    ]
    assert len(lines) == 3
    for line in lines:
        done = subprocess.run(["sh", "-c", line], env=env, capture_output=True, timeout=30)
        assert done.returncode == 0, done.stderr
    with PageServer(server_ssl(leaf, tmp_path), b"<p>trusted-by-nss</p>") as srv:
        ok = headless(chromium, srv.url, tmp_path / "p", env=env)
        assert b"trusted-by-nss" in ok.stdout, ok.stderr[-500:]
