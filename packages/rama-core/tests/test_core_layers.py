from __future__ import annotations

import logging

import anyio
import pytest

from rama_core import (
    Context,
    Overloaded,
    Service,
    ServiceTimeout,
    Stack,
    matcher_fn,
    service_fn,
)
from rama_core.layers import (
    AddExtensionLayer,
    ConcurrencyLimitLayer,
    ConsumeErrorLayer,
    Either,
    HijackLayer,
    LimitPolicy,
    LogErrorLayer,
    MapErrorLayer,
    MapRequestLayer,
    MapResponseLayer,
    TimeoutLayer,
)


@service_fn
async def echo(ctx: Context, req: str) -> str:
    return req


def sleeper(seconds: float) -> Service[str, str]:
    @service_fn
    async def svc(ctx: Context, req: str) -> str:
        await anyio.sleep(seconds)
        return "slept"

    return svc


@service_fn
async def boom(ctx: Context, req: str) -> str:
    raise ValueError(f"bad {req}")


# -- timeout -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_timeout_passes_fast_calls() -> None:
    assert await TimeoutLayer(1.0).layer(echo).serve(Context(), "ok") == "ok"


@pytest.mark.anyio
async def test_timeout_raises_typed_error() -> None:
    svc = TimeoutLayer(0.05).layer(sleeper(5))
    with anyio.fail_after(2):
        with pytest.raises(ServiceTimeout) as err:
            await svc.serve(Context(), "x")
    assert isinstance(err.value, TimeoutError)
    assert err.value.seconds == 0.05


@pytest.mark.anyio
async def test_timeout_fallback() -> None:
    async def fallback(ctx: Context, req: str) -> str:
        return f"fallback {req}"

    svc = TimeoutLayer(0.05, fallback).layer(sleeper(5))
    assert await svc.serve(Context(), "x") == "fallback x"


def test_timeout_rejects_nonpositive() -> None:
    with pytest.raises(ValueError, match="positive"):
        TimeoutLayer(0)


# -- concurrency limit -------------------------------------------------------------


def gated() -> tuple[Service[str, str], list[int], anyio.Event]:
    active: list[int] = [0, 0]  # current, peak
    release = anyio.Event()

    @service_fn
    async def svc(ctx: Context, req: str) -> str:
        active[0] += 1
        active[1] = max(active[1], active[0])
        try:
            await release.wait()
        finally:
            active[0] -= 1
        return req

    return svc, active, release


@pytest.mark.anyio
async def test_concurrency_limit_wait_policy_caps_parallelism() -> None:
    inner, active, release = gated()
    svc = ConcurrencyLimitLayer(2).layer(inner)
    done: list[str] = []

    async def call(i: int) -> None:
        done.append(await svc.serve(Context(), str(i)))

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(call, i)
        await anyio.sleep(0.05)
        assert active[0] == 2
        assert svc.in_flight == 2
        release.set()
    assert sorted(done) == [str(i) for i in range(6)]
    assert active[1] == 2
    assert svc.in_flight == 0


@pytest.mark.anyio
async def test_concurrency_limit_reject_policy() -> None:
    inner, active, release = gated()
    svc = ConcurrencyLimitLayer(1, LimitPolicy.REJECT).layer(inner)
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc.serve, Context(), "first")
        await anyio.sleep(0.02)
        with pytest.raises(Overloaded, match="limit of 1"):
            await svc.serve(Context(), "second")
        assert active[0] == 1  # the rejected call never reached the inner service
        release.set()
    # the slot is free again
    assert await svc.serve(Context(), "third") == "third"


@pytest.mark.anyio
async def test_concurrency_limit_wait_timeout_only_bounds_the_wait() -> None:
    inner, active, release = gated()
    svc = ConcurrencyLimitLayer(1, wait_timeout=0.05).layer(inner)
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc.serve, Context(), "holder")
        await anyio.sleep(0.02)
        with pytest.raises(Overloaded, match="within"):
            await svc.serve(Context(), "waiter")
        # the holder keeps running past wait_timeout: the timeout bounds waiting only
        await anyio.sleep(0.1)
        assert active[0] == 1
        release.set()


@pytest.mark.anyio
async def test_concurrency_limit_releases_on_error() -> None:
    svc = ConcurrencyLimitLayer(1, LimitPolicy.REJECT).layer(boom)
    for _ in range(3):
        with pytest.raises(ValueError, match="bad"):
            await svc.serve(Context(), "x")
    assert svc.in_flight == 0


# -- map -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_map_request_and_response_sync_and_async() -> None:
    async def async_upper(ctx: Context, req: str) -> str:
        return req.upper()

    svc = Stack(
        MapResponseLayer(lambda ctx, resp: f"<{resp}>"),
        MapRequestLayer(async_upper),
        MapRequestLayer(lambda ctx, req: req + "!"),
    ).layer(echo)
    assert await svc.serve(Context(), "hi") == "<HI!>"


class Wrapped(Exception):
    pass


@pytest.mark.anyio
async def test_map_error_chains_cause() -> None:
    svc = MapErrorLayer(lambda ctx, exc: Wrapped(f"wrapped: {exc}")).layer(boom)
    with pytest.raises(Wrapped) as err:
        await svc.serve(Context(), "x")
    assert isinstance(err.value.__cause__, ValueError)


@pytest.mark.anyio
async def test_map_error_identity_reraises_original() -> None:
    svc = MapErrorLayer(lambda ctx, exc: exc).layer(boom)
    with pytest.raises(ValueError, match="bad x") as err:
        await svc.serve(Context(), "x")
    assert err.value.__cause__ is None


# -- extension, consume, log -------------------------------------------------------


class Marker:
    def __init__(self, value: str) -> None:
        self.value = value


@pytest.mark.anyio
async def test_add_extension_visible_to_inner() -> None:
    @service_fn
    async def read(ctx: Context, req: str) -> str:
        return ctx.require(Marker).value

    svc = AddExtensionLayer(Marker("m")).layer(read)
    assert await svc.serve(Context(), "") == "m"


@pytest.mark.anyio
async def test_consume_error_returns_fallback_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    svc = ConsumeErrorLayer(lambda ctx, exc: f"fallback for {type(exc).__name__}", logging.WARNING)
    with caplog.at_level(logging.WARNING, logger="rama.core.error"):
        assert await svc.layer(boom).serve(Context(), "x") == "fallback for ValueError"
    assert "bad x" in caplog.text


@pytest.mark.anyio
async def test_consume_error_never_swallows_cancellation() -> None:
    svc = ConsumeErrorLayer(lambda ctx, exc: "fallback").layer(sleeper(10))
    with anyio.move_on_after(0.05) as scope:
        await svc.serve(Context(), "x")
    assert scope.cancelled_caught


@pytest.mark.anyio
async def test_log_error_logs_and_reraises(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="rama.core.error"):
        with pytest.raises(ValueError, match="bad y"):
            await LogErrorLayer().layer(boom).serve(Context(), "y")
    assert "service error: bad y" in caplog.text


# -- hijack / either ---------------------------------------------------------------


@pytest.mark.anyio
async def test_hijack_routes_matching_requests() -> None:
    @service_fn
    async def admin(ctx: Context, req: str) -> str:
        return "admin"

    is_admin = matcher_fn(lambda ctx, req: req.startswith("/admin"))
    svc = HijackLayer(is_admin, admin).layer(echo)
    assert await svc.serve(Context(), "/admin/x") == "admin"
    assert await svc.serve(Context(), "/home") == "/home"
    inverted = HijackLayer(~is_admin, admin).layer(echo)
    assert await inverted.serve(Context(), "/home") == "admin"


@pytest.mark.anyio
async def test_either_dispatch() -> None:
    @service_fn
    async def left(ctx: Context, req: str) -> str:
        return "L"

    svc = Either(matcher_fn(lambda ctx, req: req == "l"), left, echo)
    assert await svc.serve(Context(), "l") == "L"
    assert await svc.serve(Context(), "r") == "r"


# -- a full stack ------------------------------------------------------------------


@pytest.mark.anyio
async def test_stack_of_generic_layers() -> None:
    calls: list[str] = []

    @service_fn
    async def handler(ctx: Context, req: str) -> str:
        calls.append(req)
        if req == "fail":
            raise RuntimeError("handler failed")
        if req == "slow":
            await anyio.sleep(5)
        return f"{ctx.require(Marker).value}:{req}"

    svc = Stack(
        ConsumeErrorLayer(lambda ctx, exc: f"error: {exc}"),
        TimeoutLayer(0.1),
        ConcurrencyLimitLayer(4),
        AddExtensionLayer(Marker("m")),
        MapRequestLayer(lambda ctx, req: req.strip()),
    ).layer(handler)
    assert await svc.serve(Context(), " ok ") == "m:ok"
    assert await svc.serve(Context(), "fail") == "error: handler failed"
    assert await svc.serve(Context(), "slow") == "error: service timed out after 0.1s"
    assert calls == ["ok", "fail", "slow"]
