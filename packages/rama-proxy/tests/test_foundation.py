"""Egress, upstream error classification, authentication and records."""

from __future__ import annotations

import base64
import socket

import anyio
import pytest
from anyio.abc import ByteStream

from rama_core import Context, service_fn
from rama_net import Authority, SocketAddress, TcpListener
from rama_proxy import (
    Egress,
    ProxyAuthenticator,
    ProxyObservers,
    ProxyRecord,
    StaticCredentials,
    StaticUpstream,
    UpstreamError,
    UpstreamFailure,
    begin_record,
    end_record,
    parse_basic_credentials,
    redact_proxy_url,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.anyio
async def test_direct_egress_reaches_a_listener() -> None:
    async with TcpListener.bind("127.0.0.1:0") as listener:
        port = listener.local_addr.port

        @service_fn
        async def echo(ctx: Context, stream: ByteStream) -> None:
            await stream.send((await stream.receive()).upper())

        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, echo)
            conn = await Egress().serve(Context(), Authority.parse(f"127.0.0.1:{port}"))
            assert conn.upstream is None
            assert conn.upstream_label is None
            await conn.stream.send(b"ping")
            assert await conn.stream.receive() == b"PING"
            await conn.stream.aclose()
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_refused_target_is_classified() -> None:
    port = _free_port()
    with pytest.raises(UpstreamError) as info:
        await Egress().serve(Context(), Authority.parse(f"127.0.0.1:{port}"))
    assert info.value.failure is UpstreamFailure.REFUSED
    assert info.value.failure.http_status == 502
    assert info.value.failure.socks5_reply == 0x05


@pytest.mark.anyio
async def test_unreachable_upstream_proxy_is_a_proxy_failure() -> None:
    port = _free_port()
    egress = Egress(selector=StaticUpstream(f"http://u:secret@127.0.0.1:{port}"))
    with pytest.raises(UpstreamError) as info:
        await egress.serve(Context(), Authority.parse("127.0.0.1:9"))
    assert info.value.failure is UpstreamFailure.PROXY
    assert info.value.upstream == f"http://127.0.0.1:{port}"
    assert "secret" not in str(info.value)


def test_redact_and_basic() -> None:
    assert redact_proxy_url("socks5h://a:b@h:1080") == "socks5h://h:1080"
    assert redact_proxy_url("http://h:8080/") == "http://h:8080/"
    token = base64.b64encode(b"john-country-us:pa:ss").decode()
    assert parse_basic_credentials(f"Basic {token}") == ("john-country-us", "pa:ss")
    assert parse_basic_credentials("Bearer x") is None
    assert parse_basic_credentials("Basic !!!") is None


@pytest.mark.anyio
async def test_authenticator_checks_and_throttles(caplog: pytest.LogCaptureFixture) -> None:
    auth = ProxyAuthenticator(StaticCredentials({"john": "pw"}), max_failures=3)
    peer = SocketAddress.parse("127.0.0.1:5555")
    user = await auth.authenticate("john", "pw", peer=peer)
    assert user is not None
    assert user.name == "john"
    assert user.filter.is_empty
    for _ in range(3):
        assert await auth.authenticate("john", "bad", peer=peer) is None
    # throttled now, even with the right password
    assert await auth.authenticate("john", "pw", peer=peer) is None
    other = SocketAddress.parse("127.0.0.2:5555")
    assert await auth.authenticate("john", "pw", peer=other) is not None
    assert "127.0.0.1" in caplog.text


def test_records_reach_observers() -> None:
    seen: list[tuple[str, ProxyRecord]] = []

    class Obs:
        def started(self, record: ProxyRecord) -> None:
            seen.append(("start", record))

        def finished(self, record: ProxyRecord) -> None:
            seen.append(("end", record))

    ctx = Context()
    ctx.insert(ProxyObservers(Obs()))

    async def run() -> None:
        rec = begin_record(ctx, "connect", target="example.com:443")
        rec.status = 200
        end_record(ctx, rec)
        end_record(ctx, rec)

    anyio.run(run)
    assert [k for k, _ in seen] == ["start", "end"]
    assert seen[1][1].to_json()["status"] == 200


@pytest.mark.anyio
async def test_egress_notes_its_connect_time_on_the_record() -> None:
    async with TcpListener.bind("127.0.0.1:0") as listener:

        @service_fn
        async def idle(ctx: Context, stream: ByteStream) -> None:
            await anyio.sleep(0)

        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, idle)
            ctx = Context()
            record = begin_record(ctx, "connect", target="x")
            assert ctx.get(ProxyRecord) is record
            assert record.connect_time is None
            conn = await Egress().serve(ctx, Authority.parse(str(listener.local_addr)))
            await conn.stream.aclose()
            assert record.connect_time is not None
            assert 0 <= record.connect_time < 5
            end_record(ctx, record)
            assert record.to_json()["connect_time"] == round(record.connect_time, 6)
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_authenticator_reports_each_failure_reason() -> None:
    reasons: list[str] = []
    auth = ProxyAuthenticator(
        StaticCredentials({"john": "secret"}), max_failures=2, on_failure=reasons.append
    )
    peer = SocketAddress.parse("127.0.0.1:5000")
    assert await auth.authenticate("john", "secret", peer=peer) is not None
    assert await auth.authenticate("john", "nope", peer=peer) is None
    assert await auth.authenticate("", "nope", peer=peer) is None
    assert await auth.authenticate("john", "secret", peer=peer) is None  # throttled now
    assert reasons[0] == "wrong_credentials"
    assert reasons[-1] == "throttled"
    assert len(reasons) == 3
