"""ASGI both ways: host ASGI apps on rama, mount rama services in ASGI servers.

- :class:`AsgiService`: an ASGI 3 application (FastAPI, Starlette, Django...)
  as a rama ``Service[Request, Response]``:
  ``await rama_http.server.serve("127.0.0.1:8000", AsgiService(app))``;
- :class:`AsgiApp`: a rama ``Service[Request, Response]`` as an ASGI 3
  application, for uvicorn, hypercorn or a mount inside another app;
- :func:`tls_extension`: the ``scope["extensions"]["tls"]`` of a connection
  (the ASGI TLS extension plus the client's JA4).
"""

from ._app import AsgiApp
from ._http import ClientDisconnected
from ._lifespan import LifespanError
from ._scope import tls_extension
from ._service import AsgiService
from ._types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "ASGIApp",
    "AsgiApp",
    "AsgiService",
    "ClientDisconnected",
    "LifespanError",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "tls_extension",
]
