"""Choosing an HTTP/1.1 engine by name."""

from __future__ import annotations

from ._config import Http1Engine, ServerConfig
from ._h1_engine import EngineLimits, H1Engine

__all__ = ["available_engines", "make_engine"]


_httptools: list[bool] = []


def _has_httptools() -> bool:
    if not _httptools:
        try:
            import httptools  # noqa: F401
        except ImportError:
            _httptools.append(False)
        else:
            _httptools.append(True)
    return _httptools[0]


def available_engines() -> list[str]:
    """Engine names usable in this environment (``httptools`` needs the ``fast`` extra)."""
    names = ["fast", "h11"]
    return [*names, "httptools"] if _has_httptools() else names


def make_engine(name: Http1Engine, config: ServerConfig) -> H1Engine:
    """A fresh engine for one connection."""
    limits = EngineLimits(
        max_request_line=config.max_request_line,
        max_header_size=config.max_header_size,
        max_headers=config.max_headers,
    )
    if name == "auto":
        name = "httptools" if _has_httptools() else "fast"
    if name == "fast":
        from ._h1_fast import FastEngine

        return FastEngine(limits)
    if name == "h11":
        from ._h1_h11 import H11Engine

        return H11Engine(limits)
    if name == "httptools":
        from ._h1_httptools import HttptoolsEngine

        return HttptoolsEngine(limits)
    raise ValueError(f"unknown HTTP/1.1 engine {name!r}")
