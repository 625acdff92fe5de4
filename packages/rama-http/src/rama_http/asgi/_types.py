"""ASGI 3 type aliases (the shapes of the spec, without depending on asgiref)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias

__all__ = ["ASGIApp", "Message", "Receive", "Scope", "Send"]

Scope: TypeAlias = MutableMapping[str, Any]
"""The connection scope handed to the application."""
Message: TypeAlias = MutableMapping[str, Any]
"""One event, received or sent."""
Receive: TypeAlias = Callable[[], Awaitable[Message]]
"""The ``receive`` callable."""
Send: TypeAlias = Callable[[Message], Awaitable[None]]
"""The ``send`` callable."""
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]
"""An ASGI 3 application: ``await app(scope, receive, send)``."""

ASGI_VERSION: dict[str, str] = {"version": "3.0", "spec_version": "2.4"}
