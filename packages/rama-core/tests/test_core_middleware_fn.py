"""middleware_fn: a one-off middleware is one async function."""

from __future__ import annotations

import anyio
import pytest

from rama_core import Context, MiddlewareFn, Service, Stack, middleware_fn, service_fn
from rama_core.layers import ConcurrencyLimitLayer, TimeoutLayer


@service_fn
async def echo(ctx: Context, req: str) -> str:
    return f"echo:{req}"


@middleware_fn
async def shout(ctx: Context, req: str, inner: Service[str, str]) -> str:
    return (await inner.serve(ctx, req.upper())) + "!"


@pytest.mark.anyio
async def test_middleware_fn_wraps_the_inner_service() -> None:
    assert isinstance(shout, MiddlewareFn)
    svc = shout.layer(echo)
    assert await svc.serve(Context(), "hi") == "echo:HI!"
    assert "shout" in repr(shout)
    assert "shout" in repr(svc)


@pytest.mark.anyio
async def test_middleware_fn_can_answer_without_the_inner_service() -> None:
    calls: list[str] = []

    @service_fn
    async def counted(ctx: Context, req: str) -> str:
        calls.append(req)
        return req

    @middleware_fn
    async def deny_admin(ctx: Context, req: str, inner: Service[str, str]) -> str:
        if req.startswith("/admin"):
            return "403"
        return await inner.serve(ctx, req)

    svc = deny_admin.layer(counted)
    assert await svc.serve(Context(), "/admin/x") == "403"
    assert await svc.serve(Context(), "/home") == "/home"
    assert calls == ["/home"]


@pytest.mark.anyio
async def test_middleware_fn_sees_errors_and_context() -> None:
    class Seen:
        pass

    @service_fn
    async def failing(ctx: Context, req: str) -> str:
        assert ctx.get(Seen) is not None
        raise ValueError(req)

    @middleware_fn
    async def recover(ctx: Context, req: str, inner: Service[str, str]) -> str:
        ctx.insert(Seen())
        try:
            return await inner.serve(ctx, req)
        except ValueError as exc:
            return f"recovered {exc}"

    assert await recover.layer(failing).serve(Context(), "boom") == "recovered boom"


@pytest.mark.anyio
async def test_middleware_fn_in_a_stack_with_generic_layers() -> None:
    order: list[str] = []

    def tracer(name: str) -> MiddlewareFn[str, str]:
        @middleware_fn
        async def mw(ctx: Context, req: str, inner: Service[str, str]) -> str:
            order.append(f">{name}")
            try:
                return await inner.serve(ctx, req)
            finally:
                order.append(f"<{name}")

        return mw

    @service_fn
    async def slow(ctx: Context, req: str) -> str:
        await anyio.sleep(10)
        return req

    svc = Stack(tracer("a"), TimeoutLayer(0.05), ConcurrencyLimitLayer(2), tracer("b")).layer(slow)
    with pytest.raises(TimeoutError):
        await svc.serve(Context(), "x")
    assert order == [">a", ">b", "<b", "<a"]
