"""TCP connector: resolution, happy eyeballs and typed errors, on real loopback sockets."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import pytest

from rama_core import Context
from rama_net import (
    Authority,
    ConnectError,
    ConnectRefused,
    ConnectTimeout,
    DnsAnswer,
    Domain,
    InMemoryResolver,
    RecordType,
    ResolveError,
    Resolver,
    SocketInfo,
    TcpConnector,
    connect_tcp,
)

pytestmark = pytest.mark.anyio


def _free_port(family: int = socket.AF_INET, host: str = "127.0.0.1") -> int:
    with socket.socket(family) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextmanager
def blackhole(family: int = socket.AF_INET, host: str = "127.0.0.1") -> Iterator[int]:
    """A listener whose backlog is full: further SYNs are dropped, connects hang."""
    server = socket.socket(family)
    server.bind((host, 0))
    server.listen(0)
    port = server.getsockname()[1]
    filler = socket.socket(family)
    filler.connect((host, port))
    try:
        yield port
    finally:
        filler.close()
        server.close()


@contextmanager
def accepting(family: int, host: str, port: int = 0) -> Iterator[socket.socket]:
    server = socket.socket(family)
    server.bind((host, port))
    server.listen(16)
    try:
        yield server
    finally:
        server.close()


async def test_connects_and_reports_both_ends() -> None:
    with accepting(socket.AF_INET, "127.0.0.1") as server:
        port = server.getsockname()[1]
        conn = await TcpConnector().serve(Context(), Authority.parse(f"127.0.0.1:{port}"))
        async with conn.stream:
            peer, _ = server.accept()
            with peer:
                assert isinstance(conn.info, SocketInfo)
                assert conn.info.peer_addr.port == port
                assert peer.getpeername()[1] == conn.info.local_addr.port
                peer.sendall(b"hello")
                assert await conn.stream.receive() == b"hello"


async def test_names_resolve_through_the_context_resolver() -> None:
    resolver = InMemoryResolver.from_mapping({"service.test": ["127.0.0.1"]})
    ctx = Context()
    ctx.insert(resolver, key=Resolver)  # type: ignore[type-abstract]
    with accepting(socket.AF_INET, "127.0.0.1") as server:
        port = server.getsockname()[1]
        conn = await TcpConnector().serve(ctx, Authority.parse(f"service.test:{port}"))
        await conn.stream.aclose()
        assert conn.authority.host.domain == Domain("service.test")


async def test_refused_is_typed() -> None:
    port = _free_port()
    with pytest.raises(ConnectRefused) as info:
        await connect_tcp(f"127.0.0.1:{port}")
    assert isinstance(info.value, ConnectError)
    assert isinstance(info.value, ConnectionRefusedError)
    assert info.value.authority == Authority.parse(f"127.0.0.1:{port}")


async def test_unknown_name_is_a_resolve_error() -> None:
    resolver = InMemoryResolver()
    with pytest.raises(ResolveError, match=r"nowhere\.test"):
        await TcpConnector(resolver).serve(Context(), Authority.parse("nowhere.test:80"))


async def test_connect_timeout_is_typed() -> None:
    with blackhole() as port:
        started = anyio.current_time()
        with pytest.raises(ConnectTimeout) as info:
            await connect_tcp(f"127.0.0.1:{port}", connect_timeout=0.3)
        assert 0.25 <= anyio.current_time() - started < 3
        assert isinstance(info.value, TimeoutError)


class _SlowResolver:
    async def lookup(self, domain: Domain, rtype: RecordType) -> DnsAnswer:
        await anyio.sleep(10)
        raise AssertionError("unreachable")


async def test_connect_timeout_covers_resolution() -> None:
    with pytest.raises(ConnectTimeout):
        await TcpConnector(_SlowResolver(), connect_timeout=0.2).serve(
            Context(), Authority.parse("slow.test:80")
        )


async def test_happy_eyeballs_moves_on_from_a_hanging_address() -> None:
    # ::1 hangs (full backlog), 127.0.0.1 on the same port accepts
    for _ in range(10):
        with blackhole(socket.AF_INET6, "::1") as port:
            try:
                server = accepting(socket.AF_INET, "127.0.0.1", port)
                listener = server.__enter__()
            except OSError:
                continue  # port taken on IPv4: pick another
            try:
                resolver = InMemoryResolver.from_mapping({"dual.test": ["::1", "127.0.0.1"]})
                connector = TcpConnector(resolver, connect_timeout=5, happy_eyeballs_delay=0.1)
                started = anyio.current_time()
                conn = await connector.serve(Context(), Authority.parse(f"dual.test:{port}"))
                elapsed = anyio.current_time() - started
                await conn.stream.aclose()
                assert conn.info.peer_addr.ip.version == 4
                assert 0.05 <= elapsed < 2, elapsed
                return
            finally:
                server.__exit__(None, None, None)
                del listener
    pytest.fail("could not find a port free on both families")


async def test_happy_eyeballs_skips_refused_addresses_at_once() -> None:
    with accepting(socket.AF_INET, "127.0.0.1") as server:
        port = server.getsockname()[1]
        # nothing listens on [::1]:port (checked), so that attempt is refused
        with socket.socket(socket.AF_INET6) as probe:
            if probe.connect_ex(("::1", port)) == 0:
                pytest.skip("port also open on ::1")  # cannot happen on a sane host
        resolver = InMemoryResolver.from_mapping({"dual.test": ["::1", "127.0.0.1"]})
        connector = TcpConnector(resolver, happy_eyeballs_delay=5)
        started = anyio.current_time()
        conn = await connector.serve(Context(), Authority.parse(f"dual.test:{port}"))
        await conn.stream.aclose()
        # a refusal starts the next attempt without waiting for the 5 s delay
        assert anyio.current_time() - started < 2
        assert conn.info.peer_addr.ip.version == 4


async def test_all_addresses_refused_reports_refused() -> None:
    port = _free_port()
    resolver = InMemoryResolver.from_mapping({"dual.test": ["::1", "127.0.0.1"]})
    with pytest.raises(ConnectRefused):
        await TcpConnector(resolver).serve(Context(), Authority.parse(f"dual.test:{port}"))
