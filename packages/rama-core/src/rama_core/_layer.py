"""Layers wrap services; stacks compose layers outermost-first.

Typing: a layer's ``layer`` method is generic in the service it wraps, so
``TimeoutLayer(1.0).layer(svc)`` keeps ``svc``'s request and response types.
A :class:`Stack` of layers that all keep the types (timeouts, limits,
extensions, logging, :func:`middleware_fn` layers...) is typed the same way:
``Stack(a, b).layer(svc)`` is a ``Service[In, Out]`` for a ``Service[In, Out]``.
When some layers only work for one type (a ``middleware_fn`` for
``Service[Request, Response]``), the stack takes that type and mypy rejects
services of another. A stack holding a layer that changes the types
(``MapRequestLayer`` ...) returns ``Any``: apply such a layer directly where
the types matter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar, final, overload

from ._context import Context
from ._service import Service

__all__ = [
    "Identity",
    "Layer",
    "LayerFn",
    "Middleware",
    "MiddlewareFn",
    "Stack",
    "layer_fn",
    "middleware_fn",
]

S_contra = TypeVar("S_contra", contravariant=True)
T_co = TypeVar("T_co", covariant=True)
S = TypeVar("S")
T = TypeVar("T")
In = TypeVar("In")
Out = TypeVar("Out")
K_co = TypeVar("K_co", covariant=True)


class Layer(Protocol[S_contra, T_co]):
    """Wraps an inner service into a new service."""

    def layer(self, inner: S_contra, /) -> T_co:
        """Return a service that wraps ``inner``."""
        ...


class _TypePreservingLayer(Protocol):
    """A layer that turns any ``Service[In, Out]`` into a ``Service[In, Out]``."""

    def layer(self, inner: Service[In, Out], /) -> Service[In, Out]: ...


@final
class _SameTypes:
    """Marks a :class:`Stack` whose layers all keep the service's types."""


@final
class _FixedTypes(Generic[In, Out]):
    """Marks a :class:`Stack` whose layers all map ``Service[In, Out]`` to itself."""


@final
class _AnyTypes:
    """Marks a :class:`Stack` with at least one layer that may change the types."""


class LayerFn(Generic[S, T]):
    """A Layer made from a plain function ``inner -> service``."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[S], T]) -> None:
        self.fn = fn

    def layer(self, inner: S) -> T:
        """Apply the wrapped function."""
        return self.fn(inner)


def layer_fn(fn: Callable[[S], T]) -> LayerFn[S, T]:
    """Turn ``fn(inner) -> service`` into a Layer."""
    return LayerFn(fn)


class Identity:
    """The layer that returns its inner service unchanged."""

    __slots__ = ()

    def layer(self, inner: S) -> S:
        """Return ``inner``."""
        return inner


class Stack(Generic[K_co]):
    """An ordered list of layers, outermost first.

    ``Stack(a, b, c).layer(svc)`` is ``a.layer(b.layer(c.layer(svc)))``: a
    request passes a, then b, then c, then reaches ``svc``.

    ``None`` entries are skipped: this is the one way to make a layer
    optional, inline where the stack is built::

        Stack(
            TimeoutLayer(cfg.timeout) if cfg.timeout else None,
            ConcurrencyLimitLayer(cfg.limit),
        )

    The type parameter is a marker mypy infers from the layers (see the
    module docstring); it is not meant to be written by hand.
    """

    __slots__ = ("layers",)

    @overload
    def __init__(self: Stack[_SameTypes], *layers: _TypePreservingLayer | None) -> None: ...
    @overload
    def __init__(
        self: Stack[_FixedTypes[In, Out]],
        *layers: Layer[Service[In, Out], Service[In, Out]] | None,
    ) -> None: ...
    @overload
    def __init__(self: Stack[_AnyTypes], *layers: Layer[Any, Any] | None) -> None: ...
    def __init__(self, *layers: Layer[Any, Any] | None) -> None:
        self.layers: tuple[Layer[Any, Any], ...] = tuple(
            layer for layer in layers if layer is not None
        )

    @overload
    def push(  # type: ignore[overload-overlap]  # the first match wins, as intended
        self: Stack[_SameTypes], *layers: _TypePreservingLayer | None
    ) -> Stack[_SameTypes]: ...
    @overload
    def push(self, *layers: Layer[Any, Any] | None) -> Stack[_AnyTypes]: ...
    def push(self, *layers: Layer[Any, Any] | None) -> Stack[Any]:
        """A new stack with ``layers`` added on the inside."""
        return Stack(*self.layers, *layers)

    @overload
    def layer(self: Stack[_SameTypes], inner: Service[In, Out], /) -> Service[In, Out]: ...
    @overload
    def layer(
        self: Stack[_FixedTypes[In, Out]], inner: Service[In, Out], /
    ) -> Service[In, Out]: ...
    @overload
    def layer(self: Stack[_AnyTypes], inner: Any, /) -> Any: ...
    def layer(self, inner: Any, /) -> Any:
        """Wrap ``inner`` with every layer, innermost applied first."""
        svc = inner
        for lyr in reversed(self.layers):
            svc = lyr.layer(svc)
        return svc

    def __iter__(self) -> Iterator[Layer[Any, Any]]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        return f"Stack({', '.join(type(lyr).__name__ for lyr in self.layers)})"


MiddlewareCallable = Callable[[Context, In, Service[In, Out]], Awaitable[Out]]


class Middleware(Generic[In, Out]):
    """The service a :class:`MiddlewareFn` layer builds: ``fn(ctx, req, inner)``."""

    __slots__ = ("fn", "inner")

    def __init__(self, fn: MiddlewareCallable[In, Out], inner: Service[In, Out]) -> None:
        self.fn = fn
        self.inner = inner

    async def serve(self, ctx: Context, req: In) -> Out:
        """Call the middleware function with the inner service."""
        return await self.fn(ctx, req, self.inner)

    def __repr__(self) -> str:
        return f"Middleware({getattr(self.fn, '__qualname__', self.fn)!r}, {self.inner!r})"


class MiddlewareFn(Generic[In, Out]):
    """A Layer made from ``async def mw(ctx, req, inner)``; see :func:`middleware_fn`."""

    __slots__ = ("fn",)

    def __init__(self, fn: MiddlewareCallable[In, Out]) -> None:
        self.fn = fn

    def layer(self, inner: Service[In, Out], /) -> Middleware[In, Out]:
        """Wrap ``inner``: each call runs the function with ``inner`` to delegate to."""
        return Middleware(self.fn, inner)

    def __repr__(self) -> str:
        return f"middleware_fn({getattr(self.fn, '__qualname__', self.fn)!r})"


def middleware_fn(fn: MiddlewareCallable[In, Out]) -> MiddlewareFn[In, Out]:
    """Turn ``async def mw(ctx, req, inner)`` into a Layer. Usable as a decorator.

    A one-off middleware is then one function instead of a Layer class plus
    a Service class::

        @middleware_fn
        async def add_tag(ctx: Context, req: str, inner: Service[str, str]) -> str:
            return "tag:" + await inner.serve(ctx, req)

        svc = add_tag.layer(handler)

    The function decides whether and how to call ``inner``: it may change the
    request, the response, catch errors or answer without calling it. Its
    annotations fix the request and response types; the wrapped service
    must have those types. A middleware generic over the types
    (``req: In, inner: Service[In, Out]``) cannot be given one type here:
    annotate the result, ``mw: MiddlewareFn[Any, Any] = middleware_fn(f)``,
    or write a small class whose ``layer`` method is generic.
    """
    return MiddlewareFn(fn)
