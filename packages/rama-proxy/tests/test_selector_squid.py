"""Egress + ProxyDbSelector through a real squid (Basic auth) picked by username labels."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketStream

from rama_core import Context
from rama_net import Authority, SocketAddress
from rama_proxy import (
    Egress,
    ProxyAuthenticator,
    ProxyDb,
    ProxyDbSelector,
    StaticCredentials,
    UpstreamError,
    UpstreamFailure,
    UsernameLabelParser,
)

NCSA = "/usr/lib/squid/basic_ncsa_auth"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Squid:
    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir

    @property
    def access_log(self) -> str:
        path = self.workdir / "access.log"
        return path.read_text() if path.exists() else ""


@pytest.fixture(scope="module")
def squid() -> Iterator[Squid]:
    binary = shutil.which("squid") or shutil.which("squid", path="/usr/sbin:/sbin")
    if binary is None or not os.path.exists(NCSA):
        pytest.fail("squid (with basic_ncsa_auth) is not installed (run tools/install-peers.sh)")
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="rama-squid-"))
    workdir.chmod(0o777)  # squid drops to its own user when started as root
    hashed = subprocess.run(
        [openssl, "passwd", "-1", "squid-secret"], check=True, capture_output=True, text=True
    ).stdout.strip()
    passwd = workdir / "passwd"
    passwd.write_text(f"alice:{hashed}\n")
    passwd.chmod(0o644)
    port = _free_port()
    conf = workdir / "squid.conf"
    conf.write_text(
        f"""\
http_port 127.0.0.1:{port}
pid_filename {workdir}/squid.pid
access_log stdio:{workdir}/access.log
cache_log {workdir}/cache.log
cache_store_log none
coredump_dir {workdir}
cache deny all
auth_param basic program {NCSA} {passwd}
auth_param basic children 2 startup=1
auth_param basic realm rama-test
acl authed proxy_auth REQUIRED
http_access allow authed
http_access deny all
shutdown_lifetime 0 seconds
"""
    )
    stderr = (workdir / "stderr.log").open("wb")
    proc = subprocess.Popen(
        [binary, "-N", "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=stderr
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                pytest.fail(f"squid exited: {(workdir / 'stderr.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("squid did not start listening within 15s")
                time.sleep(0.05)
        yield Squid(port, workdir)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        stderr.close()
        shutil.rmtree(workdir, ignore_errors=True)


@asynccontextmanager
async def echo_target(received: list[bytes]) -> AsyncIterator[int]:
    async def handle(stream: SocketStream) -> None:
        async with stream:
            try:
                async for chunk in stream:
                    received.append(chunk)
                    await stream.send(b"echo:" + chunk)
            except anyio.BrokenResourceError:
                pass

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield port
        tg.cancel_scope.cancel()


def _db(squid_port: int, dead_port: int) -> ProxyDb:
    # id,tcp,udp,http,https,socks5,socks5h,dc,res,mob,address,pool,continent,country,
    # state,city,carrier,asn,credential
    return ProxyDb.from_csv(
        f"""\
id,tcp,udp,http,https,socks5,socks5h,datacenter,residential,mobile,address,pool_id,continent,country,state,city,carrier,asn,credential
squid,1,,1,,,,1,,,127.0.0.1:{squid_port},sq,eu,be,,,,,alice:squid-secret
squid-bad,1,,1,,,,1,,,127.0.0.1:{squid_port},bad,eu,be,,,,,alice:wrong
dead,1,,1,,,,1,,,127.0.0.1:{dead_port},sq,eu,nl,,,,,bob:x
""",
        source="squid.csv",
    )


async def _ctx(auth: ProxyAuthenticator, username: str) -> Context:
    user = await auth.authenticate(username, "pw", peer=SocketAddress.parse("127.0.0.1:1"))
    assert user is not None
    ctx = Context()
    ctx.insert(user)
    return ctx


@pytest.mark.anyio
async def test_labels_route_through_squid_with_the_db_credential(
    squid: Squid, require_peer: Callable[[str], str]
) -> None:
    require_peer("squid")
    received: list[bytes] = []
    dead = _free_port()
    selector = ProxyDbSelector(_db(squid.port, dead), mode="sticky", candidates=2)
    egress = Egress(selector=selector, connect_timeout=10)
    auth = ProxyAuthenticator(
        StaticCredentials({"john": "pw"}), username_parser=UsernameLabelParser()
    )
    async with echo_target(received) as target:
        dest = Authority.parse(f"127.0.0.1:{target}")

        conn = await egress.serve(await _ctx(auth, "john-pool-sq-country-be"), dest)
        assert conn.upstream_label == f"http://127.0.0.1:{squid.port}"
        await conn.stream.send(b"through squid")
        with anyio.fail_after(5):
            assert await conn.stream.receive() == b"echo:through squid"
        await conn.stream.aclose()
        assert received == [b"through squid"]  # the target saw the payload only

        # squid authenticated the DB's user, never the client's
        with anyio.fail_after(5):
            while f"CONNECT 127.0.0.1:{target} alice" not in squid.access_log:
                await anyio.sleep(0.05)
        assert "john" not in squid.access_log

        # the wrong credential in the DB: squid answers 407 -> a proxy failure
        with pytest.raises(UpstreamError) as info:
            await egress.serve(await _ctx(auth, "john-pool-bad"), dest)
        assert info.value.failure is UpstreamFailure.PROXY
        assert "wrong" not in str(info.value)

        # a session whose first choice is dead fails over to squid within the request
        key = None
        for i in range(1000):
            probe = await _ctx(auth, f"john-pool-sq-session-k{i}")
            if selector.choose(probe, dest)[0].authority.port == dead:
                key = f"k{i}"
                break
        assert key is not None
        ctx = await _ctx(auth, f"john-pool-sq-session-{key}")
        conn = await egress.serve(ctx, dest)
        assert conn.upstream_label == f"http://127.0.0.1:{squid.port}"
        await conn.stream.aclose()
        assert selector.backoff_remaining("dead") > 0
