"""Router dispatch, in process: rama's Router vs Starlette's Router, 10 and 1,000 routes.

Usage: python tools/bench/bench_router.py [ROUNDS] [DISPATCHES]   (defaults: 3, 20000)

Both routers get the same N patterns (``/api/r{i}/items/{id}``, typed ``int`` for
rama, ``{id:int}`` for Starlette) whose targets answer with a prebuilt response
without touching the request (a rama Service, a raw ASGI app for Starlette: no
handler wrapping on either side), and the same prebuilt requests (rama
``Request``s, ASGI scopes) spread evenly over the routes. A round awaits
DISPATCHES dispatches in a plain loop on one event loop (no sockets, no tasks)
per router and size; rounds are interleaved; prints the median microseconds per
dispatch and the Starlette/rama ratio (goal: >= 3 at 1,000 routes). Bounded:
ROUNDS x 4 loops of DISPATCHES awaits.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.routing import Route
from starlette.routing import Router as StarletteRouter

from rama_core import Context
from rama_http import Request, Response
from rama_http.web import Router

__all__ = ["main"]

SIZES = (10, 1000)
_RESPONSE = Response(200, body=b"ok")


class _Ok:
    """A rama Service answering a prebuilt response."""

    async def serve(self, ctx: Context, req: Request) -> Response:
        return _RESPONSE


async def _asgi_ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


class _AsgiOk:
    """A raw ASGI app (a class instance: Starlette mounts it without a wrapper)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await _asgi_ok(scope, receive, send)


def _paths(n: int, count: int) -> list[str]:
    return [f"/api/r{(i * 7919) % n}/items/{i % 1000}" for i in range(count)]


def build_rama(n: int) -> Router:
    """rama Router with n routes."""
    router = Router()
    ok = _Ok()
    for i in range(n):
        router.route(f"/api/r{i}/items/{{id:int}}", ok, methods=["GET"])
    return router


def build_starlette(n: int) -> StarletteRouter:
    """Starlette Router with the same n routes."""
    ok = _AsgiOk()
    return StarletteRouter(
        routes=[Route(f"/api/r{i}/items/{{id:int}}", ok, methods=["GET"]) for i in range(n)]
    )


async def _time_loop(fn: Callable[[int], Awaitable[Any]], count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        await fn(i)
    return (time.perf_counter() - start) / count * 1e6


async def _round(count: int) -> dict[tuple[str, int], float]:
    out: dict[tuple[str, int], float] = {}
    for n in SIZES:
        paths = _paths(n, 512)
        rama = build_rama(n)
        reqs = [Request("GET", p, headers=[("Host", "bench")]) for p in paths]

        async def rama_one(i: int, rama: Router = rama, reqs: list[Request] = reqs) -> Response:
            resp = await rama.serve(Context(), reqs[i & 511])
            if resp.status != 200:
                raise AssertionError(resp.status)
            return resp

        star = build_starlette(n)
        scopes = [
            {
                "type": "http",
                "method": "GET",
                "path": p,
                "root_path": "",
                "query_string": b"",
                "headers": [(b"host", b"bench")],
            }
            for p in paths
        ]
        status: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any], status: list[int] = status) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        async def star_one(
            i: int, star: StarletteRouter = star, scopes: list[dict[str, Any]] = scopes
        ) -> None:
            await star(dict(scopes[i & 511]), receive, send)

        await rama_one(0)
        await star_one(0)
        if status != [200]:
            raise AssertionError(f"starlette answered {status}")
        out[("rama", n)] = await _time_loop(rama_one, count)
        out[("starlette", n)] = await _time_loop(star_one, count)
    return out


def main(argv: list[str]) -> int:
    """Run the rounds and print the table."""
    rounds = int(argv[1]) if len(argv) > 1 else 3
    count = int(argv[2]) if len(argv) > 2 else 20000
    results: dict[tuple[str, int], list[float]] = {}
    for _ in range(rounds):
        for key, us in asyncio.run(_round(count)).items():
            results.setdefault(key, []).append(us)
    print(
        f"router dispatch, in process, {count} dispatches x {rounds} round(s); median us/dispatch"
    )
    print(f"  {'routes':>7}  {'rama':>8}  {'starlette':>10}  starlette/rama")
    for n in SIZES:
        r = statistics.median(results[("rama", n)])
        s = statistics.median(results[("starlette", n)])
        print(f"  {n:>7}  {r:8.2f}  {s:10.2f}  {s / r:.2f}")
    print("(goal: >= 3 at 1,000 routes; dispatch = route lookup + params + calling the target)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
