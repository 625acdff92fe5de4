"""curl --http2 through the MITM to an nginx h2 TLS origin (h2 end to end, hooks, a
streamed 8 MiB file, mirror mode against OpenSSL's server)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rama_peer_process import free_port, start_nginx

from rama_proxy.mitm import HttpFlow, MitmHooks, MitmProxy
from rama_tls import CertificateAuthority

sys.path.insert(0, str(Path(__file__).parent))
from mitm_testutil import Events, curl, run_mitm

SERVER = """\
    server {{
        listen 127.0.0.1:{port} ssl http2;
        server_name localhost;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        root {www};
        location = /report {{
            return 200 "alpn=$ssl_alpn_protocol http=$server_protocol tag=$http_x_mitm\\n";
        }}
    }}
"""


@dataclass(frozen=True)
class Nginx:
    port: int
    origin_ca: CertificateAuthority
    size: int


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if binary is None:
        pytest.fail("required peer 'nginx' is not installed (run tools/install-peers.sh)")
    root = tmp_path_factory.mktemp("mitm-nginx")
    ca = CertificateAuthority.create("nginx origin CA")
    leaf = ca.issue("localhost", "127.0.0.1")
    leaf.save(root / "cert.pem", root / "key.pem")
    www = root / "www"
    www.mkdir()
    size = 8 << 20
    (www / "big.bin").write_bytes(bytes(range(256)) * (size // 256))
    port = free_port()
    body = SERVER.format(port=port, cert=root / "cert.pem", key=root / "key.pem", www=www)
    with start_nginx(binary, root / "nginx", body, ports=(port,)):
        yield Nginx(port, ca, size)


class Tag(MitmHooks):
    async def request(self, flow: HttpFlow) -> None:
        flow.request.headers.add("x-mitm", "tagged")


@pytest.mark.anyio
@pytest.mark.parametrize("mirror", [False, True])
async def test_curl_http2_to_nginx(nginx: Nginx, tmp_path: Path, mirror: bool) -> None:
    mitm_ca = CertificateAuthority.create("mitm CA")
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(mitm_ca.cert_pem())
    events = Events()
    mitm = MitmProxy(
        mitm_ca,
        upstream_ca=nginx.origin_ca.cert_pem(),
        hooks=[Tag()],
        observer=events,
        mirror_tls=mirror,
    )
    base = f"https://localhost:{nginx.port}"
    async with run_mitm(mitm) as (port, _):
        proxy = f"http://127.0.0.1:{port}"
        code, out, err = await curl(
            "-v", "--http2", "-x", proxy, "--cacert", str(ca_file), f"{base}/report"
        )
        assert code == 0, err
        assert out.strip() == "alpn=h2 http=HTTP/2.0 tag=tagged"
        assert "HTTP/2 200" in err
        out_file = tmp_path / "big.bin"
        code, _, err = await curl(
            "--http2", "-x", proxy, "--cacert", str(ca_file), "-o", str(out_file), f"{base}/big.bin"
        )
        assert code == 0, err
        assert out_file.stat().st_size == nginx.size
        assert out_file.read_bytes()[:512] == bytes(range(256)) * 2
    conns = await events.wait("finished", 2)
    assert all(c.upstream_tls is not None and c.upstream_tls.alpn == "h2" for c in conns)
    assert all(c.upstream_tls is not None and c.upstream_tls.version == "TLSv1.3" for c in conns)
