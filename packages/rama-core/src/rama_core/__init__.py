"""rama-core: services, layers, context, errors and graceful shutdown.

The service model every other rama package builds on::

    from rama_core import Context, Stack, service_fn
    from rama_core.layers import TimeoutLayer

    @service_fn
    async def hello(ctx: Context, name: str) -> str:
        return f"hello {name}"

    svc = Stack(TimeoutLayer(1.0)).layer(hello)
    await svc.serve(Context(), "world")
"""

from ._context import Context
from ._errors import (
    MissingExtension,
    Overloaded,
    RamaError,
    ServiceTimeout,
    error_chain,
    error_context,
    format_error_chain,
)
from ._executor import Executor, NoTaskGroupError
from ._layer import (
    Identity,
    Layer,
    LayerFn,
    Middleware,
    MiddlewareFn,
    Stack,
    layer_fn,
    middleware_fn,
)
from ._matcher import AllOf, Always, AnyOf, FnMatcher, Matcher, Never, Not, matcher_fn
from ._service import Service, ServiceFn, service_fn
from ._shutdown import DEFAULT_SIGNALS, Shutdown, ShutdownGuard, ShutdownReport

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_SIGNALS",
    "AllOf",
    "Always",
    "AnyOf",
    "Context",
    "Executor",
    "FnMatcher",
    "Identity",
    "Layer",
    "LayerFn",
    "Middleware",
    "MiddlewareFn",
    "Matcher",
    "MissingExtension",
    "Never",
    "NoTaskGroupError",
    "Not",
    "Overloaded",
    "RamaError",
    "Service",
    "ServiceFn",
    "ServiceTimeout",
    "Shutdown",
    "ShutdownGuard",
    "ShutdownReport",
    "Stack",
    "error_chain",
    "error_context",
    "format_error_chain",
    "layer_fn",
    "matcher_fn",
    "middleware_fn",
    "service_fn",
]
