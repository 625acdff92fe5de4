"""Resolvers against a real DNS server on loopback (dnspython messages over anyio sockets)."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from rama_net import (
    CachingResolver,
    DnsAnswer,
    DnsError,
    DnsPythonResolver,
    DnsTimeout,
    Domain,
    Host,
    InMemoryResolver,
    NoRecords,
    RecordType,
    SystemResolver,
    resolve_host,
)

pytestmark = pytest.mark.anyio

ZONE = {
    ("a.test", "A"): (["127.0.0.1", "127.0.0.2"], 60),
    ("a.test", "AAAA"): (["::1"], 30),
    ("big.test", "A"): ([f"127.0.1.{i}" for i in range(1, 60)], 60),
}


class FakeNameserver:
    """A tiny authoritative server for ZONE over UDP and TCP on one loopback port."""

    def __init__(self) -> None:
        self.udp_queries = 0
        self.tcp_queries = 0
        self.port = 0

    def answer(self, wire: bytes, *, udp: bool) -> bytes | None:
        query = dns.message.from_wire(wire)
        q = query.question[0]
        name = q.name.to_text(omit_final_dot=True)
        rtype = dns.rdatatype.to_text(q.rdtype)
        response = dns.message.make_response(query)
        if name == "slow.test" or (name == "no-aaaa.test" and rtype == "AAAA"):
            return None  # a nameserver that drops the query
        if name == "cut.test":
            if not udp:
                return None  # hangs up on the TCP retry
            response.flags |= dns.flags.TC
            return response.to_wire()
        if name == "no-aaaa.test":
            response.answer.append(dns.rrset.from_text_list(q.name, 60, "IN", "A", ["127.0.0.7"]))
            return response.to_wire()
        if name == "servfail.test":
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire()
        entry = ZONE.get((name, rtype))
        if entry is None:
            if not any(k[0] == name for k in ZONE):
                response.set_rcode(dns.rcode.NXDOMAIN)
            return response.to_wire()
        addrs, ttl = entry
        response.answer.append(dns.rrset.from_text_list(q.name, ttl, "IN", rtype, addrs))
        out = response.to_wire()
        if udp and len(out) > 512:
            response.answer.clear()
            response.flags |= dns.flags.TC
            out = response.to_wire()
        return out

    async def serve_udp(self, sock: anyio.abc.UDPSocket) -> None:
        async for data, addr in sock:
            self.udp_queries += 1
            reply = self.answer(data, udp=True)
            if reply is not None:
                if dns.message.from_wire(data).question[0].name.to_text() == "garbage.a.test.":
                    await sock.sendto(b"\x00garbage", *addr)
                await sock.sendto(reply, *addr)

    async def serve_tcp(self, conn: anyio.abc.SocketStream) -> None:
        async with conn:
            buf = b""
            while len(buf) < 2 or len(buf) < 2 + int.from_bytes(buf[:2], "big"):
                buf += await conn.receive()
            self.tcp_queries += 1
            reply = self.answer(buf[2:], udp=False)
            if reply is not None:
                await conn.send(len(reply).to_bytes(2, "big") + reply)


@asynccontextmanager
async def nameserver() -> AsyncIterator[FakeNameserver]:
    ns = FakeNameserver()
    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    ns.port = tcp.extra(anyio.abc.SocketAttribute.local_port)
    udp = await anyio.create_udp_socket(local_host="127.0.0.1", local_port=ns.port)
    async with tcp, udp, anyio.create_task_group() as tg:
        tg.start_soon(ns.serve_udp, udp)
        tg.start_soon(tcp.serve, ns.serve_tcp)
        yield ns
        tg.cancel_scope.cancel()


async def test_dnspython_resolver_answers_a_and_aaaa() -> None:
    async with nameserver() as ns:
        resolver = DnsPythonResolver([("127.0.0.1", ns.port)], timeout=2)
        a = await resolver.lookup(Domain("a.test"), RecordType.A)
        assert sorted(a.addresses) == [
            ipaddress.ip_address("127.0.0.1"),
            ipaddress.ip_address("127.0.0.2"),
        ]
        assert a.ttl == 60
        aaaa = await resolver.lookup(Domain("a.test"), RecordType.AAAA)
        assert aaaa.addresses == (ipaddress.ip_address("::1"),)
        assert aaaa.ttl == 30
        assert ns.tcp_queries == 0


async def test_truncated_udp_answers_fall_back_to_tcp() -> None:
    async with nameserver() as ns:
        resolver = DnsPythonResolver([("127.0.0.1", ns.port)])
        answer = await resolver.lookup(Domain("big.test"), RecordType.A)
        assert len(answer.addresses) == 59
        assert ns.udp_queries == 1
        assert ns.tcp_queries == 1


async def test_garbage_datagrams_are_ignored() -> None:
    ZONE[("garbage.a.test", "A")] = (["127.0.0.9"], 5)
    try:
        async with nameserver() as ns:
            resolver = DnsPythonResolver([("127.0.0.1", ns.port)])
            answer = await resolver.lookup(Domain("garbage.a.test"), RecordType.A)
            assert answer.addresses == (ipaddress.ip_address("127.0.0.9"),)
    finally:
        del ZONE[("garbage.a.test", "A")]


async def test_negative_answers_are_typed() -> None:
    async with nameserver() as ns:
        resolver = DnsPythonResolver([("127.0.0.1", ns.port)])
        with pytest.raises(NoRecords, match="NXDOMAIN"):
            await resolver.lookup(Domain("missing.test"), RecordType.A)
        with pytest.raises(NoRecords, match="no AAAA"):
            await resolver.lookup(Domain("big.test"), RecordType.AAAA)
        with pytest.raises(NoRecords, match="SERVFAIL"):
            await resolver.lookup(Domain("servfail.test"), RecordType.A)


async def test_silent_nameservers_time_out_and_the_next_one_is_tried() -> None:
    async with nameserver() as ns:
        silent = DnsPythonResolver([("127.0.0.1", ns.port)], timeout=0.1, attempts=2)
        started = anyio.current_time()
        with pytest.raises(DnsTimeout):
            await silent.lookup(Domain("slow.test"), RecordType.A)
        assert 0.15 <= anyio.current_time() - started < 2
        # a dead first server (nothing bound: refused or silent) then a live one
        with anyio.fail_after(5):
            resolver = DnsPythonResolver(
                [("127.0.0.1", 9), ("127.0.0.1", ns.port)], timeout=0.2, attempts=1
            )
            answer = await resolver.lookup(Domain("a.test"), RecordType.A)
        assert ipaddress.ip_address("127.0.0.1") in answer.addresses


async def test_caching_resolver_honours_ttl_and_caches_failures() -> None:
    async with nameserver() as ns:
        inner = DnsPythonResolver([("127.0.0.1", ns.port)])
        cache = CachingResolver(inner, min_ttl=0.0, max_ttl=0.2, negative_ttl=0.2)
        for _ in range(5):
            await cache.lookup(Domain("a.test"), RecordType.A)
        assert ns.udp_queries == 1
        await anyio.sleep(0.25)  # max_ttl caps the 60 s TTL
        await cache.lookup(Domain("a.test"), RecordType.A)
        assert ns.udp_queries == 2
        for _ in range(3):
            with pytest.raises(NoRecords):
                await cache.lookup(Domain("missing.test"), RecordType.A)
        assert ns.udp_queries == 3
        cache.clear()
        await cache.lookup(Domain("a.test"), RecordType.A)
        assert ns.udp_queries == 4


async def test_caching_resolver_is_bounded() -> None:
    pinned = InMemoryResolver.from_mapping({f"h{i}.test": ["127.0.0.1"] for i in range(20)})
    cache = CachingResolver(pinned, max_entries=5)
    for i in range(20):
        await cache.lookup(Domain(f"h{i}.test"), RecordType.A)
    assert len(cache._cache) <= 5


async def test_in_memory_resolver_pins_and_falls_back() -> None:
    async with nameserver() as ns:
        fallback = DnsPythonResolver([("127.0.0.1", ns.port)])
        pinned = InMemoryResolver.from_mapping({"a.test": ["10.0.0.1"]}, fallback=fallback)
        pinned.insert("other.test", "10.0.0.2", "fd00::2")
        assert (await pinned.lookup(Domain("a.test"), RecordType.A)).addresses == (
            ipaddress.ip_address("10.0.0.1"),
        )
        with pytest.raises(NoRecords):  # pinned name without an IPv6 address
            await pinned.lookup(Domain("a.test"), RecordType.AAAA)
        other = await pinned.lookup(Domain("other.test"), RecordType.AAAA)
        assert other.addresses == (ipaddress.ip_address("fd00::2"),)
        big = await pinned.lookup(Domain("big.test"), RecordType.A)
        assert len(big.addresses) == 59
    with pytest.raises(DnsError):
        await InMemoryResolver().lookup(Domain("a.test"), RecordType.A)


async def test_system_resolver_resolves_localhost() -> None:
    answer = await SystemResolver().lookup(Domain("localhost"), RecordType.A)
    assert ipaddress.ip_address("127.0.0.1") in answer.addresses
    with pytest.raises(DnsError):
        await SystemResolver().lookup(Domain("name.invalid"), RecordType.A)


async def test_resolve_host_orders_families_and_passes_ips_through() -> None:
    pinned = InMemoryResolver.from_mapping({"dual.test": ["127.0.0.1", "::1"]})
    assert await resolve_host(pinned, Host.parse("dual.test")) == [
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("127.0.0.1"),
    ]
    assert await resolve_host(pinned, Host.parse("192.0.2.1")) == [
        ipaddress.ip_address("192.0.2.1")
    ]
    v4only = InMemoryResolver.from_mapping({"v4.test": ["127.0.0.1"]})
    assert await resolve_host(v4only, Host.parse("v4.test")) == [ipaddress.ip_address("127.0.0.1")]
    with pytest.raises(DnsError):
        await resolve_host(v4only, Host.parse("none.test"))


def test_dns_answer_is_a_value() -> None:
    assert DnsAnswer((ipaddress.ip_address("::1"),), 1.0) == DnsAnswer(
        (ipaddress.ip_address("::1"),), 1.0
    )


async def test_a_dropped_aaaa_query_costs_the_resolution_delay_not_a_timeout() -> None:
    async with nameserver() as ns:
        resolver = DnsPythonResolver([("127.0.0.1", ns.port)], timeout=3, attempts=1)
        started = anyio.current_time()
        found = await resolve_host(resolver, Host.parse("no-aaaa.test"), resolution_delay=0.05)
        took = anyio.current_time() - started
    assert found == [ipaddress.ip_address("127.0.0.7")]
    assert took < 1.5, f"waited {took:.2f}s for the AAAA timeout"


async def test_both_families_are_asked_at_once() -> None:
    async with nameserver() as ns:
        resolver = DnsPythonResolver([("127.0.0.1", ns.port)], timeout=0.5, attempts=1)
        started = anyio.current_time()
        with pytest.raises(DnsTimeout):
            await resolve_host(resolver, Host.parse("slow.test"))
        took = anyio.current_time() - started
    assert ns.udp_queries == 2
    assert took < 0.9, "the two lookups ran one after the other"


async def test_caching_resolver_shares_one_query_between_concurrent_askers() -> None:
    async with nameserver() as ns:
        cache = CachingResolver(DnsPythonResolver([("127.0.0.1", ns.port)]))
        answers: list[DnsAnswer] = []

        async def ask() -> None:
            answers.append(await cache.lookup(Domain("a.test"), RecordType.A))

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(ask)
    assert len(answers) == 10
    assert len(set(answers)) == 1
    assert ns.udp_queries == 1


async def test_caching_resolver_does_not_cache_timeouts_and_raises_fresh_errors() -> None:
    async with nameserver() as ns:
        inner = DnsPythonResolver([("127.0.0.1", ns.port)], timeout=0.1, attempts=1)
        cache = CachingResolver(inner, negative_ttl=60)
        for _ in range(2):
            with pytest.raises(DnsTimeout):
                await cache.lookup(Domain("slow.test"), RecordType.A)
        assert ns.udp_queries == 2  # asked again: a timeout may be passing
        errors = []
        for _ in range(2):
            with pytest.raises(NoRecords) as info:
                await cache.lookup(Domain("missing.test"), RecordType.A)
            errors.append(info.value)
        assert ns.udp_queries == 3  # NXDOMAIN was cached
        assert errors[0] is not errors[1]
        assert str(errors[0]) == str(errors[1])


async def test_nameserver_hanging_up_on_the_tcp_retry_is_a_dns_error() -> None:
    async with nameserver() as ns:
        resolver = DnsPythonResolver([("127.0.0.1", ns.port)], timeout=2, attempts=1)
        with anyio.fail_after(5), pytest.raises(DnsError):
            await resolver.lookup(Domain("cut.test"), RecordType.A)
        assert ns.tcp_queries == 1
