"""The route tree: patterns, priorities, converters, conflicts, and a property check."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rama_http.web import PatternError, RouteTree


def test_static_param_wildcard_priorities() -> None:
    t: RouteTree[str] = RouteTree()
    t.insert("/users/me", "me")
    t.insert("/users/{id:int}", "by-id")
    t.insert("/users/{name}", "by-name")
    t.insert("/static/{*path}", "static")
    t.insert("/", "root")
    assert t.match("/users/me") == ("me", {})
    assert t.match("/users/42") == ("by-id", {"id": 42})
    assert t.match("/users/-3") == ("by-id", {"id": -3})
    assert t.match("/users/bob") == ("by-name", {"name": "bob"})
    assert t.match("/static/css/site.css") == ("static", {"path": "css/site.css"})
    assert t.match("/static/") == ("static", {"path": ""})
    assert t.match("/static") is None
    assert t.match("/") == ("root", {})
    assert t.match("/users") is None
    assert t.match("/users/") is None  # empty segment: {name} needs text
    assert t.match("no-slash") is None


def test_backtracking_from_static_to_param() -> None:
    t: RouteTree[str] = RouteTree()
    t.insert("/a/b/c", "abc")
    t.insert("/a/{x}/d", "axd")
    assert t.match("/a/b/d") == ("axd", {"x": "b"})
    assert t.match("/a/b/c") == ("abc", {})


def test_percent_decoding_per_segment() -> None:
    t: RouteTree[str] = RouteTree()
    t.insert("/files/{name}", "f")
    t.insert("/caf\u00e9", "cafe")
    assert t.match("/files/a%2Fb") == ("f", {"name": "a/b"})
    assert t.match("/caf%C3%A9") == ("cafe", {})


def test_converters() -> None:
    t: RouteTree[str] = RouteTree()
    u = uuid.uuid4()
    t.insert("/u/{id:uuid}", "uuid")
    t.insert("/f/{x:float}", "float")
    assert t.match(f"/u/{u}") == ("uuid", {"id": u})
    assert t.match("/u/nope") is None
    assert t.match("/f/1.5") == ("float", {"x": 1.5})
    assert t.match("/f/nan") is None


@pytest.mark.parametrize(
    "pattern",
    ["users", "/a/{*rest}/b", "/a/{x:nope}", "/a/{x}/{x}", "/a/{bad-name}", "/a/b{x}", "/{*p:int}"],
)
def test_invalid_patterns(pattern: str) -> None:
    t: RouteTree[str] = RouteTree()
    with pytest.raises(PatternError):
        t.insert(pattern, "x")


def test_conflicts() -> None:
    t: RouteTree[str] = RouteTree()
    t.insert("/a/{x}", "1")
    with pytest.raises(PatternError):
        t.insert("/a/{y}", "2")
    with pytest.raises(PatternError):
        t.insert("/a/{x}", "3")
    t.insert("/w/{*p}", "w")
    with pytest.raises(PatternError):
        t.insert("/w/{*q}", "w2")


_seg = st.text(alphabet="abcdefghij", min_size=1, max_size=5)


@given(st.lists(st.lists(_seg, min_size=1, max_size=4), min_size=1, max_size=30, unique_by=tuple))
def test_every_static_route_matches_itself(paths: list[list[str]]) -> None:
    t: RouteTree[str] = RouteTree()
    for p in paths:
        t.insert("/" + "/".join(p), "/".join(p))
    for p in paths:
        assert t.match("/" + "/".join(p)) == ("/".join(p), {})


@given(st.text(max_size=40))
def test_match_never_raises(path: str) -> None:
    t: RouteTree[str] = RouteTree()
    t.insert("/a/{x:int}/{*rest}", "a")
    t.insert("/b/{y:uuid}", "b")
    t.insert("/c/{z:float}", "c")
    t.match("/" + path)
