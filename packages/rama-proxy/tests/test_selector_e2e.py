"""End to end: Egress + ProxyDbSelector over a CSV DB of two real in-test CONNECT proxies.

The username's labels pick the upstream; each upstream demands its own
credential from the DB; the target sees only the client's bytes (no proxy
credentials, no labels); a dead upstream fails over and is backed off.
"""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketStream

from rama_core import Context
from rama_net import Authority, SocketAddress
from rama_proxy import (
    Egress,
    ProxyAuthenticator,
    ProxyDbFile,
    ProxyDbSelector,
    StaticCredentials,
    UpstreamError,
    UpstreamFailure,
    UsernameLabelParser,
)

pytestmark = pytest.mark.anyio

CLIENT_PASSWORD = "client-pass-123"


@dataclass
class ConnectProxy:
    """A tiny raw-socket CONNECT proxy that demands Basic ``credential``."""

    credential: str
    port: int = 0
    heads: list[bytes] = field(default_factory=list)


async def _relay(a: SocketStream, b: SocketStream) -> None:
    try:
        async for chunk in a:
            await b.send(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass
    finally:
        try:
            await b.send_eof()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass


async def _serve_proxy(proxy: ConnectProxy, client: SocketStream) -> None:
    async with client:
        buf = b""
        with anyio.fail_after(5):
            while b"\r\n\r\n" not in buf:
                buf += await client.receive()
        head, _, rest = buf.partition(b"\r\n\r\n")
        proxy.heads.append(head)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ")
        token = base64.b64encode(proxy.credential.encode()).decode()
        if method != "CONNECT" or f"Proxy-Authorization: Basic {token}" not in lines:
            await client.send(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"
            )
            return
        host, _, port = target.rpartition(":")
        async with await anyio.connect_tcp(host, int(port)) as upstream:
            await client.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                await upstream.send(rest)
            async with anyio.create_task_group() as tg:
                tg.start_soon(_relay, client, upstream)
                tg.start_soon(_relay, upstream, client)


@asynccontextmanager
async def running_proxy(credential: str) -> AsyncIterator[ConnectProxy]:
    proxy = ConnectProxy(credential)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    proxy.port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, lambda s: _serve_proxy(proxy, s))
        yield proxy
        tg.cancel_scope.cancel()


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


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _csv(rows: list[tuple[str, int, str, str, str]]) -> str:
    # columns: id,tcp,udp,http,https,socks5,socks5h,dc,res,mob,address,pool,
    # continent,country,state,city,carrier,asn,credential (residential when country is be)
    return "".join(
        f"{rid},1,,1,,,,,{1 if res else ''},,127.0.0.1:{port},{pool},eu,{country},,,,,{cred}\n"
        for rid, port, pool, country, cred in rows
        for res in [country == "be"]
    )


async def _login(auth: ProxyAuthenticator, username: str) -> Context:
    user = await auth.authenticate(
        username, CLIENT_PASSWORD, peer=SocketAddress.parse("127.0.0.1:50000")
    )
    assert user is not None
    ctx = Context()
    ctx.insert(user)
    return ctx


async def _round_trip(egress: Egress, ctx: Context, port: int, payload: bytes) -> str:
    conn = await egress.serve(ctx, Authority.parse(f"127.0.0.1:{port}"))
    try:
        await conn.stream.send(payload)
        with anyio.fail_after(5):
            assert await conn.stream.receive() == b"echo:" + payload
    finally:
        await conn.stream.aclose()
    assert conn.upstream is not None
    label = conn.upstream_label
    assert label is not None
    return label


async def test_labels_pick_the_upstream_and_credentials_never_reach_the_target(
    tmp_path: Path,
) -> None:
    received: list[bytes] = []
    async with (
        running_proxy("alice:a-secret") as a,
        running_proxy("bob:b-secret") as b,
        echo_target(received) as target,
    ):
        db_path = tmp_path / "proxies.csv"
        db_path.write_text(
            _csv(
                [
                    ("A", a.port, "pa", "be", "alice:a-secret"),
                    ("B", b.port, "pb", "us", "bob:b-secret"),
                ]
            )
        )
        selector = ProxyDbSelector(ProxyDbFile(db_path), mode="round_robin")
        egress = Egress(selector=selector, connect_timeout=5)
        auth = ProxyAuthenticator(
            StaticCredentials({"john": CLIENT_PASSWORD}), username_parser=UsernameLabelParser()
        )

        label = await _round_trip(egress, await _login(auth, "john-pool-pb"), target, b"one")
        assert label == f"http://127.0.0.1:{b.port}"
        assert (len(a.heads), len(b.heads)) == (0, 1)

        label = await _round_trip(egress, await _login(auth, "john-country-be"), target, b"two")
        assert label == f"http://127.0.0.1:{a.port}"
        label = await _round_trip(egress, await _login(auth, "john-residential"), target, b"3")
        assert label == f"http://127.0.0.1:{a.port}"
        label = await _round_trip(egress, await _login(auth, "john-!residential"), target, b"4")
        assert label == f"http://127.0.0.1:{b.port}"
        assert (len(a.heads), len(b.heads)) == (2, 2)

        # each upstream got the DB's credential for it, and nothing of the client's
        client_token = base64.b64encode(f"john-pool-pb:{CLIENT_PASSWORD}".encode())
        for proxy, cred in ((a, b"alice:a-secret"), (b, b"bob:b-secret")):
            for head in proxy.heads:
                assert head.startswith(f"CONNECT 127.0.0.1:{target} HTTP/1.1".encode())
                assert base64.b64encode(cred) in head
                assert CLIENT_PASSWORD.encode() not in head
                assert client_token not in head
                assert b"john" not in head
        # the target saw the client's bytes only
        assert b"".join(received) == b"onetwo34"

        # a filter that matches nothing is refused before any connection
        with pytest.raises(UpstreamError) as info:
            await egress.serve(
                await _login(auth, "john-country-fr"), Authority.parse(f"127.0.0.1:{target}")
            )
        assert info.value.failure is UpstreamFailure.NOT_ALLOWED
        assert (len(a.heads), len(b.heads)) == (2, 2)

        # strict labels: an unknown label refuses the login itself
        assert (
            await auth.authenticate(
                "john-colour-red", CLIENT_PASSWORD, peer=SocketAddress.parse("127.0.0.1:1")
            )
            is None
        )


async def test_sticky_session_and_failover_to_the_next_candidate(tmp_path: Path) -> None:
    received: list[bytes] = []
    dead = _dead_port()
    async with running_proxy("bob:b-secret") as b, echo_target(received) as target:
        db_path = tmp_path / "proxies.csv"
        db_path.write_text(
            _csv(
                [
                    ("dead", dead, "x", "us", "carol:c"),
                    ("B", b.port, "x", "us", "bob:b-secret"),
                ]
            )
        )
        selector = ProxyDbSelector(
            ProxyDbFile(db_path), mode="sticky", candidates=2, failure_backoff=30
        )
        egress = Egress(selector=selector, connect_timeout=5)
        auth = ProxyAuthenticator(
            StaticCredentials({"john": CLIENT_PASSWORD}), username_parser=UsernameLabelParser()
        )
        # find a session key whose first choice is the dead upstream
        key = None
        for i in range(1000):
            probe = await _login(auth, f"john-session-s{i}")
            if selector.choose(probe, Authority.parse("h:1"))[0].authority.port == dead:
                key = f"s{i}"
                break
        assert key is not None
        ctx = await _login(auth, f"john-session-{key}")
        label = await _round_trip(egress, ctx, target, b"first")
        assert label == f"http://127.0.0.1:{b.port}"  # failed over within the one request
        assert selector.backoff_remaining("dead") > 25
        # while "dead" is backed off the key stays on B without trying "dead" again
        label = await _round_trip(egress, ctx, target, b"second")
        assert label == f"http://127.0.0.1:{b.port}"
        first = selector.choose(ctx, Authority.parse(f"127.0.0.1:{target}"))[0]
        assert first.authority.port == b.port
        assert b"".join(received) == b"firstsecond"

        # a wrong credential in the DB: the upstream answers 407, a proxy failure for the client
        db_path.write_text(_csv([("B", b.port, "x", "us", "bob:wrong")]))
        source = selector.source
        assert isinstance(source, ProxyDbFile)
        st = db_path.stat()
        os.utime(db_path, ns=(st.st_mtime_ns + 10**9, st.st_mtime_ns + 10**9))
        assert await source.check()
        with pytest.raises(UpstreamError) as info:
            await egress.serve(ctx, Authority.parse(f"127.0.0.1:{target}"))
        assert info.value.failure is UpstreamFailure.PROXY
        assert "wrong" not in str(info.value)
