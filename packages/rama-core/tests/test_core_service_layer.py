from __future__ import annotations

import pytest

import rama_core
from rama_core import (
    Context,
    Identity,
    Service,
    Stack,
    layer_fn,
    service_fn,
)


@service_fn
async def echo(ctx: Context, req: str) -> str:
    return req


class Tag:
    """A layer that records its name around the inner call."""

    def __init__(self, name: str) -> None:
        self.name = name

    def layer(self, inner: Service[str, str]) -> Service[str, str]:
        name = self.name

        @service_fn
        async def svc(ctx: Context, req: str) -> str:
            out = await inner.serve(ctx, f"{req}>{name}")
            return f"{out}<{name}"

        return svc


@pytest.mark.anyio
async def test_service_fn_is_a_service() -> None:
    assert isinstance(echo, Service)
    assert await echo.serve(Context(), "x") == "x"
    assert "echo" in repr(echo)


@pytest.mark.anyio
async def test_stack_is_outermost_first() -> None:
    svc = Stack(Tag("a"), Tag("b"), Tag("c")).layer(echo)
    assert await svc.serve(Context(), "r") == "r>a>b>c<c<b<a"


@pytest.mark.anyio
async def test_stack_skips_none_and_push_adds_inside() -> None:
    st = Stack(Tag("a"), None, Tag("b"))
    assert len(st) == 2
    st2 = st.push(Tag("c"), None)
    assert len(st) == 2
    assert await st2.layer(echo).serve(Context(), "") == ">a>b>c<c<b<a"
    assert "Tag" in repr(st2)
    assert [type(x) for x in st2] == [Tag, Tag, Tag]


@pytest.mark.anyio
async def test_empty_stack_and_identity() -> None:
    assert Stack().layer(echo) is echo
    assert Identity().layer(echo) is echo


@pytest.mark.anyio
async def test_layer_fn_and_optional_layers_as_none() -> None:
    upper = layer_fn(lambda inner: Tag("u").layer(inner))
    assert await upper.layer(echo).serve(Context(), "") == ">u<u"
    for enabled, expected in ((False, ">a<a"), (True, ">a>o<o<a")):
        svc = Stack(Tag("a"), Tag("o") if enabled else None).layer(echo)
        assert await svc.serve(Context(), "") == expected


def test_rust_isms_are_gone() -> None:
    # One way to make a layer optional (a None entry in a Stack), no aliases
    # of BaseException / Service, no lowercase duplicate of Stack.
    for name in ("BoxError", "BoxService", "optional", "when", "stack"):
        assert not hasattr(rama_core, name), name
        assert name not in rama_core.__all__


@pytest.mark.anyio
async def test_one_service_serves_concurrent_tasks() -> None:
    import anyio

    @service_fn
    async def slow(ctx: Context, req: int) -> int:
        await anyio.sleep(0.01)
        return req * 2

    results: dict[int, int] = {}

    async def call(i: int) -> None:
        results[i] = await slow.serve(Context(), i)

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(call, i)
    assert results == {i: i * 2 for i in range(20)}
