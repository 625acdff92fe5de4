"""rama-core's public API as users write it, checked by ``mypy --strict``.

This file is in mypy.ini's ``files=`` (so ``make lint`` checks it) and
test_core_typing.py runs mypy on it. It is never executed: each line states a
type with ``assert_type`` that mypy must infer without help.
"""

from __future__ import annotations

import logging
from typing import Any, assert_type

from rama_core import (
    Context,
    Identity,
    Layer,
    Middleware,
    MiddlewareFn,
    Service,
    ServiceFn,
    Stack,
    layer_fn,
    middleware_fn,
    service_fn,
)
from rama_core._matcher import Always
from rama_core.layers import (
    AddExtension,
    AddExtensionLayer,
    ConcurrencyLimit,
    ConcurrencyLimitLayer,
    ConsumeError,
    ConsumeErrorLayer,
    Hijack,
    HijackLayer,
    LimitPolicy,
    LogError,
    LogErrorLayer,
    MapError,
    MapErrorLayer,
    MapRequest,
    MapRequestLayer,
    MapResponse,
    MapResponseLayer,
    Timeout,
    TimeoutLayer,
)
from rama_core.telemetry import MetricsLayer, MetricsService, TracingLayer, TracingService


class Request:
    path = "/"


class Response:
    status = 200


@service_fn
async def handler(ctx: Context, req: Request) -> Response:
    return Response()


@service_fn
async def count(ctx: Context, req: str) -> int:
    return len(req)


assert_type(handler, ServiceFn[Request, Response])

# -- a layer keeps the wrapped service's own types ---------------------------------

assert_type(TimeoutLayer(1.0).layer(handler), Timeout[Request, Response])
assert_type(TimeoutLayer(1.0).layer(count), Timeout[str, int])
timeout = TimeoutLayer(1.0)  # one layer object, services of different types
assert_type(timeout.layer(handler), Timeout[Request, Response])
assert_type(timeout.layer(count), Timeout[str, int])
assert_type(ConcurrencyLimitLayer(10).layer(count), ConcurrencyLimit[str, int])
assert_type(
    ConcurrencyLimitLayer(10, LimitPolicy.REJECT).layer(handler),
    ConcurrencyLimit[Request, Response],
)
assert_type(AddExtensionLayer(Request()).layer(count), AddExtension[str, int, Request])
assert_type(LogErrorLayer(logging.WARNING).layer(count), LogError[str, int])
assert_type(MapErrorLayer(lambda ctx, exc: RuntimeError()).layer(count), MapError[str, int])
assert_type(ConsumeErrorLayer(lambda ctx, exc: -1).layer(count), ConsumeError[str, int])
assert_type(MetricsLayer("count").layer(count), MetricsService[str, int])
assert_type(TracingLayer("count").layer(count), TracingService[str, int])
assert_type(Identity().layer(count), ServiceFn[str, int])

# the result is a Service with the same types, usable where one is expected
wrapped: Service[str, int] = TimeoutLayer(1.0).layer(ConcurrencyLimitLayer(2).layer(count))
as_layer: Layer[Service[str, int], Service[str, int]] = TimeoutLayer(1.0)

# -- layers whose configuration fixes a type -----------------------------------------


def parse(ctx: Context, raw: bytes) -> str:
    return raw.decode()


async def parse_async(ctx: Context, raw: bytes) -> str:
    return raw.decode()


def render(ctx: Context, n: int) -> str:
    return str(n)


assert_type(MapRequestLayer(parse).layer(count), MapRequest[bytes, str, int])
assert_type(MapRequestLayer(parse_async).layer(count), MapRequest[bytes, str, int])
assert_type(MapResponseLayer(render).layer(count), MapResponse[str, int, str])
assert_type(HijackLayer(Always(), count).layer(count), Hijack[str, int])
# a fallback of another type widens the response type
assert_type(ConsumeErrorLayer(lambda ctx, exc: "error").layer(count), ConsumeError[str, int | str])

# -- stacks -----------------------------------------------------------------------

# layers that keep the types: the stack keeps them too
assert_type(
    Stack(TimeoutLayer(1.0), ConcurrencyLimitLayer(4)).layer(handler), Service[Request, Response]
)
assert_type(Stack().layer(count), Service[str, int])
limit = 0
optional = Stack(TimeoutLayer(1.0) if limit else None, LogErrorLayer()).layer(count)
assert_type(optional, Service[str, int])
assert_type(Stack(TimeoutLayer(1.0)).push(ConcurrencyLimitLayer(1)).layer(count), Service[str, int])
# a layer that changes the types makes the stack untyped: apply it directly
assert_type(Stack(TimeoutLayer(1.0), MapRequestLayer(parse)).layer(count), Any)

# -- one-off middleware and layer_fn --------------------------------------------


@middleware_fn
async def auth(ctx: Context, req: Request, inner: Service[Request, Response]) -> Response:
    if req.path.startswith("/admin"):
        return Response()
    return await inner.serve(ctx, req)


assert_type(auth, MiddlewareFn[Request, Response])
assert_type(auth.layer(handler), Middleware[Request, Response])
assert_type(auth.layer(TimeoutLayer(1.0).layer(handler)), Middleware[Request, Response])


def twice(inner: Service[str, int]) -> Service[str, int]:
    return inner


assert_type(layer_fn(twice).layer(count), Service[str, int])


# a middleware for one request type among layers that keep any type: the
# stack takes that type (and mypy rejects a service of another type; the
# ignore below fails the check as "unused" if it ever stopped doing so)
mixed = Stack(TimeoutLayer(1.0), auth, LogErrorLayer())
assert_type(mixed.layer(handler), Service[Request, Response])
mixed.layer(count)  # type: ignore[arg-type]
auth.layer(count)  # type: ignore[arg-type]
