"""DNS resolution: a resolver protocol and four implementations.

- :class:`SystemResolver`: the OS resolver (getaddrinfo in a worker thread).
- :class:`DnsPythonResolver`: queries chosen nameservers directly (UDP with
  TCP fallback on truncation), portable across asyncio and trio because the
  socket I/O is anyio's and only message encoding is dnspython's.
- :class:`InMemoryResolver`: fixed answers (pin hosts, tests), with an optional
  fallback.
- :class:`CachingResolver`: caches any resolver's answers for their TTL.
"""

from __future__ import annotations

import enum
import ipaddress
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import anyio
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from rama_core import RamaError

from ._address import Domain, Host, IpAddress

__all__ = [
    "CachingResolver",
    "DnsAnswer",
    "DnsError",
    "DnsPythonResolver",
    "DnsTimeout",
    "InMemoryResolver",
    "NoRecords",
    "RecordType",
    "Resolver",
    "SystemResolver",
    "default_resolver",
    "resolve_host",
]


class DnsError(RamaError):
    """A name could not be resolved."""


class NoRecords(DnsError):
    """The name exists (or not) but has no records of the asked type."""


class DnsTimeout(DnsError, TimeoutError):
    """No nameserver answered in time."""


class RecordType(enum.Enum):
    """Address record types."""

    A = "A"
    AAAA = "AAAA"

    @property
    def family(self) -> socket.AddressFamily:
        """The socket family of addresses of this type."""
        return socket.AF_INET if self is RecordType.A else socket.AF_INET6


@dataclass(frozen=True)
class DnsAnswer:
    """Addresses for one name and type, with how long they may be cached."""

    addresses: tuple[IpAddress, ...]
    ttl: float


@runtime_checkable
class Resolver(Protocol):
    """Looks up the addresses of a domain."""

    async def lookup(self, domain: Domain, rtype: RecordType) -> DnsAnswer:
        """Return the addresses of ``domain``; raise :class:`DnsError` if none."""
        ...


async def resolve_host(
    resolver: Resolver,
    host: Host,
    *,
    families: Sequence[RecordType] = (RecordType.AAAA, RecordType.A),
    resolution_delay: float = 0.05,
) -> list[IpAddress]:
    """All addresses of ``host`` (IP literals pass through), in ``families`` order.

    The families are looked up at once. As in RFC 8305 (happy eyeballs v2),
    once one family has answered with addresses the others get at most
    ``resolution_delay`` seconds more: a nameserver that drops AAAA queries
    costs a connection 50 ms, not a resolver timeout. Raises the first
    :class:`DnsError` (in ``families`` order) only when no family gave an address.
    """
    if host.ip is not None:
        return [host.ip]
    domain = host.domain
    assert domain is not None
    results: dict[RecordType, list[IpAddress] | DnsError] = {}
    first_positive, all_settled = anyio.Event(), anyio.Event()

    async def lookup(rtype: RecordType) -> None:
        try:
            addresses = list((await resolver.lookup(domain, rtype)).addresses)
        except DnsError as exc:
            results[rtype] = exc
        else:
            results[rtype] = addresses
            if addresses:
                first_positive.set()
        if len(results) == len(families):
            all_settled.set()

    async def until_first_positive() -> None:
        await first_positive.wait()
        wait.cancel()

    async with anyio.create_task_group() as tg:
        for rtype in families:
            tg.start_soon(lookup, rtype)
        with anyio.CancelScope() as wait:
            tg.start_soon(until_first_positive)
            await all_settled.wait()
        if not all_settled.is_set():
            with anyio.move_on_after(resolution_delay):
                await all_settled.wait()
        tg.cancel_scope.cancel()

    found: list[IpAddress] = []
    first_error: DnsError | None = None
    for rtype in families:
        result = results.get(rtype)
        if isinstance(result, DnsError):
            first_error = first_error or result
        elif result:
            found.extend(a for a in result if a not in found)
    if not found:
        raise first_error or NoRecords(f"no addresses for {host}")
    return found


class SystemResolver:
    """Resolves with the operating system (getaddrinfo, off the event loop)."""

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        """getaddrinfo reports no TTL; answers are cached for this long."""

    async def lookup(self, domain: Domain, rtype: RecordType) -> DnsAnswer:
        """Ask getaddrinfo for ``rtype`` addresses of ``domain``."""
        try:
            infos = await anyio.getaddrinfo(
                domain.value, None, family=rtype.family, type=socket.SOCK_STREAM
            )
        except socket.gaierror as exc:
            raise NoRecords(f"{domain} {rtype.value}: {exc.strerror}") from exc
        addrs: list[IpAddress] = []
        for *_, sockaddr in infos:
            ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if ip not in addrs:
                addrs.append(ip)
        if not addrs:
            raise NoRecords(f"{domain} has no {rtype.value} records")
        return DnsAnswer(tuple(addrs), self.ttl)


class DnsPythonResolver:
    """Queries the given nameservers directly, with per-try timeouts and TCP fallback."""

    def __init__(
        self,
        nameservers: Iterable[str | tuple[str, int]],
        *,
        timeout: float = 2.0,
        attempts: int = 2,
    ) -> None:
        self.nameservers: list[tuple[str, int]] = [
            (ns, 53) if isinstance(ns, str) else ns for ns in nameservers
        ]
        if not self.nameservers:
            raise ValueError("at least one nameserver is required")
        self.timeout = timeout
        self.attempts = attempts

    async def lookup(self, domain: Domain, rtype: RecordType) -> DnsAnswer:
        """Query each nameserver in turn until one answers."""
        query = dns.message.make_query(domain.value, dns.rdatatype.from_text(rtype.value))
        query.flags |= dns.flags.RD
        last: DnsError = DnsTimeout(f"{domain}: no nameserver answered")
        for _ in range(self.attempts):
            for server in self.nameservers:
                try:
                    response = await self._query(query, server)
                except DnsError as exc:
                    last = exc
                    continue
                return _answer_from(response, domain, rtype)
        raise last

    async def _query(
        self, query: dns.message.Message, server: tuple[str, int]
    ) -> dns.message.Message:
        wire = query.to_wire()
        v6 = ":" in server[0]
        try:
            with anyio.fail_after(self.timeout):
                async with await anyio.create_connected_udp_socket(
                    server[0], server[1], family=socket.AF_INET6 if v6 else socket.AF_INET
                ) as udp:
                    await udp.send(wire)
                    while True:
                        data = await udp.receive()
                        try:
                            response = dns.message.from_wire(data)
                        except dns.exception.DNSException:
                            continue  # garbage: keep waiting for the real answer
                        if response.id == query.id:
                            break
                if response.flags & dns.flags.TC:
                    response = await self._query_tcp(wire, query.id, server)
        except TimeoutError as exc:
            raise DnsTimeout(
                f"{server[0]}:{server[1]} did not answer in {self.timeout:g}s"
            ) from exc
        except (OSError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
            # a connected UDP socket reports ICMP port-unreachable as a broken stream
            raise DnsError(f"{server[0]}:{server[1]}: {exc!r}") from exc
        return response

    async def _query_tcp(
        self, wire: bytes, query_id: int, server: tuple[str, int]
    ) -> dns.message.Message:
        # EndOfStream (the server hung up mid-answer) becomes a DnsError in _query
        async with await anyio.connect_tcp(server[0], server[1]) as tcp:
            await tcp.send(len(wire).to_bytes(2, "big") + wire)
            buf = b""
            while len(buf) < 2 or len(buf) < 2 + int.from_bytes(buf[:2], "big"):
                buf += await tcp.receive()
        size = int.from_bytes(buf[:2], "big")
        try:
            response = dns.message.from_wire(buf[2 : 2 + size])
        except dns.exception.DNSException as exc:
            raise DnsError(f"malformed DNS response from {server[0]}: {exc}") from exc
        if response.id != query_id:
            raise DnsError(f"DNS response from {server[0]} answers another query")
        return response


def _answer_from(response: dns.message.Message, domain: Domain, rtype: RecordType) -> DnsAnswer:
    rcode = response.rcode()
    if rcode != dns.rcode.NOERROR:
        raise NoRecords(f"{domain} {rtype.value}: {dns.rcode.to_text(rcode)}")
    wanted = dns.rdatatype.from_text(rtype.value)
    addrs: list[IpAddress] = []
    ttl: float | None = None
    for rrset in response.answer:
        if rrset.rdtype != wanted:
            continue  # CNAME chain entries: the server already followed them
        ttl = rrset.ttl if ttl is None else min(ttl, rrset.ttl)
        addrs.extend(ipaddress.ip_address(rd.address) for rd in rrset)
    if not addrs:
        raise NoRecords(f"{domain} has no {rtype.value} records")
    return DnsAnswer(tuple(addrs), float(ttl or 0))


@dataclass
class InMemoryResolver:
    """Fixed answers per domain; unknown names go to ``fallback`` (or fail)."""

    entries: dict[Domain, list[IpAddress]] = field(default_factory=dict)
    fallback: Resolver | None = None
    ttl: float = 300.0

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, Iterable[str]], fallback: Resolver | None = None
    ) -> InMemoryResolver:
        """Build from ``{"example.com": ["127.0.0.1", "::1"]}``."""
        entries = {
            Domain.parse(name): [ipaddress.ip_address(a) for a in addrs]
            for name, addrs in mapping.items()
        }
        return cls(entries, fallback)

    def insert(self, domain: Domain | str, *addresses: IpAddress | str) -> None:
        """Pin ``domain`` to ``addresses`` (replacing earlier ones)."""
        key = domain if isinstance(domain, Domain) else Domain.parse(domain)
        self.entries[key] = [ipaddress.ip_address(a) for a in addresses]

    async def lookup(self, domain: Domain, rtype: RecordType) -> DnsAnswer:
        """The pinned addresses of the right family, else the fallback's answer."""
        pinned = self.entries.get(domain)
        if pinned is not None:
            version = 4 if rtype is RecordType.A else 6
            addrs = tuple(a for a in pinned if a.version == version)
            if not addrs:
                raise NoRecords(f"{domain} has no pinned {rtype.value} records")
            return DnsAnswer(addrs, self.ttl)
        if self.fallback is not None:
            return await self.fallback.lookup(domain, rtype)
        raise NoRecords(f"{domain} is not pinned and there is no fallback resolver")


class CachingResolver:
    """Caches another resolver's answers for their TTL, and failures briefly.

    Concurrent lookups of a name that is not cached share one query. A
    timeout is not cached (the next lookup asks again); "no such records" is,
    for ``negative_ttl`` seconds. Each caller gets its own exception object.
    """

    def __init__(
        self,
        inner: Resolver,
        *,
        min_ttl: float = 1.0,
        max_ttl: float = 3600.0,
        negative_ttl: float = 5.0,
        max_entries: int = 10_000,
    ) -> None:
        self.inner = inner
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.negative_ttl = negative_ttl
        self.max_entries = max_entries
        self._cache: dict[tuple[Domain, RecordType], tuple[float, DnsAnswer | DnsError]] = {}
        self._in_flight: dict[tuple[Domain, RecordType], anyio.Event] = {}

    async def lookup(self, domain: Domain, rtype: RecordType) -> DnsAnswer:
        """A cached answer while fresh, else ask the inner resolver (once for all askers)."""
        key = (domain, rtype)
        while True:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > anyio.current_time():
                if isinstance(hit[1], DnsError):
                    raise _fresh(hit[1])
                return hit[1]
            pending = self._in_flight.get(key)
            if pending is None:
                break
            await pending.wait()
            if key not in self._cache:
                break  # the shared query timed out or was cancelled: ask ourselves
        done = self._in_flight[key] = anyio.Event()
        try:
            answer = await self.inner.lookup(domain, rtype)
        except DnsTimeout:
            raise
        except DnsError as exc:
            self._store(key, anyio.current_time() + self.negative_ttl, exc)
            raise
        finally:
            if self._in_flight.get(key) is done:
                del self._in_flight[key]
            done.set()
        ttl = min(max(answer.ttl, self.min_ttl), self.max_ttl)
        self._store(key, anyio.current_time() + ttl, answer)
        return answer

    def _store(
        self, key: tuple[Domain, RecordType], expires: float, value: DnsAnswer | DnsError
    ) -> None:
        if key not in self._cache and len(self._cache) >= self.max_entries:
            # drop the entry closest to expiry: cheap and good enough for a bound
            oldest = min(self._cache, key=lambda k: self._cache[k][0])
            del self._cache[oldest]
        self._cache[key] = (expires, value)

    def clear(self) -> None:
        """Forget every cached answer."""
        self._cache.clear()


def _fresh(error: DnsError) -> DnsError:
    """A new exception like ``error``: raising one shared object from many tasks
    would splice their tracebacks together."""
    copy = type(error)(*error.args)
    copy.__cause__ = error.__cause__
    return copy


_default_resolver: Resolver | None = None


def default_resolver() -> Resolver:
    """The process-wide resolver connectors use when none is given (in the
    Context or to the connector): the system resolver behind one shared cache."""
    global _default_resolver
    if _default_resolver is None:
        _default_resolver = CachingResolver(SystemResolver())
    return _default_resolver
