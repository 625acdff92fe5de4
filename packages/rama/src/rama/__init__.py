"""rama: a modular service framework for moving and transforming network packets.

This umbrella package re-exports every rama package under one name:
``rama.core`` is ``rama_core``'s public API, ``rama.net`` is ``rama_net``'s, and
so on. Submodules load on first access, so ``import rama`` stays cheap.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = ["cli", "core", "fp", "http", "net", "proxy", "tls", "ua"]

if TYPE_CHECKING:
    from . import cli, core, fp, http, net, proxy, tls, ua


def __getattr__(name: str) -> ModuleType:
    if name in __all__:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'rama' has no attribute {name!r}")
