"""A service stack with rama-core alone: layers, context, executor and graceful shutdown.

Run: python examples/core_service_stack.py [--requests N]

It builds a small "lookup" service, wraps it in generic layers (timeout,
concurrency limit, error consumption, request mapping), serves a burst of
requests as guarded background tasks, then shuts down gracefully and prints
what happened.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import anyio

from rama_core import Context, Service, Shutdown, Stack, matcher_fn, service_fn
from rama_core.layers import (
    AddExtensionLayer,
    ConcurrencyLimitLayer,
    ConsumeErrorLayer,
    HijackLayer,
    MapRequestLayer,
    TimeoutLayer,
)


@dataclass(frozen=True)
class Tenant:
    name: str


PRICES = {"apple": 3, "pear": 4}


@service_fn
async def lookup(ctx: Context, item: str) -> str:
    await anyio.sleep(0.01)  # pretend to query a backend
    if item == "slow":
        await anyio.sleep(10)
    return f"{ctx.require(Tenant).name}: {item} costs {PRICES[item]}"


@service_fn
async def health(ctx: Context, item: str) -> str:
    return "ok"


def build() -> Service[str, str]:
    svc: Service[str, str] = Stack(
        ConsumeErrorLayer(lambda ctx, exc: f"error: {type(exc).__name__} {exc}"),
        HijackLayer(matcher_fn(lambda ctx, item: item == "health"), health),
        TimeoutLayer(0.5),
        ConcurrencyLimitLayer(2),
        AddExtensionLayer(Tenant("shop")),
        MapRequestLayer(lambda ctx, item: item.strip().lower()),
    ).layer(lookup)
    return svc


async def main(requests: list[str]) -> None:
    svc = build()
    answers: dict[int, str] = {}

    async def call(i: int, item: str, ctx: Context) -> None:
        answers[i] = await svc.serve(ctx.fork(), item)

    async with Shutdown(grace=2, signals=None) as shutdown:
        ctx = shutdown.context()
        for i, item in enumerate(requests):
            ctx.executor.spawn(call, i, item, ctx, name=f"request-{i}")
    for i in sorted(answers):
        print(f"{requests[i]!r} -> {answers[i]}")
    assert shutdown.report is not None
    print(f"shutdown: reason={shutdown.report.reason} clean={shutdown.report.clean}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("items", nargs="*", default=[" Apple", "pear", "kiwi", "health", "slow"])
    anyio.run(main, parser.parse_args().items)
