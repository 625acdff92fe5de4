"""Generic layers that work with any service."""

from ._error import ConsumeError, ConsumeErrorLayer, LogError, LogErrorLayer
from ._extension import AddExtension, AddExtensionLayer
from ._hijack import Either, Hijack, HijackLayer
from ._limit import ConcurrencyLimit, ConcurrencyLimitLayer, LimitPolicy
from ._map import (
    MapError,
    MapErrorLayer,
    MapRequest,
    MapRequestLayer,
    MapResponse,
    MapResponseLayer,
)
from ._timeout import Timeout, TimeoutLayer

__all__ = [
    "AddExtension",
    "AddExtensionLayer",
    "ConcurrencyLimit",
    "ConcurrencyLimitLayer",
    "ConsumeError",
    "ConsumeErrorLayer",
    "Either",
    "Hijack",
    "HijackLayer",
    "LimitPolicy",
    "LogError",
    "LogErrorLayer",
    "MapError",
    "MapErrorLayer",
    "MapRequest",
    "MapRequestLayer",
    "MapResponse",
    "MapResponseLayer",
    "Timeout",
    "TimeoutLayer",
]
