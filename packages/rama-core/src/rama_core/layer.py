"""Layers wrap services; stacks compose layers outermost-first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from .service import Service

__all__ = [
    "Identity",
    "Layer",
    "LayerFn",
    "Stack",
    "layer_fn",
    "optional",
    "stack",
    "when",
]

S_contra = TypeVar("S_contra", contravariant=True)
T_co = TypeVar("T_co", covariant=True)
S = TypeVar("S")
T = TypeVar("T")


class Layer(Protocol[S_contra, T_co]):
    """Wraps an inner service into a new service."""

    def layer(self, inner: S_contra) -> T_co:
        """Return a service that wraps ``inner``."""
        ...


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


class Stack:
    """An ordered list of layers, outermost first.

    ``Stack(a, b, c).layer(svc)`` is ``a.layer(b.layer(c.layer(svc)))``: a
    request passes a, then b, then c, then reaches ``svc``. ``None`` entries
    are skipped, which makes optional layers easy to write inline.
    """

    __slots__ = ("layers",)

    def __init__(self, *layers: Layer[Any, Any] | None) -> None:
        self.layers: tuple[Layer[Any, Any], ...] = tuple(
            layer for layer in layers if layer is not None
        )

    def push(self, *layers: Layer[Any, Any] | None) -> Stack:
        """A new stack with ``layers`` added on the inside."""
        return Stack(*self.layers, *layers)

    def layer(self, inner: Any) -> Any:
        """Wrap ``inner`` with every layer, innermost applied first."""
        svc = inner
        for lyr in reversed(self.layers):
            svc = lyr.layer(svc)
        return svc

    def into_service(self, inner: Service[Any, Any]) -> Service[Any, Any]:
        """Alias of :meth:`layer` that reads well at the end of a builder."""
        result: Service[Any, Any] = self.layer(inner)
        return result

    def __iter__(self) -> Any:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        return f"Stack({', '.join(type(lyr).__name__ for lyr in self.layers)})"


def stack(*layers: Layer[Any, Any] | None) -> Stack:
    """Build a :class:`Stack` from layers, outermost first."""
    return Stack(*layers)


def optional(layer: Layer[Any, Any] | None) -> Layer[Any, Any]:
    """The given layer, or :class:`Identity` when it is ``None``."""
    return Identity() if layer is None else layer


def when(
    condition: bool, layer: Layer[Any, Any] | Callable[[], Layer[Any, Any]]
) -> Layer[Any, Any]:
    """``layer`` if ``condition`` holds, else :class:`Identity`.

    ``layer`` may be a zero-argument factory so that a layer that is not used
    is never built.
    """
    if not condition:
        return Identity()
    if hasattr(layer, "layer"):
        return layer
    return layer()
