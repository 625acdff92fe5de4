"""Typed conversion of untrusted input: strict JSON, lax text, fields named in errors."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, NotRequired, Required, TypedDict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rama_http.web import ValidationError, convert


class Kind(Enum):
    A = "a"
    ONE = 1


@dataclass
class Inner:
    n: int


@dataclass
class Outer:
    name: str
    inner: Inner
    items: list[Inner] = field(default_factory=list)
    kind: Kind = Kind.A
    maybe: int | None = None


class Partial(TypedDict, total=False):
    a: Required[int]
    b: str


class Mixed(TypedDict):
    x: int
    y: NotRequired[list[float]]


def errors(value: Any, tp: Any, *, lax: bool = False) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        convert(value, tp, lax=lax)
    return {e.field: e.message for e in info.value.errors}


def test_nested_dataclass() -> None:
    doc = {"name": "x", "inner": {"n": 1}, "items": [{"n": 2}], "kind": 1, "maybe": None}
    out = convert(doc, Outer)
    assert out == Outer("x", Inner(1), [Inner(2)], Kind.ONE, None)
    assert errors({"name": 1, "inner": {"n": "1"}, "items": [{}]}, Outer) == {
        "name": "must be a string",
        "inner.n": "must be an integer",
        "items[0].n": "field required",
    }


def test_typeddict_required_and_not_required() -> None:
    assert convert({"a": 1}, Partial) == {"a": 1}
    assert errors({"b": "x"}, Partial) == {"a": "field required"}
    assert convert({"x": 1}, Mixed) == {"x": 1}
    assert convert({"x": 1, "y": [1, 2.5]}, Mixed) == {"x": 1, "y": [1.0, 2.5]}
    assert errors({"y": []}, Mixed) == {"x": "field required"}


def test_strict_json_vs_lax_text() -> None:
    assert errors("3", int) == {"": "must be an integer"}
    assert convert("3", int, lax=True) == 3
    assert errors(True, int) == {"": "must be an integer"}
    assert convert("on", bool, lax=True) is True
    assert errors("maybe", bool, lax=True) == {"": "must be a boolean"}
    assert convert("", int | None, lax=True) is None
    assert convert(1, int | str) == 1
    assert convert("1", int | str) == "1"
    assert convert("b", Literal["a", "b"]) == "b"
    u = uuid.uuid4()
    assert convert(str(u), uuid.UUID) == u
    assert convert([1, "x"], tuple[int, str]) == (1, "x")
    assert errors([1], tuple[int, str]) == {"": "must have 2 items"}
    assert convert({"k": 1}, dict[str, int]) == {"k": 1}


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@given(_json)
def test_any_json_converts_or_raises_validation_error(doc: Any) -> None:
    for tp in (Outer, Partial, Mixed, list[int], dict[str, Inner], int | None, Kind):
        try:
            convert(doc, tp)
        except ValidationError as e:
            assert e.errors
