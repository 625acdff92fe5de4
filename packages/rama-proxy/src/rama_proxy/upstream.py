"""Upstream proxy selection.

Username labels (:class:`UsernameLabelParser`), the proxy DB (CSV/JSON, hot
reload) and :class:`ProxyDbSelector`.
"""

from __future__ import annotations

from ._filter import ProxyFilter
from ._labels import LabelParser, UsernameLabelParser, format_username
from ._proxy_db import (
    PROXY_SCHEMES,
    ProxyDb,
    ProxyDbError,
    ProxyDbFile,
    ProxyDbSource,
    Transport,
    UpstreamProxy,
)
from ._selector import ProxyDbSelector, SelectionMode, UpstreamNeeds, rendezvous_order

__all__ = [
    "LabelParser",
    "PROXY_SCHEMES",
    "ProxyDb",
    "ProxyDbError",
    "ProxyDbFile",
    "ProxyDbSelector",
    "ProxyDbSource",
    "ProxyFilter",
    "SelectionMode",
    "Transport",
    "UpstreamNeeds",
    "UpstreamProxy",
    "UsernameLabelParser",
    "format_username",
    "rendezvous_order",
]
