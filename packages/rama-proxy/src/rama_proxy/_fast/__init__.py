"""The callback-driven fast path of the proxy server (see :mod:`._engine`)."""

from ._engine import FastProxy

__all__ = ["FastProxy"]
