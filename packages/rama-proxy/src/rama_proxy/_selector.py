"""Choose upstream proxies from the proxy DB by the user's labels: :class:`ProxyDbSelector`.

Per request the selector reads the :class:`~rama_proxy.ProxyUser` (its label
filter) from the Context, asks the DB for the records that match and can carry
the request (``tcp`` + a usable scheme for a CONNECT, ``udp`` + SOCKS5 for a UDP
associate: put :class:`UpstreamNeeds` into the Context), drops the ones in
failure backoff and orders the rest:

- ``random``: a random sample;
- ``round_robin``: rotating through the matches;
- ``sticky``: by rendezvous (highest random weight) hashing of the sticky key
  over the healthy candidates. The key is ``session-<key>`` from the username
  (in every mode; scoped to the user) or, in ``sticky`` mode without a session,
  the user name. The hash depends only on the key and the record ids, so
  several proxy instances behind a load balancer choose the same upstream
  without sharing state, and removing one record only moves the keys it had.

An upstream that fails is backed off (exponentially, capped) and skipped until
its backoff ends; a success clears it. Candidates in backoff are tried last,
soonest-healthy first, rather than refusing the request. No matching record
raises ``UpstreamError(UpstreamFailure.NOT_ALLOWED)`` (HTTP 403, SOCKS5 0x02).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Literal

import anyio

from rama_core import Context
from rama_http.client import ProxyConfig
from rama_net import Authority

from ._auth import ProxyUser
from ._egress import redact_proxy_url
from ._errors import UpstreamError, UpstreamFailure
from ._filter import ProxyFilter
from ._proxy_db import PROXY_SCHEMES, ProxyDb, ProxyDbSource, Transport, UpstreamProxy

__all__ = [
    "DEFAULT_SCHEME_PREFERENCE",
    "ProxyDbSelector",
    "SelectionMode",
    "UpstreamNeeds",
    "rendezvous_order",
]

_log = logging.getLogger("rama.proxy.selector")

SelectionMode = Literal["random", "round_robin", "sticky"]

DEFAULT_SCHEME_PREFERENCE = ("http", "socks5h", "https", "socks5")
"""Which scheme to use when a record supports several: fewest round trips first.

``socks5`` (the client resolves the name) goes last for a domain target and
ranks with ``socks5h`` for an IP target; a UDP associate uses SOCKS5 only.
"""

_M64 = (1 << 64) - 1
_EMPTY = ProxyFilter()


@dataclass(frozen=True, slots=True)
class UpstreamNeeds:
    """A Context extension: what the egress must carry (``"udp"`` for a SOCKS5 UDP associate)."""

    transport: Transport = "tcp"


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def _mix(x: int) -> int:
    """splitmix64's finalizer: a well-spread 64-bit score from 64 bits."""
    z = (x + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def rendezvous_order(key: str, ids: Sequence[str]) -> list[str]:
    """``ids`` ordered by rendezvous weight for ``key`` (best first); stable across processes."""
    hk = _stable_hash(key)
    return sorted(ids, key=lambda i: (_mix(hk ^ _stable_hash(i)), i), reverse=True)


class ProxyDbSelector:
    """An :class:`~rama_proxy.UpstreamSelector` over a :class:`ProxyDb` (or a reloading file)."""

    def __init__(
        self,
        db: ProxyDb | ProxyDbSource,
        *,
        mode: SelectionMode = "random",
        candidates: int = 3,
        failure_backoff: float = 1.0,
        max_backoff: float = 60.0,
        schemes: Collection[str] | None = None,
        scheme_preference: Sequence[str] = DEFAULT_SCHEME_PREFERENCE,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if mode not in ("random", "round_robin", "sticky"):
            raise ValueError(f"unknown selection mode {mode!r} (random, round_robin or sticky)")
        if candidates < 1:
            raise ValueError("candidates must be at least 1")
        self.source: ProxyDbSource = db
        self.mode: SelectionMode = mode
        self.candidates = candidates
        """Upstreams returned per request (the egress tries them in order)."""
        self.failure_backoff = failure_backoff
        """The first backoff after a failure; doubles per consecutive failure."""
        self.max_backoff = max_backoff
        self.schemes: frozenset[str] | None = (
            frozenset(s.lower() for s in schemes) if schemes is not None else None
        )
        """The proxy protocols the egress's connectors speak (None: all of PROXY_SCHEMES)."""
        unknown = set(scheme_preference) - set(PROXY_SCHEMES)
        if unknown:
            raise ValueError(f"unknown proxy schemes {sorted(unknown)}")
        self.scheme_preference = tuple(scheme_preference) + tuple(
            s for s in PROXY_SCHEMES if s not in scheme_preference
        )
        allowed = [s for s in self.scheme_preference if self.schemes is None or s in self.schemes]
        self._order_domain: tuple[str, ...] = tuple(allowed)
        # no name to resolve for an IP target: socks5 is as good as socks5h
        self._order_ip = tuple(
            x
            for s in allowed
            if s != "socks5"
            for x in (("socks5h", "socks5") if s == "socks5h" else (s,))
            if x in allowed
        )
        if "socks5" in allowed and "socks5" not in self._order_ip:
            self._order_ip += ("socks5",)
        self._order_udp: tuple[str, ...] = tuple(
            s for s in self._order_ip if s in ("socks5", "socks5h")
        )
        self._clock = clock or anyio.current_time
        self._rng = rng or random.Random()
        self._rr = itertools.count()
        self._failures: dict[str, int] = {}
        self._until: dict[str, float] = {}
        self._url_ids: dict[str, str] = {}
        self._id_hash: dict[str, int] = {}
        self._hrw_cache: dict[str, tuple[Sequence[UpstreamProxy], list[UpstreamProxy]]] = {}

    # -- UpstreamSelector ------------------------------------------------------------------

    async def select(
        self, ctx: Context, target: Authority, *, transport: Transport | None = None
    ) -> Sequence[ProxyConfig]:
        """The upstreams to try for ``target``, best first (see the module docs)."""
        return self.choose(ctx, target, transport=transport)

    def report(self, upstream: ProxyConfig, ok: bool) -> None:
        """Clear (ok) or extend (failure) the upstream's backoff."""
        rid = self._url_ids.get(upstream.url)
        if rid is None:
            return
        if ok:
            failures = self._failures.pop(rid, None)
            if failures is not None:
                self._until.pop(rid, None)
                _log.info("upstream proxy %s is healthy again after %d failure(s)", rid, failures)
            return
        n = self._failures.get(rid, 0) + 1
        self._failures[rid] = n
        delay = min(self.failure_backoff * 2 ** min(n - 1, 62), self.max_backoff)
        self._until[rid] = self._clock() + delay
        if n & (n - 1) == 0:  # 1st, 2nd, 4th, 8th... failure: a bounded number of lines
            _log.warning(
                "upstream proxy %s (%s) failed %d time(s) in a row; backed off for %.3gs",
                rid,
                redact_proxy_url(upstream.url),
                n,
                delay,
            )

    # -- the choice (sync, for tests and custom selectors) --------------------------------

    def choose(
        self, ctx: Context, target: Authority, *, transport: Transport | None = None
    ) -> list[ProxyConfig]:
        """:meth:`select` without the await."""
        user = ctx.get(ProxyUser)
        proxy_filter = user.filter if user is not None else _EMPTY
        if transport is None:
            needs = ctx.get(UpstreamNeeds)
            transport = needs.transport if needs is not None else "tcp"
        db = self.source.current()
        records = db.query(proxy_filter, transport=transport, schemes=self.schemes)
        if not records:
            raise UpstreamError(
                UpstreamFailure.NOT_ALLOWED,
                f"no upstream proxy matches {proxy_filter.describe()} ({transport} to {target})",
            )
        key: str | None = None
        if proxy_filter.session is not None:
            key = f"{user.name if user is not None else ''}\0{proxy_filter.session}"
        elif self.mode == "sticky" and user is not None:
            key = user.name
        chosen = self._order(records, key)
        out: list[ProxyConfig] = []
        for rec in chosen:
            scheme = self.scheme_for(rec, target, transport)
            url = rec.url(scheme)
            if len(self._url_ids) > 65536:
                self._url_ids.clear()
            self._url_ids[url] = rec.id
            out.append(ProxyConfig(url))
        return out

    def _order(self, records: Sequence[UpstreamProxy], key: str | None) -> list[UpstreamProxy]:
        n = self.candidates
        until = self._until
        now = self._clock() if until else 0.0
        if key is not None:
            ranked = self._ranked(records, key)
            if not until:
                return ranked[:n]
            picked = [r for r in ranked if until.get(r.id, 0.0) <= now][:n]
        else:
            healthy: Sequence[UpstreamProxy] = records
            if until:
                healthy = [r for r in records if until.get(r.id, 0.0) <= now]
            if self.mode == "round_robin" and healthy:
                start = next(self._rr) % len(healthy)
                picked = [*healthy[start : start + n], *healthy[: max(0, start + n - len(healthy))]]
                picked = picked[: min(n, len(healthy))]
            else:
                picked = self._rng.sample(healthy, min(n, len(healthy)))
        if len(picked) < n and until:
            backed_off = sorted(
                (r for r in records if until.get(r.id, 0.0) > now), key=lambda r: until[r.id]
            )
            picked += backed_off[: n - len(picked)]
        return picked

    def _ranked(self, records: Sequence[UpstreamProxy], key: str) -> list[UpstreamProxy]:
        """``records`` in rendezvous order for ``key`` (cached: sticky keys repeat)."""
        hit = self._hrw_cache.get(key)
        if hit is not None and hit[0] is records:
            return hit[1]
        hk = _stable_hash(key)
        ranked = sorted(records, key=lambda r: (_mix(hk ^ self._hash_id(r.id)), r.id), reverse=True)
        if len(self._hrw_cache) >= 4096:
            self._hrw_cache.clear()
        self._hrw_cache[key] = (records, ranked)
        return ranked

    def _hash_id(self, rid: str) -> int:
        h = self._id_hash.get(rid)
        if h is None:
            if len(self._id_hash) > 1 << 20:
                self._id_hash.clear()
            h = self._id_hash[rid] = _stable_hash(rid)
        return h

    def scheme_for(self, record: UpstreamProxy, target: Authority, transport: Transport) -> str:
        """The proxy URL scheme to reach ``target`` through ``record``."""
        order: tuple[str, ...]
        if transport == "udp":
            order = self._order_udp
        elif target.host.is_ip:
            order = self._order_ip
        else:
            order = self._order_domain
        have = record.schemes
        for s in order:
            if s in have:
                return s
        raise ValueError(f"upstream proxy {record.id!r} has no usable scheme for {transport}")

    # -- health ---------------------------------------------------------------------------

    def backoff_remaining(self, record_id: str) -> float:
        """Seconds until ``record_id`` is tried again first (0 when healthy)."""
        until = self._until.get(record_id)
        return max(0.0, until - self._clock()) if until is not None else 0.0

    def record_for(self, upstream: ProxyConfig) -> UpstreamProxy | None:
        """The DB record a URL returned by :meth:`select` came from."""
        rid = self._url_ids.get(upstream.url)
        return self.source.current().get(rid) if rid is not None else None
