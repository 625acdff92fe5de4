"""ProxyDbSelector: modes, rendezvous stickiness, failure backoff, schemes, no-match refusal."""

from __future__ import annotations

import os
import random
import string
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rama_core import Context
from rama_http.client import ProxyConfig
from rama_net import Authority
from rama_proxy import (
    Egress,
    ProxyDb,
    ProxyDbFile,
    ProxyDbSelector,
    ProxyFilter,
    ProxyUser,
    UpstreamError,
    UpstreamFailure,
    UpstreamNeeds,
    UpstreamProxy,
    UsernameLabelParser,
    rendezvous_order,
)

TARGET = Authority.parse("example.com:443")
IP_TARGET = Authority.parse("192.0.2.1:443")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_db(n: int = 10, **kw: object) -> ProxyDb:
    return ProxyDb(
        UpstreamProxy(
            id=f"p{i}",
            address=f"127.0.0.1:{10000 + i}",
            http=True,
            country="us" if i % 2 else "be",
            pool_id=f"pool{i % 3}",
            **kw,  # type: ignore[arg-type]
        )
        for i in range(n)
    )


def ctx_for(username: str | None) -> Context:
    ctx = Context()
    if username is not None:
        user, f = UsernameLabelParser().parse(username)
        ctx.insert(ProxyUser(user, username, f))
    return ctx


def port(cfg: ProxyConfig) -> int:
    return cfg.authority.port


def ids(sel: ProxyDbSelector, cfgs: list[ProxyConfig]) -> list[str]:
    out = []
    for c in cfgs:
        rec = sel.record_for(c)
        assert rec is not None
        out.append(rec.id)
    return out


def test_random_mode_returns_distinct_matching_candidates() -> None:
    sel = ProxyDbSelector(make_db(), candidates=3, rng=random.Random(1), clock=Clock())
    seen: Counter[str] = Counter()
    for _ in range(200):
        got = ids(sel, sel.choose(ctx_for("john-country-us"), TARGET))
        assert len(got) == 3
        assert len(set(got)) == 3
        assert all(int(i[1:]) % 2 == 1 for i in got)
        seen[got[0]] += 1
    assert set(seen) == {"p1", "p3", "p5", "p7", "p9"}  # every match gets picked first


def test_round_robin_cycles_through_the_matches() -> None:
    sel = ProxyDbSelector(make_db(), mode="round_robin", candidates=2, clock=Clock())
    firsts = [ids(sel, sel.choose(ctx_for("john-pool-pool0"), TARGET))[0] for _ in range(8)]
    assert firsts == ["p0", "p3", "p6", "p9", "p0", "p3", "p6", "p9"]
    assert ids(sel, sel.choose(ctx_for("john-pool-pool0"), TARGET)) == ["p0", "p3"]


def test_no_user_means_the_empty_filter() -> None:
    sel = ProxyDbSelector(make_db(4), mode="round_robin", candidates=4, clock=Clock())
    assert sorted(ids(sel, sel.choose(Context(), TARGET))) == ["p0", "p1", "p2", "p3"]


@pytest.mark.parametrize("username", ["john-country-fr", "john-mobile", "john-id-nope"])
def test_no_match_is_not_allowed(username: str) -> None:
    sel = ProxyDbSelector(make_db(), clock=Clock())
    with pytest.raises(UpstreamError) as info:
        sel.choose(ctx_for(username), TARGET)
    err = info.value
    assert err.failure is UpstreamFailure.NOT_ALLOWED
    assert err.failure.http_status == 403
    assert err.failure.socks5_reply == 0x02
    assert "no upstream proxy matches" in str(err)


def test_empty_db_is_not_allowed() -> None:
    with pytest.raises(UpstreamError, match="no upstream proxy matches any"):
        ProxyDbSelector(ProxyDb()).choose(Context(), TARGET)


@pytest.mark.anyio
async def test_egress_turns_no_match_into_a_403_cause() -> None:
    egress = Egress(selector=ProxyDbSelector(make_db()))
    with pytest.raises(UpstreamError) as info:
        await egress.serve(ctx_for("john-country-zz"), TARGET)
    assert info.value.failure is UpstreamFailure.NOT_ALLOWED


# -- stickiness -----------------------------------------------------------------------------------


def test_session_is_sticky_and_two_instances_agree() -> None:
    db = make_db(20)
    a = ProxyDbSelector(db, rng=random.Random(1), clock=Clock())
    b = ProxyDbSelector(ProxyDb(reversed(db.records)), rng=random.Random(2), clock=Clock())
    firsts = set()
    for k in range(50):
        name = f"john-session-s{k}"
        first = a.choose(ctx_for(name), TARGET)
        assert a.choose(ctx_for(name), TARGET) == first  # the same key, the same upstreams
        assert b.choose(ctx_for(name), TARGET) == first  # another instance, the same choice
        firsts.add(first[0].url)
    assert len(firsts) > 10  # keys spread over the upstreams


def test_sessions_are_scoped_per_user() -> None:
    sel = ProxyDbSelector(make_db(50), candidates=1, clock=Clock())
    same = sum(
        sel.choose(ctx_for(f"john-session-{k}"), TARGET)
        == sel.choose(ctx_for(f"mary-session-{k}"), TARGET)
        for k in range(100)
    )
    assert same < 20


def test_sticky_mode_without_session_sticks_per_user() -> None:
    sel = ProxyDbSelector(make_db(20), mode="sticky", candidates=1, clock=Clock())
    for user in ("john", "mary", "bob"):
        first = sel.choose(ctx_for(user), TARGET)
        for _ in range(5):
            assert sel.choose(ctx_for(user), TARGET) == first
    # without a user there is no key: random
    seen = {sel.choose(Context(), TARGET)[0].url for _ in range(100)}
    assert len(seen) > 1


def test_removing_one_proxy_moves_only_its_keys() -> None:
    db = make_db(20)
    sel = ProxyDbSelector(db, candidates=1, clock=Clock())
    before = {k: ids(sel, sel.choose(ctx_for(f"u-session-{k}"), TARGET))[0] for k in range(500)}
    removed = "p7"
    smaller = ProxyDb(r for r in db.records if r.id != removed)
    sel2 = ProxyDbSelector(smaller, candidates=1, clock=Clock())
    moved = 0
    for k, first in before.items():
        now = ids(sel2, sel2.choose(ctx_for(f"u-session-{k}"), TARGET))[0]
        if first == removed:
            moved += 1
            assert now != removed
        else:
            assert now == first
    assert 0 < moved < 500 * 0.15  # about 1/20 of the keys, no more


def test_sticky_respects_the_filter() -> None:
    sel = ProxyDbSelector(make_db(20), candidates=3, clock=Clock())
    got = ids(sel, sel.choose(ctx_for("john-country-be-session-x"), TARGET))
    assert all(int(i[1:]) % 2 == 0 for i in got)
    ranked = rendezvous_order("john\0x", [f"p{i}" for i in range(0, 20, 2)])
    assert got == ranked[:3]


# -- failure backoff ------------------------------------------------------------------------------


def test_a_failed_upstream_is_skipped_while_backed_off_then_comes_back() -> None:
    clock = Clock()
    sel = ProxyDbSelector(
        make_db(10), candidates=3, failure_backoff=1.0, max_backoff=8.0, clock=clock
    )
    ctx = ctx_for("john-session-abc")
    first = sel.choose(ctx, TARGET)
    sel.report(first[0], False)
    assert sel.backoff_remaining(ids(sel, first)[0]) == pytest.approx(1.0)
    moved = sel.choose(ctx, TARGET)
    # the key moves to its next choice (the others keep their order)
    assert moved[0] == first[1]
    assert moved[1] == first[2]
    assert moved[0] != first[0]
    clock.now += 1.01
    assert sel.choose(ctx, TARGET) == first  # backoff over: it comes back
    # a second failure in a row doubles the backoff, success clears it
    sel.report(first[0], False)
    assert sel.backoff_remaining(ids(sel, first)[0]) == pytest.approx(2.0)
    sel.report(first[0], True)
    assert sel.backoff_remaining(ids(sel, first)[0]) == 0.0
    assert sel.choose(ctx, TARGET) == first


def test_backoff_is_exponential_and_capped() -> None:
    clock = Clock()
    sel = ProxyDbSelector(make_db(2), failure_backoff=0.5, max_backoff=3.0, clock=clock)
    cfg = sel.choose(ctx_for("john-id-p0"), TARGET)[0]
    waits = []
    for _ in range(6):
        sel.report(cfg, False)
        waits.append(sel.backoff_remaining("p0"))
    assert waits == pytest.approx([0.5, 1.0, 2.0, 3.0, 3.0, 3.0])
    sel.report(ProxyConfig("http://127.0.0.1:1"), False)  # unknown upstreams are ignored


def test_all_backed_off_still_tries_the_soonest_first() -> None:
    clock = Clock()
    sel = ProxyDbSelector(make_db(3), candidates=3, clock=clock, failure_backoff=1.0)
    cfgs = sel.choose(ctx_for("john"), TARGET)
    for i, cfg in enumerate(cfgs):
        for _ in range(3 - i):  # the last one gets the shortest backoff
            sel.report(cfg, False)
    again = sel.choose(ctx_for("john"), TARGET)
    assert again == list(reversed(cfgs))
    # with one healthy record, it comes first
    clock.now += 1.5
    assert sel.choose(ctx_for("john"), TARGET)[0] == cfgs[2]


# -- capabilities and schemes ---------------------------------------------------------------------

MIXED = ProxyDb.from_csv(
    """\
h,1,,1,,,,,,,127.0.0.1:1,,,,,,,,alice:pw
s,1,1,,,1,1,,,,127.0.0.1:2,,,,,,,
s5,1,1,,,1,,,,,127.0.0.1:3,,,,,,,
tls,1,,,1,,,,,,127.0.0.1:4,,,,,,,
all,1,1,1,1,1,1,,,,127.0.0.1:5,,,,,,,
url,1,,1,1,,,,,,https://127.0.0.1:6,,,,,,,
"""
)


def scheme_of(sel: ProxyDbSelector, rid: str, target: Authority, transport: str = "tcp") -> str:
    rec = MIXED.get(rid)
    assert rec is not None
    assert transport in ("tcp", "udp")
    return sel.scheme_for(rec, target, transport)  # type: ignore[arg-type]


def test_scheme_choice() -> None:
    sel = ProxyDbSelector(MIXED)
    assert scheme_of(sel, "h", TARGET) == "http"
    assert scheme_of(sel, "s", TARGET) == "socks5h"
    assert scheme_of(sel, "s", IP_TARGET) == "socks5h"
    assert scheme_of(sel, "s5", TARGET) == "socks5"
    assert scheme_of(sel, "tls", TARGET) == "https"
    assert scheme_of(sel, "all", TARGET) == "http"
    assert scheme_of(sel, "all", TARGET, "udp") == "socks5h"
    assert scheme_of(sel, "url", TARGET) == "https"  # the address names its scheme
    socks_first = ProxyDbSelector(MIXED, scheme_preference=("socks5", "socks5h"))
    assert scheme_of(socks_first, "all", TARGET) == "socks5"
    only_socks = ProxyDbSelector(MIXED, schemes={"socks5h", "socks5"})
    assert scheme_of(only_socks, "all", TARGET) == "socks5h"
    with pytest.raises(ValueError, match="unknown proxy schemes"):
        ProxyDbSelector(MIXED, scheme_preference=("gopher",))


def test_credential_goes_into_the_userinfo() -> None:
    sel = ProxyDbSelector(MIXED)
    (cfg,) = sel.choose(ctx_for("john-id-h"), TARGET)
    assert cfg.url == "http://alice:pw@127.0.0.1:1"
    assert cfg.uri.userinfo == "alice:pw"
    assert str(cfg.authority) == "127.0.0.1:1"


def test_udp_needs_a_socks5_record() -> None:
    sel = ProxyDbSelector(MIXED, mode="round_robin", candidates=10)
    ctx = Context()
    ctx.insert(UpstreamNeeds("udp"))
    got = sel.choose(ctx, TARGET)
    assert sorted(ids(sel, got)) == ["all", "s", "s5"]
    assert all(c.url.startswith(("socks5://", "socks5h://")) for c in got)
    assert sorted(ids(sel, sel.choose(Context(), TARGET, transport="udp"))) == ["all", "s", "s5"]
    only_http = ProxyDbSelector(MIXED, schemes={"http"})
    with pytest.raises(UpstreamError, match="udp"):
        only_http.choose(ctx, TARGET)
    # the egress's connectors limit the records ("url" names https:// in its address)
    assert sorted(ids(only_http, only_http.choose(Context(), TARGET))) == ["all", "h"]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="mode"):
        ProxyDbSelector(MIXED, mode="fastest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="candidates"):
        ProxyDbSelector(MIXED, candidates=0)


@pytest.mark.anyio
async def test_selector_follows_a_reloaded_file(tmp_path: Path) -> None:
    path = tmp_path / "db.csv"
    path.write_text("a,1,,1,,,,,,,127.0.0.1:1,,,be,,,,\n")
    source = ProxyDbFile(path)
    sel = ProxyDbSelector(source)
    assert [c.url for c in await sel.select(ctx_for("john"), TARGET)] == ["http://127.0.0.1:1"]
    path.write_text("b,1,,1,,,,,,,127.0.0.1:22,,,be,,,,\n")
    st_ = path.stat()
    os.utime(path, ns=(st_.st_mtime_ns + 10**9, st_.st_mtime_ns + 10**9))
    assert await source.check()
    assert [c.url for c in await sel.select(ctx_for("john"), TARGET)] == ["http://127.0.0.1:22"]


# -- properties of rendezvous hashing -------------------------------------------------------------

_ids = st.lists(
    st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=6),
    min_size=1,
    max_size=15,
    unique=True,
)
_key = st.text(max_size=10)


@given(_ids, _key)
def test_rendezvous_is_order_independent(record_ids: list[str], key: str) -> None:
    assert rendezvous_order(key, record_ids) == rendezvous_order(key, list(reversed(record_ids)))
    assert sorted(rendezvous_order(key, record_ids)) == sorted(record_ids)


@given(_ids, _key, st.data())
def test_rendezvous_removal_keeps_the_others_order(
    record_ids: list[str], key: str, data: st.DataObject
) -> None:
    gone = data.draw(st.sampled_from(record_ids))
    full = rendezvous_order(key, record_ids)
    rest = rendezvous_order(key, [i for i in record_ids if i != gone])
    assert rest == [i for i in full if i != gone]


@given(_ids, st.lists(_key, min_size=1, max_size=5), st.integers(1, 4))
@settings(max_examples=100)
def test_selector_sticky_order_is_rendezvous(
    record_ids: list[str], keys: list[str], n: int
) -> None:
    db = ProxyDb(
        UpstreamProxy(id=rid, address=f"127.0.0.1:{1000 + i}", http=True)
        for i, rid in enumerate(record_ids)
    )
    sel = ProxyDbSelector(db, candidates=n, clock=Clock())
    for key in keys:
        ctx = Context()
        ctx.insert(ProxyUser("u", "u", ProxyFilter(session=key)))
        got = ids(sel, sel.choose(ctx, TARGET))
        assert got == rendezvous_order(f"u\0{key}", record_ids)[:n]


_schemes = st.lists(
    st.sampled_from(["http", "https", "socks5", "socks5h"]), min_size=1, unique=True
)


@given(
    _schemes,
    st.none() | _schemes,
    st.permutations(["http", "https", "socks5", "socks5h"]),
    st.sampled_from([TARGET, IP_TARGET]),
    st.sampled_from(["tcp", "udp"]),
)
def test_scheme_for_picks_a_usable_scheme(
    have: list[str], allowed: list[str] | None, pref: list[str], target: Authority, transport: str
) -> None:
    rec = UpstreamProxy(
        id="r",
        address="127.0.0.1:1",
        udp=True,
        **{s: True for s in have},  # type: ignore[arg-type]
    )
    sel = ProxyDbSelector(ProxyDb([rec]), schemes=allowed, scheme_preference=pref)
    usable = [
        s
        for s in have
        if (allowed is None or s in allowed) and (transport == "tcp" or s.startswith("socks5"))
    ]
    assert transport in ("tcp", "udp")
    if not usable:
        with pytest.raises(UpstreamError):
            sel.choose(Context(), target, transport=transport)  # type: ignore[arg-type]
        return
    (cfg,) = sel.choose(Context(), target, transport=transport)  # type: ignore[arg-type]
    scheme = cfg.url.partition("://")[0]
    assert scheme in usable
    if target is TARGET and transport == "tcp":
        assert scheme == next(s for s in pref if s in usable)  # the preference decides
