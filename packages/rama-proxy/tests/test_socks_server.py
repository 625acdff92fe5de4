"""SocksProxy over raw sockets: CONNECT, BIND, UDP ASSOCIATE, auth, SOCKS4/4a, bad input."""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import ByteStream, SocketAttribute

from rama_core import Context, service_fn
from rama_net import Authority, ConnectError, EstablishedConnection, TcpListener
from rama_proxy import (
    Egress,
    ProxyAuthenticator,
    ProxyObservers,
    ProxyRecord,
    SocksProxy,
    StaticCredentials,
    UpstreamError,
    UpstreamFailure,
)
from rama_proxy._socks5_codec import (
    Socks5Command,
    Socks5Request,
    Socks5UdpDatagram,
    decode_udp_datagram,
    encode_udp_datagram,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Observer:
    def __init__(self) -> None:
        self.records: list[ProxyRecord] = []

    def started(self, record: ProxyRecord) -> None:
        pass

    def finished(self, record: ProxyRecord) -> None:
        self.records.append(record)


@service_fn
async def _echo(ctx: Context, stream: ByteStream) -> None:
    try:
        while True:
            data = await stream.receive()
            await stream.send(data.upper())
    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
        pass


@asynccontextmanager
async def _serving(proxy: SocksProxy, observer: _Observer | None = None) -> AsyncIterator[int]:
    """(socks port) with an echo origin at ``ECHO`` in the yielded namespace."""
    ctx = Context()
    if observer is not None:
        ctx.insert(ProxyObservers(observer))
    async with TcpListener.bind("127.0.0.1:0") as listener:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: listener.serve(proxy, ctx=ctx))
            yield listener.local_addr.port
            tg.cancel_scope.cancel()


@asynccontextmanager
async def _origin() -> AsyncIterator[int]:
    async with TcpListener.bind("127.0.0.1:0") as listener:
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, _echo)
            yield listener.local_addr.port
            tg.cancel_scope.cancel()


async def _recv_exact(stream: ByteStream, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        buf += await stream.receive(n - len(buf))
    return buf


async def _read_reply(stream: ByteStream) -> tuple[int, bytes, int]:
    head = await _recv_exact(stream, 4)
    atyp = head[3]
    if atyp == 1:
        addr = await _recv_exact(stream, 4)
    elif atyp == 4:
        addr = await _recv_exact(stream, 16)
    else:
        n = (await _recv_exact(stream, 1))[0]
        addr = await _recv_exact(stream, n)
    (port,) = struct.unpack("!H", await _recv_exact(stream, 2))
    return head[1], addr, port


async def _closed(stream: ByteStream, within: float = 2.0) -> bool:
    with anyio.fail_after(within):
        try:
            while await stream.receive():
                pass
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            return True
    return False


def _connect_req(host: str | ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> bytes:
    return Socks5Request(Socks5Command.CONNECT, host, port).encode()


@pytest.mark.anyio
async def test_connect_ipv4_domain_and_record() -> None:
    obs = _Observer()
    async with _origin() as origin, _serving(SocksProxy(), obs) as port:
        for host in (ipaddress.IPv4Address("127.0.0.1"), "localhost"):
            async with await anyio.connect_tcp("127.0.0.1", port) as s:
                await s.send(b"\x05\x01\x00")
                assert await _recv_exact(s, 2) == b"\x05\x00"
                # the request and early payload in one segment
                await s.send(_connect_req(host, origin) + b"early")
                code, _, _ = await _read_reply(s)
                assert code == 0
                assert await _recv_exact(s, 5) == b"EARLY"
                await s.send(b"ping")
                assert await _recv_exact(s, 4) == b"PING"
        with anyio.fail_after(2):
            while len(obs.records) < 2:
                await anyio.sleep(0.01)
    rec = obs.records[0]
    assert rec.protocol == "socks5"
    assert rec.method == "CONNECT"
    assert rec.target == f"127.0.0.1:{origin}"
    assert rec.status == 0
    assert rec.bytes_in == 9
    assert rec.bytes_out == 9
    assert rec.client is not None
    assert obs.records[1].target == f"localhost:{origin}"


@pytest.mark.anyio
async def test_connect_refused_not_allowed_and_bad_host() -> None:
    obs = _Observer()
    closed_port = _free_port()
    async with _serving(SocksProxy(allow_connect_ports=[closed_port, 80]), obs) as port:
        cases = [
            (_connect_req("127.0.0.1", closed_port), 0x05),
            (_connect_req("127.0.0.1", 81), 0x02),
            (_connect_req("a" * 255, 80), 0x04),  # a valid SOCKS field, not a DNS name
            (_connect_req("bad_label!", 80), 0x04),
        ]
        for req, expected in cases:
            async with await anyio.connect_tcp("127.0.0.1", port) as s:
                await s.send(b"\x05\x01\x00" + req)
                assert await _recv_exact(s, 2) == b"\x05\x00"
                code, _, _ = await _read_reply(s)
                assert code == expected
                assert await _closed(s)
    assert [r.status for r in obs.records] == [0x05, 0x02, 0x04, 0x04]
    assert obs.records[0].error == "connection refused"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (UpstreamFailure.NETWORK_UNREACHABLE, 0x03),
        (UpstreamFailure.HOST_UNREACHABLE, 0x04),
        (UpstreamFailure.TTL_EXPIRED, 0x06),
        (UpstreamFailure.REFUSED, 0x05),
        (UpstreamFailure.NOT_ALLOWED, 0x02),
    ],
)
async def test_reply_code_follows_the_upstream_failure(failure: UpstreamFailure, code: int) -> None:
    @service_fn
    async def failing_tcp(ctx: Context, target: Authority) -> EstablishedConnection:
        raise UpstreamError(failure, "nope")

    async with _serving(SocksProxy(egress=Egress(failing_tcp))) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(b"\x05\x01\x00" + _connect_req("192.0.2.1", 80))
            await _recv_exact(s, 2)
            assert (await _read_reply(s))[0] == code


@pytest.mark.anyio
async def test_errno_from_the_connector_maps_to_the_reply() -> None:
    @service_fn
    async def unreachable(ctx: Context, target: Authority) -> EstablishedConnection:
        raise ConnectError("no route", errno=errno.ENETUNREACH)

    async with _serving(SocksProxy(egress=Egress(unreachable))) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(b"\x05\x01\x00" + _connect_req("192.0.2.1", 80))
            await _recv_exact(s, 2)
            assert (await _read_reply(s))[0] == 0x03


@pytest.mark.anyio
async def test_userpass_auth() -> None:
    auth = ProxyAuthenticator(StaticCredentials({"john": "secret"}))
    obs = _Observer()
    async with _origin() as origin, _serving(SocksProxy(authenticator=auth), obs) as port:
        # no-auth only: refused with 0xFF
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(b"\x05\x01\x00")
            assert await _recv_exact(s, 2) == b"\x05\xff"
            assert await _closed(s)
        # wrong password
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(b"\x05\x02\x00\x02")
            assert await _recv_exact(s, 2) == b"\x05\x02"
            await s.send(b"\x01\x04john\x05wrong")
            assert (await _recv_exact(s, 2))[1] != 0
            assert await _closed(s)
        # right password, whole handshake in one write
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(
                b"\x05\x01\x02" + b"\x01\x04john\x06secret" + _connect_req("127.0.0.1", origin)
            )
            assert await _recv_exact(s, 2) == b"\x05\x02"
            assert await _recv_exact(s, 2) == b"\x01\x00"
            assert (await _read_reply(s))[0] == 0
            await s.send(b"x")
            assert await _recv_exact(s, 1) == b"X"
    assert [r.user for r in obs.records] == ["john"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("data", "answer"),
    [
        (b"\x05\x00", b"\x05\xff"),  # zero methods
        (b"\x05\xff" + bytes(range(1, 256)), b"\x05\xff"),  # 255 methods, none acceptable
        (b"\x05\x01\x00\x05\x01\x00\x09", b"\x05\x00\x05\x08"),  # unknown address type
        (b"\x05\x01\x00\x05\x07\x00\x01\x7f\x00\x00\x01\x00\x50", b"\x05\x00\x05\x07"),  # cmd
        (b"\x05\x01\x00\x04\x01\x00\x01", b"\x05\x00\x05\x01"),  # wrong version in request
        (b"\x05\x01\x00\x05\x01\x00\x03\x00\x00\x50", b"\x05\x00\x05\x01"),  # empty domain
        (b"GET / HTTP/1.1\r\n\r\n", b""),  # not SOCKS at all
        (b"\x05\x01\x00\x05\x01\x00\x01\x7f", b"\x05\x00"),  # truncated, then EOF
    ],
)
async def test_bad_input_gets_its_answer_and_a_close(data: bytes, answer: bytes) -> None:
    obs = _Observer()
    async with _serving(SocksProxy(handshake_timeout=1.0), obs) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(data)
            await s.send_eof()
            got = b""
            with anyio.fail_after(2):
                try:
                    while chunk := await s.receive():
                        got += chunk
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    pass
            assert got[: len(answer)] == answer
            if len(answer) > 2:
                assert len(got) == 12  # 05 00 + a full reply with 0.0.0.0:0
    # a refused request is one record with its reply code; a refused greeting none
    assert [r.status for r in obs.records] == ([answer[3]] if len(answer) > 2 else [])


@pytest.mark.anyio
async def test_slow_clients_are_closed_and_do_not_stall_others() -> None:
    async with _origin() as origin, _serving(SocksProxy(handshake_timeout=0.5)) as port:
        silent = await anyio.connect_tcp("127.0.0.1", port)
        truncated = await anyio.connect_tcp("127.0.0.1", port)
        await truncated.send(b"\x05\x01\x00\x05\x01\x00\x03\x10abc")
        started = anyio.current_time()
        # meanwhile, a good client is served at once (while the slow ones still wait)
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(b"\x05\x01\x00" + _connect_req("127.0.0.1", origin))
            await _recv_exact(s, 2)
            assert (await _read_reply(s))[0] == 0
            await s.send(b"x")
            assert await _recv_exact(s, 1) == b"X"
        assert await _closed(silent)
        closed_after = anyio.current_time() - started
        got = await _recv_exact(truncated, 2)
        assert got == b"\x05\x00"
        assert await _closed(truncated)
        assert 0.4 < closed_after < 3.0
        await silent.aclose()
        await truncated.aclose()


@pytest.mark.anyio
async def test_bind_two_replies_and_tunnel() -> None:
    obs = _Observer()
    async with _serving(SocksProxy(bind_timeout=2.0), obs) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(
                b"\x05\x01\x00" + Socks5Request(Socks5Command.BIND, "127.0.0.1", 0).encode()
            )
            await _recv_exact(s, 2)
            code, addr, bport = await _read_reply(s)
            assert code == 0
            assert ipaddress.IPv4Address(addr) == ipaddress.IPv4Address("127.0.0.1")
            async with await anyio.connect_tcp("127.0.0.1", bport) as peer:
                local = peer.extra(SocketAttribute.local_address)
                code, addr, pport = await _read_reply(s)
                assert code == 0
                assert (str(ipaddress.IPv4Address(addr)), pport) == (local[0], local[1])
                await peer.send(b"from peer")
                assert await _recv_exact(s, 9) == b"from peer"
                await s.send(b"from client")
                assert await _recv_exact(peer, 11) == b"from client"
    assert obs.records[0].method == "BIND"
    assert obs.records[0].status == 0


@pytest.mark.anyio
async def test_bind_times_out_and_refuses_strangers() -> None:
    async with _serving(SocksProxy(bind_timeout=0.3)) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            # expects its peer from 127.0.0.2: a connection from 127.0.0.1 is refused
            await s.send(
                b"\x05\x01\x00" + Socks5Request(Socks5Command.BIND, "127.0.0.2", 0).encode()
            )
            await _recv_exact(s, 2)
            code, _, bport = await _read_reply(s)
            assert code == 0
            async with await anyio.connect_tcp("127.0.0.1", bport) as stranger:
                assert await _closed(stranger)
            code, _, _ = await _read_reply(s)
            assert code == 0x06
            assert await _closed(s)


@asynccontextmanager
async def _udp_echo() -> AsyncIterator[int]:
    async with await anyio.create_udp_socket(family=socket.AF_INET, local_host="127.0.0.1") as sock:

        async def loop() -> None:
            async for data, addr in sock:
                await sock.sendto(b"echo:" + data, addr[0], addr[1])

        async with anyio.create_task_group() as tg:
            tg.start_soon(loop)
            yield sock.extra(SocketAttribute.local_port)
            tg.cancel_scope.cancel()


async def _udp_associate(port: int) -> tuple[ByteStream, int]:
    s = await anyio.connect_tcp("127.0.0.1", port)
    await s.send(
        b"\x05\x01\x00" + Socks5Request(Socks5Command.UDP_ASSOCIATE, "0.0.0.0", 0).encode()
    )
    await _recv_exact(s, 2)
    code, addr, rport = await _read_reply(s)
    assert code == 0
    assert ipaddress.IPv4Address(addr) == ipaddress.IPv4Address("127.0.0.1")
    return s, rport


async def _receive_or_none(sock: anyio.abc.UDPSocket, within: float) -> bytes | None:
    with anyio.move_on_after(within):
        data, _ = await sock.receive()
        return data
    return None


@pytest.mark.anyio
async def test_udp_associate_relays_and_ends_with_the_control_connection() -> None:
    obs = _Observer()
    async with _udp_echo() as echo, _serving(SocksProxy(), obs) as port:
        control, relay_port = await _udp_associate(port)
        async with await anyio.create_udp_socket(
            family=socket.AF_INET, local_host="127.0.0.1"
        ) as client:
            for host in (ipaddress.IPv4Address("127.0.0.1"), "localhost"):
                dgram = Socks5UdpDatagram(host, echo, b"hello")
                await client.sendto(encode_udp_datagram(dgram), "127.0.0.1", relay_port)
                answer = await _receive_or_none(client, 2)
                assert answer is not None
                got = decode_udp_datagram(answer)
                assert got.data == b"echo:hello"
                assert got.port == echo
            # fragments and garbage are dropped
            frag = Socks5UdpDatagram(ipaddress.IPv4Address("127.0.0.1"), echo, b"f", frag=1)
            await client.sendto(encode_udp_datagram(frag), "127.0.0.1", relay_port)
            await client.sendto(b"\x00\x00", "127.0.0.1", relay_port)
            assert await _receive_or_none(client, 0.2) is None
            # another port of the same host is not the client
            async with await anyio.create_udp_socket(
                family=socket.AF_INET, local_host="127.0.0.1"
            ) as stranger:
                ok = Socks5UdpDatagram(ipaddress.IPv4Address("127.0.0.1"), echo, b"x")
                await stranger.sendto(encode_udp_datagram(ok), "127.0.0.1", relay_port)
                assert await _receive_or_none(stranger, 0.2) is None
            await control.aclose()
            with anyio.fail_after(2):
                while not obs.records:
                    await anyio.sleep(0.01)
            ok = Socks5UdpDatagram(ipaddress.IPv4Address("127.0.0.1"), echo, b"late")
            await client.sendto(encode_udp_datagram(ok), "127.0.0.1", relay_port)
            assert await _receive_or_none(client, 0.2) is None
    rec = obs.records[0]
    assert rec.method == "UDP_ASSOCIATE"
    assert rec.bytes_in == 10
    assert rec.bytes_out == 20


@pytest.mark.anyio
async def test_udp_association_idle_timeout_closes_control() -> None:
    async with _serving(SocksProxy(udp_idle_timeout=0.3)) as port:
        control, _ = await _udp_associate(port)
        started = anyio.current_time()
        assert await _closed(control)
        assert 0.2 < anyio.current_time() - started < 1.5
        await control.aclose()


@pytest.mark.anyio
async def test_disabled_commands() -> None:
    async with _serving(SocksProxy(enable_bind=False, enable_udp=False)) as port:
        for cmd in (Socks5Command.BIND, Socks5Command.UDP_ASSOCIATE):
            async with await anyio.connect_tcp("127.0.0.1", port) as s:
                await s.send(b"\x05\x01\x00" + Socks5Request(cmd, "0.0.0.0", 0).encode())
                await _recv_exact(s, 2)
                assert (await _read_reply(s))[0] == 0x07


@pytest.mark.anyio
async def test_socks4_and_4a() -> None:
    obs = _Observer()
    async with _origin() as origin, _serving(SocksProxy(), obs) as port:
        reqs = [
            struct.pack("!BBH", 4, 1, origin) + socket.inet_aton("127.0.0.1") + b"me\x00",
            struct.pack("!BBH", 4, 1, origin) + b"\x00\x00\x00\x01" + b"\x00localhost\x00",
        ]
        for req in reqs:
            async with await anyio.connect_tcp("127.0.0.1", port) as s:
                await s.send(req + b"hi")
                reply = await _recv_exact(s, 8)
                assert reply[:2] == b"\x00\x5a"
                assert await _recv_exact(s, 2) == b"HI"
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(
                struct.pack("!BBH", 4, 1, _free_port()) + socket.inet_aton("127.0.0.1") + b"\x00"
            )
            assert (await _recv_exact(s, 8))[:2] == b"\x00\x5b"
    assert [r.protocol for r in obs.records] == ["socks4"] * 3
    assert [r.status for r in obs.records] == [90, 90, 91]


@pytest.mark.anyio
async def test_socks4_refused_when_auth_is_required() -> None:
    auth = ProxyAuthenticator(StaticCredentials({"u": "p"}))
    async with _serving(SocksProxy(authenticator=auth)) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(struct.pack("!BBH", 4, 1, 80) + socket.inet_aton("127.0.0.1") + b"\x00")
            assert (await _recv_exact(s, 8))[:2] == b"\x00\x5b"
            assert await _closed(s)


@pytest.mark.anyio
async def test_ipv6_connect_and_udp() -> None:
    obs = _Observer()
    ctx = Context()
    ctx.insert(ProxyObservers(obs))
    async with (
        TcpListener.bind("[::1]:0") as origin_listener,
        TcpListener.bind("[::1]:0") as socks_listener,
        await anyio.create_udp_socket(family=socket.AF_INET6, local_host="::1") as echo,
    ):
        origin = origin_listener.local_addr.port
        echo_port = echo.extra(SocketAttribute.local_port)

        async def udp_echo() -> None:
            async for data, addr in echo:
                await echo.sendto(data[::-1], addr[0], addr[1])

        async with anyio.create_task_group() as tg:
            tg.start_soon(origin_listener.serve, _echo)
            tg.start_soon(lambda: socks_listener.serve(SocksProxy(), ctx=ctx))
            tg.start_soon(udp_echo)
            port = socks_listener.local_addr.port
            async with await anyio.connect_tcp("::1", port) as s:
                await s.send(b"\x05\x01\x00" + _connect_req(ipaddress.IPv6Address("::1"), origin))
                await _recv_exact(s, 2)
                code, addr, _ = await _read_reply(s)
                assert code == 0
                assert ipaddress.IPv6Address(addr) == ipaddress.IPv6Address("::1")
                await s.send(b"six")
                assert await _recv_exact(s, 3) == b"SIX"
            async with await anyio.connect_tcp("::1", port) as control:
                await control.send(
                    b"\x05\x01\x00"
                    + Socks5Request(
                        Socks5Command.UDP_ASSOCIATE, ipaddress.IPv6Address("::"), 0
                    ).encode()
                )
                await _recv_exact(control, 2)
                code, addr, relay_port = await _read_reply(control)
                assert code == 0
                assert ipaddress.IPv6Address(addr) == ipaddress.IPv6Address("::1")
                async with await anyio.create_udp_socket(
                    family=socket.AF_INET6, local_host="::1"
                ) as client:
                    dgram = Socks5UdpDatagram(ipaddress.IPv6Address("::1"), echo_port, b"abc")
                    await client.sendto(encode_udp_datagram(dgram), "::1", relay_port)
                    answer = await _receive_or_none(client, 2)
                    assert answer is not None
                    got = decode_udp_datagram(answer)
                    assert got.data == b"cba"
                    assert got.host == ipaddress.IPv6Address("::1")
            tg.cancel_scope.cancel()
    assert obs.records[0].target == f"[::1]:{origin}"


@pytest.mark.anyio
async def test_udp_relay_drops_answers_from_hosts_the_client_never_reached() -> None:
    seen: list[tuple[str, int]] = []
    async with await anyio.create_udp_socket(
        family=socket.AF_INET, local_host="127.0.0.1"
    ) as target:
        target_port = target.extra(SocketAttribute.local_port)

        async def loop() -> None:
            async for _data, addr in target:
                seen.append((addr[0], addr[1]))
                await target.sendto(b"answer", addr[0], addr[1])

        async with anyio.create_task_group() as tg, _serving(SocksProxy()) as port:
            tg.start_soon(loop)
            control, relay_port = await _udp_associate(port)
            async with await anyio.create_udp_socket(
                family=socket.AF_INET, local_host="127.0.0.1"
            ) as client:
                dgram = Socks5UdpDatagram(ipaddress.IPv4Address("127.0.0.1"), target_port, b"q")
                await client.sendto(encode_udp_datagram(dgram), "127.0.0.1", relay_port)
                assert await _receive_or_none(client, 2) is not None
                outbound = seen[0]
                # a host the client never sent to writes to the relay's outbound port
                async with await anyio.create_udp_socket(
                    family=socket.AF_INET, local_host="127.0.0.1"
                ) as stranger:
                    await stranger.sendto(b"spoof", outbound[0], outbound[1])
                    assert await _receive_or_none(client, 0.3) is None
            await control.aclose()
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_handshake_one_byte_at_a_time() -> None:
    auth = ProxyAuthenticator(StaticCredentials({"u": "p"}))
    async with _origin() as origin, _serving(SocksProxy(authenticator=auth)) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            wire = b"\x05\x01\x02" + b"\x01\x01u\x01p" + _connect_req("localhost", origin)
            for i in range(len(wire)):
                await s.send(wire[i : i + 1])
                await anyio.sleep(0.001)
            assert await _recv_exact(s, 4) == b"\x05\x02\x01\x00"
            assert (await _read_reply(s))[0] == 0
            await s.send(b"ok")
            assert await _recv_exact(s, 2) == b"OK"


@pytest.mark.anyio
async def test_garbage_never_errors_nor_stalls_the_listener(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import random

    rng = random.Random(1928)
    payloads = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) for _ in range(40)]
    # valid prefixes followed by junk reach the deeper states
    payloads += [b"\x05\x01\x00" + p for p in payloads[:20]]
    payloads += [b"\x04\x01" + p for p in payloads[:10]]
    async with _origin() as origin:
        # junk never dials out: only the origin's port may be reached
        proxy = SocksProxy(handshake_timeout=0.5, allow_connect_ports=[origin], enable_bind=False)
        async with _serving(proxy) as port, anyio.create_task_group() as tg:
            for payload in payloads:

                async def one(data: bytes = payload) -> None:
                    async with await anyio.connect_tcp("127.0.0.1", port) as s:
                        try:
                            await s.send(data)
                            await s.send_eof()
                            with anyio.fail_after(3):
                                while await s.receive():
                                    pass
                        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                            pass

                tg.start_soon(one)
            await anyio.sleep(0)
            async with await anyio.connect_tcp("127.0.0.1", port) as s:
                await s.send(b"\x05\x01\x00" + _connect_req("127.0.0.1", origin))
                await _recv_exact(s, 2)
                assert (await _read_reply(s))[0] == 0
    assert not [r for r in caplog.records if r.levelno >= 40]
