"""The auto HTTP server (h1 + h2 on one port, TLS with ALPN) against real clients.

curl (HTTP/1.1, ``--http2-prior-knowledge``, ``--http2`` over TLS, HTTP/1.1
over TLS), h2load, and the Akamai h2 fingerprint of a real ``curl --http2``
connection cross-checked against tshark's decode of the same connection.
"""

from __future__ import annotations

import hashlib
import os
import signal
import ssl
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from rama_core import Context, service_fn
from rama_http import H2PrefaceRecord, PseudoHeaderOrder, Request, Response
from rama_http.fingerprint import AkamaiH2Fingerprint, akamai_h2_fingerprint
from rama_http.server import Http1Engine, ServerConfig, serve
from rama_net import TcpListener
from rama_tls import self_signed

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("h2_engine")]


async def describe(ctx: Context, req: Request) -> Response:
    """Echo what the handler sees: version, method, target, body digest, fingerprint."""
    body = await req.body.read(limit=8 << 20)
    record = ctx.get(H2PrefaceRecord)
    akamai = akamai_h2_fingerprint(record).text if record is not None else "-"
    order = ctx.get(PseudoHeaderOrder)
    text = (
        f"{req.version} {req.method} {req.target} {len(body)} "
        f"{hashlib.sha256(body).hexdigest()[:16]} {akamai} "
        f"{','.join(order.names) if order else '-'}\n"
    )
    return Response.from_text(text)


@dataclass
class Servers:
    plain: int
    tls: int
    cert: Path


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    ck = self_signed("localhost", "127.0.0.1")
    d = tmp_path_factory.mktemp("auto-peers")
    cert, key = d / "cert.pem", d / "key.pem"
    cert.write_bytes(ck.cert_pem())
    key.write_bytes(ck.key_pem())
    return cert, key


@asynccontextmanager
async def auto_servers(
    cert_files: tuple[Path, Path], config: ServerConfig | None = None
) -> AsyncIterator[Servers]:
    """A cleartext and a TLS auto server, both with :func:`describe`."""
    ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ssl_ctx.load_cert_chain(*cert_files)
    ssl_ctx.set_alpn_protocols(["h2", "http/1.1"])  # serve() leaves the context as it is
    plain = TcpListener.bind("127.0.0.1:0")
    tls = TcpListener.bind("127.0.0.1:0")
    svc = service_fn(describe)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(plain, svc, config))
        tg.start_soon(lambda: serve(tls, svc, config, ssl_context=ssl_ctx))
        try:
            yield Servers(plain.local_addr.port, tls.local_addr.port, cert_files[0])
        finally:
            tg.cancel_scope.cancel()


async def run(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 30) -> str:
    with anyio.fail_after(timeout):
        done = await anyio.run_process(cmd, check=False, env=env)
    assert done.returncode == 0, (cmd, done.returncode, done.stderr.decode(errors="replace"))
    return done.stdout.decode()


# -- curl ------------------------------------------------------------------------------------
CURL_CASES = [
    (["--http1.1"], False, "HTTP/1.1"),
    (["--http2-prior-knowledge"], False, "HTTP/2"),
    (["--http2"], True, "HTTP/2"),
    (["--http1.1"], True, "HTTP/1.1"),
]


async def curl_twice(curl: str, s: Servers, flags: list[str], tls: bool, upload: Path) -> list[str]:
    """A GET and a POST of ``upload``; one curl run each (curl 7.88 cannot reuse a
    prior-knowledge h2 connection with ``--next``: it fails with a framing error
    against nginx too)."""
    base = f"https://127.0.0.1:{s.tls}" if tls else f"http://127.0.0.1:{s.plain}"
    common = [
        curl,
        "-sS",
        "--fail",
        "--cacert",
        str(s.cert),
        *flags,
        "-w",
        "curl=%{http_version}\n",
    ]
    get = await run([*common, f"{base}/a?b=1"])
    post = await run([*common, "--data-binary", f"@{upload}", f"{base}/up"])
    return (get + post).splitlines()


@pytest.mark.parametrize(("flags", "tls", "want"), CURL_CASES)
async def test_curl_gets_the_version_it_asked_for(
    require_peer: Callable[[str], str],
    cert_files: tuple[Path, Path],
    tmp_path: Path,
    flags: list[str],
    tls: bool,
    want: str,
) -> None:
    curl = require_peer("curl")
    upload = tmp_path / "up.bin"
    upload.write_bytes(os.urandom(300_000))
    async with auto_servers(cert_files) as s:
        lines = await curl_twice(curl, s, flags, tls, upload)
    curl_version = {"HTTP/1.1": "1.1", "HTTP/2": "2"}[want]
    assert lines[0].startswith(f"{want} GET /a?b=1 0 ")
    assert lines[1] == f"curl={curl_version}"
    digest = hashlib.sha256(upload.read_bytes()).hexdigest()[:16]
    expected = f"{want} POST /up 300000 {digest} "
    assert lines[2].startswith(expected)
    assert lines[3] == f"curl={curl_version}"


@pytest.mark.parametrize("engine", ["h11", "fast", "httptools"])
async def test_curl_h2c_upgrade_is_declined_and_served_as_http1(
    require_peer: Callable[[str], str],
    cert_files: tuple[Path, Path],
    tmp_path: Path,
    engine: Http1Engine,
) -> None:
    # Cleartext `curl --http2` sends `Upgrade: h2c`; the server does not do h2c
    # upgrades (RFC 9113 deprecated them) and answers in HTTP/1.1, body intact.
    curl = require_peer("curl")
    upload = tmp_path / "up.bin"
    upload.write_bytes(os.urandom(300_000))
    async with auto_servers(cert_files, ServerConfig(http1_engine=engine)) as s:
        lines = await curl_twice(curl, s, ["--http2"], False, upload)
    digest = hashlib.sha256(upload.read_bytes()).hexdigest()[:16]
    assert lines[0].startswith("HTTP/1.1 GET /a?b=1 0 ")
    assert lines[2].startswith(f"HTTP/1.1 POST /up 300000 {digest} ")
    assert lines[1] == lines[3] == "curl=1.1"


# -- h2load ------------------------------------------------------------------------------------
@pytest.mark.parametrize("tls", [False, True])
async def test_h2load_every_request_succeeds(
    require_peer: Callable[[str], str], cert_files: tuple[Path, Path], tls: bool
) -> None:
    h2load = require_peer("h2load")
    async with auto_servers(cert_files) as s:
        url = f"https://127.0.0.1:{s.tls}/" if tls else f"http://127.0.0.1:{s.plain}/"
        out = await run([h2load, "-n", "2000", "-c", "10", "-m", "10", url], timeout=60)
    assert "2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored" in out, out
    assert "status codes: 2000 2xx" in out, out
    if tls:
        assert "Application protocol: h2" in out, out


# -- the Akamai fingerprint of a real curl, against tshark's reading of the same bytes ----------
def akamai_from_tshark_pdml(pdml: str) -> AkamaiH2Fingerprint:
    """Build the Akamai fingerprint from tshark's decode of client-to-server h2 frames."""
    settings: list[tuple[int, int]] | None = None
    window: int | None = None
    priorities: list[str] = []
    pseudo: list[str] | None = None
    for frame in ET.fromstring(pdml).iter("field"):
        if frame.get("name") != "http2.stream" or pseudo is not None:
            continue
        fields = {f.get("name"): f for f in frame}
        ftype = fields.get("http2.type")
        if ftype is None:
            continue
        kind = int(ftype.get("show", "-1"))
        if kind == 4 and settings is None and fields["http2.flags"].get("show") == "0x00":
            settings = []
            for entry in frame.iter("field"):
                if entry.get("name") != "http2.settings":
                    continue
                parts = list(entry)
                ident = int(parts[0].get("show", ""))
                settings.append((ident, int(parts[1].get("show", ""))))
        elif kind == 8 and window is None and fields["http2.streamid"].get("show") == "0":
            window = int(fields["http2.window_update.window_size_increment"].get("show", ""))
        elif kind == 2:
            raise AssertionError("curl sent a PRIORITY frame; extend this reader")
        elif kind == 1:
            pseudo = [
                name
                for h in frame.iter("field")
                if h.get("name") == "http2.header.name"
                and (name := h.get("show", "")).startswith(":")
            ]
    assert settings is not None, "no SETTINGS in the capture"
    assert pseudo is not None, "no HEADERS in the capture"
    text = "|".join(
        [
            ";".join(f"{k}:{v}" for k, v in settings),
            str(window) if window else "00",
            ",".join(priorities) or "0",
            ",".join(p[1] for p in pseudo),
        ]
    )
    return AkamaiH2Fingerprint.parse(text)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_akamai_fingerprint_of_curl_matches_tshark_decode(
    require_peer: Callable[[str], str], cert_files: tuple[Path, Path], tmp_path: Path
) -> None:
    curl, tshark = require_peer("curl"), require_peer("tshark")
    keylog, capture = tmp_path / "keys.log", tmp_path / "cap.pcapng"
    async with auto_servers(cert_files) as s:
        sniffer = subprocess.Popen(
            [tshark, "-i", "lo", "-f", f"tcp port {s.tls}", "-w", str(capture)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            assert sniffer.stderr is not None
            with anyio.fail_after(20):
                seen = b""
                # "Capturing on" comes before the capture really runs; "File:" after.
                while b"File:" not in seen:
                    line = await anyio.to_thread.run_sync(sniffer.stderr.readline)
                    assert line, f"tshark did not start: {seen!r}"
                    seen += line
            await anyio.sleep(0.3)
            env = {**os.environ, "SSLKEYLOGFILE": str(keylog)}
            args = ["-sS", "--fail", "--http2", "--cacert", str(s.cert)]
            out = await run([curl, *args, f"https://127.0.0.1:{s.tls}/fp"], env=env)
            await anyio.sleep(0.5)  # let the capture flush the last packets
        finally:
            sniffer.send_signal(signal.SIGINT)
            with anyio.fail_after(20):
                await anyio.to_thread.run_sync(sniffer.wait)
    version, method, target, _, _, ours, order = out.split()
    assert (version, method, target) == ("HTTP/2", "GET", "/fp")
    keys = f"tls.keylog_file:{keylog}"
    only_client = f"http2 && tcp.dstport == {s.tls}"
    decoded = await run([tshark, "-r", str(capture), "-o", keys, "-Y", only_client, "-T", "pdml"])
    theirs = akamai_from_tshark_pdml(decoded)
    assert AkamaiH2Fingerprint.parse(ours) == theirs
    assert ours == theirs.text
    # What curl's nghttp2 session is known to send: no PRIORITY frames, pseudo-headers
    # in :method, :path, :scheme, :authority order, push disabled, a connection
    # window raised with WINDOW_UPDATE.
    assert theirs.text.split("|")[2:] == ["0", "m,p,s,a"]
    assert order == ":method,:path,:scheme,:authority"
    assert (2, 0) in AkamaiH2Fingerprint.parse(ours).settings
    assert int(theirs.text.split("|")[1]) > 0
