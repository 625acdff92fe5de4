"""Username labels -> (user, ProxyFilter): parsing, strict/lossy, custom labels, fuzzing."""

from __future__ import annotations

import dataclasses
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rama_core import Context
from rama_net import SocketAddress
from rama_proxy import (
    ProxyAuthenticator,
    ProxyFilter,
    ProxyUser,
    StaticCredentials,
    UsernameLabelParser,
    format_username,
)

STRICT = UsernameLabelParser()
LOSSY = UsernameLabelParser(strict=False)


def test_the_issue_example() -> None:
    user, f = STRICT.parse("john-country-us-residential-pool-a")
    assert user == "john"
    assert f == ProxyFilter(country=("us",), residential=True, pool=("a",))


def test_every_builtin_label() -> None:
    user, f = STRICT.parse(
        "bob-id-P1-pool-Alpha-continent-EU-country-BE-state-Vlaanderen-city-Gent"
        "-carrier-Proximus-asn-AS5432-datacenter-!residential-mobile"
    )
    assert user == "bob"
    assert f.id == ("p1",)
    assert f.pool == ("alpha",)
    assert f.continent == ("eu",)
    assert f.country == ("be",)
    assert f.state == ("vlaanderen",)
    assert f.city == ("gent",)
    assert f.carrier == ("proximus",)
    assert f.asn == ("5432",)
    assert (f.datacenter, f.residential, f.mobile) == (True, False, True)
    assert f.session is None
    assert not f.new_connection


def test_keys_are_case_insensitive_and_repeats_or_together() -> None:
    _, f = STRICT.parse("john-COUNTRY-us-Country-GB-country-us-!Residential")
    assert f.country == ("us", "gb")
    assert f.residential is False


def test_session_keeps_case_and_newconn() -> None:
    _, f = STRICT.parse("john-session-AbC123-newconn-country-us")
    assert f.session == "AbC123"
    assert f.new_connection
    assert f.country == ("us",)
    # the DB matches on the filter without the per-request parts
    assert f.match_key == ProxyFilter(country=("us",))
    _, g = STRICT.parse("john-NEWCONN")
    assert g.new_connection
    assert g.match_key.is_empty


def test_wildcard_value_is_kept() -> None:
    _, f = STRICT.parse("john-country-*")
    assert f.country == ("*",)


def test_plain_user_has_an_empty_filter() -> None:
    assert STRICT.parse("john") == ("john", ProxyFilter())
    assert STRICT.parse("john")[1].is_empty


@pytest.mark.parametrize(
    ("username", "label"),
    [
        ("john-foo", "'foo'"),
        ("john-country", "'country'"),
        ("john-country-us-city", "'city'"),
        ("john--country-us", "empty label"),
        ("john-residential-!residential", "'!residential'"),
        ("john-!newconn", "'!newconn'"),
        ("john-!country-us", "'!country'"),
        ("john-session-a-session-b", "'session'"),
        ("john-country-u s", "'country'"),
        ("john-country-\x00", "'country'"),
    ],
)
def test_strict_mode_names_the_bad_label(username: str, label: str) -> None:
    with pytest.raises(ValueError, match=label):
        STRICT.parse(username)


def test_lossy_mode_skips_what_strict_refuses() -> None:
    assert LOSSY.parse("john-foo-country-us-city") == ("john", ProxyFilter(country=("us",)))
    assert LOSSY.parse("john--residential-!residential") == ("john", ProxyFilter(residential=False))
    assert LOSSY.parse("john-session-a-session-b")[1].session == "b"


def test_both_modes_refuse_an_empty_user_and_too_many_labels() -> None:
    for parser in (STRICT, LOSSY):
        with pytest.raises(ValueError, match="empty user"):
            parser.parse("-country-us")
        with pytest.raises(ValueError, match="empty user"):
            parser.parse("")
        with pytest.raises(ValueError, match="too many labels"):
            parser.parse("john" + "-mobile" * 65)


def test_custom_label_parsers() -> None:
    def tier(f: ProxyFilter, value: str | None) -> ProxyFilter:
        assert value is not None
        if value not in ("gold", "silver"):
            raise ValueError(f"unknown tier {value!r}")
        return dataclasses.replace(f, pool=(*f.pool, f"tier-{value}"))

    def fast(f: ProxyFilter, value: str | None) -> ProxyFilter:
        assert value is None
        return dataclasses.replace(f, datacenter=True)

    parser = UsernameLabelParser(custom={"tier": tier, "tag": None}, custom_flags={"fast": fast})
    user, f = parser.parse("john-Tier-gold-fast-tag-Blue-country-us")
    assert user == "john"
    assert f.pool == ("tier-gold",)
    assert f.datacenter is True
    assert f.country == ("us",)
    assert f.extra == (("tag", "Blue"),)
    with pytest.raises(ValueError, match=r"'tier'.*bronze"):
        parser.parse("john-tier-bronze")
    lossy = UsernameLabelParser(strict=False, custom={"tier": tier})
    assert lossy.parse("john-tier-bronze-country-us")[1] == ProxyFilter(country=("us",))
    # a custom parser overrides a built-in key
    parser.register("country", lambda f, v: dataclasses.replace(f, continent=("eu",)))
    assert parser.parse("john-country-be")[1].continent == ("eu",)
    with pytest.raises(ValueError, match="invalid label key"):
        parser.register("a-b")
    with pytest.raises(ValueError, match="invalid label key"):
        parser.register("!x")


def test_separator_is_configurable() -> None:
    parser = UsernameLabelParser(separator="_")
    assert parser.parse("john-doe_country_us") == ("john-doe", ProxyFilter(country=("us",)))
    assert format_username("john-doe", ProxyFilter(country=("us",)), separator="_") == (
        "john-doe_country_us"
    )
    with pytest.raises(ValueError, match="separator"):
        UsernameLabelParser(separator="")


# -- property tests ---------------------------------------------------------------------------

_value = st.text(string.ascii_lowercase + string.digits + "._*", min_size=1, max_size=8)
_values = st.lists(_value, max_size=3, unique=True).map(tuple)
_flag = st.sampled_from([None, True, False])
_user = st.text(string.ascii_letters + string.digits + "._@", min_size=1, max_size=12)


@st.composite
def filters(draw: st.DrawFn) -> ProxyFilter:
    asn = tuple(draw(st.lists(st.integers(0, 2**32).map(str), max_size=2, unique=True)))
    return ProxyFilter(
        id=draw(_values),
        pool=draw(_values),
        continent=draw(_values),
        country=draw(_values),
        state=draw(_values),
        city=draw(_values),
        carrier=draw(_values),
        asn=asn,
        datacenter=draw(_flag),
        residential=draw(_flag),
        mobile=draw(_flag),
        session=draw(
            st.none() | st.text(string.ascii_letters + string.digits, min_size=1, max_size=10)
        ),
        new_connection=draw(st.booleans()),
    )


@given(_user, filters())
@settings(max_examples=300)
def test_format_then_parse_round_trips(user: str, f: ProxyFilter) -> None:
    name = format_username(user, f)
    assert STRICT.parse(name) == (user, f)
    assert LOSSY.parse(name) == (user, f)


@given(_user, filters())
def test_keys_and_values_case_does_not_matter(user: str, f: ProxyFilter) -> None:
    plain = dataclasses.replace(f, session=None, new_connection=False)
    labels = format_username(user, plain)[len(user) :].upper()
    name = user + labels
    if f.session is not None:
        name += f"-SESSION-{f.session}"
    if f.new_connection:
        name += "-NewConn"
    assert STRICT.parse(name) == (user, f)


@given(st.text(max_size=80))
@settings(max_examples=500)
def test_arbitrary_usernames_never_crash(name: str) -> None:
    for parser in (STRICT, LOSSY):
        try:
            user, f = parser.parse(name)
        except ValueError:
            continue
        assert user
        assert user == name.split("-")[0]
        for field in ("country", "city", "pool", "asn"):
            for v in getattr(f, field):
                assert v == v.lower()
                assert v


@given(
    st.lists(
        st.sampled_from(["country-us", "foo", "mobile", "x-y", "", "!mobile", "session"]),
        max_size=8,
    )
)
def test_lossy_accepts_anything_strict_accepts(parts: list[str]) -> None:
    name = "-".join(["u", *parts])
    try:
        expected = STRICT.parse(name)
    except ValueError:
        LOSSY.parse(name)  # never raises for these parts
        return
    assert LOSSY.parse(name) == expected


@pytest.mark.anyio
async def test_authenticator_uses_the_label_parser() -> None:
    auth = ProxyAuthenticator(StaticCredentials({"john": "pw"}), username_parser=STRICT)
    peer = SocketAddress.parse("127.0.0.1:4000")
    user = await auth.authenticate("john-country-us-session-s1", "pw", peer=peer)
    assert user is not None
    assert user.name == "john"
    assert user.username == "john-country-us-session-s1"
    assert user.filter == ProxyFilter(country=("us",), session="s1")
    ctx = Context()
    ctx.insert(user)
    assert ctx.get(ProxyUser) is user
    # an unknown label refuses the credentials even with the right password
    assert await auth.authenticate("john-bogus-1", "pw", peer=peer) is None
    # the password is checked for the user without labels
    assert await auth.authenticate("john-country-us", "nope", peer=peer) is None
