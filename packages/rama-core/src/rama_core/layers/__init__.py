"""Generic layers that work with any service."""

from .error import ConsumeError, ConsumeErrorLayer, LogError, LogErrorLayer
from .extension import AddExtension, AddExtensionLayer
from .hijack import Either, Hijack, HijackLayer
from .limit import ConcurrencyLimit, ConcurrencyLimitLayer, LimitPolicy
from .map import (
    MapError,
    MapErrorLayer,
    MapRequest,
    MapRequestLayer,
    MapResponse,
    MapResponseLayer,
)
from .timeout import Timeout, TimeoutLayer

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
