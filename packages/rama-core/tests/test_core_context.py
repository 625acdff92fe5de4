from __future__ import annotations

from dataclasses import dataclass

import pytest

from rama_core import Context, MissingExtension


@dataclass
class Peer:
    addr: str


@dataclass
class RequestId:
    value: int


class Base:
    pass


class Derived(Base):
    pass


def test_insert_get_by_type() -> None:
    ctx = Context()
    assert ctx.get(Peer) is None
    assert ctx.insert(Peer("1.2.3.4")) is None
    assert ctx.get(Peer) == Peer("1.2.3.4")
    assert ctx.contains(Peer)
    assert Peer in ctx
    assert not ctx.contains(RequestId)


def test_insert_returns_previous_and_replaces() -> None:
    ctx = Context()
    ctx.insert(RequestId(1))
    assert ctx.insert(RequestId(2)) == RequestId(1)
    assert ctx.require(RequestId) == RequestId(2)


def test_default_and_require() -> None:
    ctx = Context()
    assert ctx.get(RequestId, RequestId(0)) == RequestId(0)
    with pytest.raises(MissingExtension) as err:
        ctx.require(RequestId)
    assert "RequestId" in str(err.value)
    assert isinstance(err.value, LookupError)


def test_keys_are_exact_types_unless_key_given() -> None:
    ctx = Context()
    ctx.insert(Derived())
    assert ctx.get(Base) is None
    ctx.insert(Derived(), key=Base)
    assert isinstance(ctx.get(Base), Derived)


def test_none_values_are_stored() -> None:
    ctx = Context()
    ctx.insert(None, key=Peer)  # type: ignore[arg-type]
    assert ctx.contains(Peer)
    assert ctx.get(Peer, "default") is None


def test_get_or_insert_with_creates_once() -> None:
    ctx = Context()
    calls = []

    def make() -> RequestId:
        calls.append(1)
        return RequestId(7)

    assert ctx.get_or_insert_with(RequestId, make) == RequestId(7)
    assert ctx.get_or_insert_with(RequestId, make) == RequestId(7)
    assert len(calls) == 1


def test_fork_reads_through_parent_without_copying() -> None:
    parent = Context(state={"app": 1})
    parent.insert(Peer("a"))
    child = parent.fork()
    assert child.get(Peer) == Peer("a")
    assert child.parent is parent
    assert child.state is parent.state
    assert child.executor is parent.executor
    # later parent inserts are visible: the child links, it does not copy
    parent.insert(RequestId(3))
    assert child.get(RequestId) == RequestId(3)


def test_fork_isolation() -> None:
    parent = Context()
    parent.insert(Peer("a"))
    child = parent.fork()
    child.insert(Peer("b"))
    child.insert(RequestId(1))
    assert parent.get(Peer) == Peer("a")
    assert parent.get(RequestId) is None
    assert child.get(Peer) == Peer("b")
    sibling = parent.fork()
    assert sibling.get(RequestId) is None


def test_remove_never_touches_parent() -> None:
    parent = Context()
    parent.insert(Peer("a"))
    child = parent.fork()
    child.insert(Peer("b"))
    assert child.remove(Peer) == Peer("b")
    assert child.get(Peer) == Peer("a")  # parent's value shows again
    assert child.remove(Peer) is None
    assert parent.get(Peer) == Peer("a")


def test_deep_fork_chain_and_snapshot() -> None:
    ctx = Context()
    ctx.insert(Peer("root"))
    for i in range(50):
        ctx = ctx.fork()
        ctx.insert(RequestId(i))
    assert ctx.get(Peer) == Peer("root")
    snap = ctx.extensions()
    assert snap == {Peer: Peer("root"), RequestId: RequestId(49)}
    assert "Peer" in repr(ctx)
