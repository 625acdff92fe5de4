"""rama-http: HTTP types, bodies, servers and fingerprints for rama.

::

    from rama_core import service_fn
    from rama_http import Request, Response

    @service_fn
    async def hello(ctx, req: Request) -> Response:
        return Response.from_text("hello\\n")
"""

from .body import Body, BodyInput, BodyWriter
from .errors import (
    BodyAlreadyConsumed,
    BodyError,
    BodyTooLarge,
    HttpError,
    InvalidHeader,
    InvalidUri,
    ProtocolError,
)
from .headers import HeaderInput, Headers
from .message import Request, Response, UpgradeHandler
from .method import Method
from .status import StatusCode, reason_phrase
from .uri import Uri, UriForm, default_port
from .version import Version

__version__ = "0.1.0"

__all__ = [
    "Body",
    "BodyAlreadyConsumed",
    "BodyError",
    "BodyInput",
    "BodyTooLarge",
    "BodyWriter",
    "HeaderInput",
    "Headers",
    "HttpError",
    "InvalidHeader",
    "InvalidUri",
    "Method",
    "ProtocolError",
    "Request",
    "Response",
    "StatusCode",
    "UpgradeHandler",
    "Uri",
    "UriForm",
    "Version",
    "default_port",
    "reason_phrase",
]
