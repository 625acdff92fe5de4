"""rama-http: HTTP types, bodies, servers and fingerprints for rama.

::

    from rama_core import service_fn
    from rama_http import Request, Response

    @service_fn
    async def hello(ctx, req: Request) -> Response:
        return Response.from_text("hello\\n")

Servers live in :mod:`rama_http.server` (``serve_http1``, ``Http1Server``,
``ServerConfig``, ``H2Config``); fingerprints (JA4H, Akamai h2) in :mod:`rama_http.fingerprint`.
"""

from .body import Body, BodyInput, BodyWriter
from .errors import (
    BodyAlreadyConsumed,
    BodyError,
    BodyTooLarge,
    HttpError,
    InvalidHeader,
    InvalidUri,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from .fingerprint import AkamaiH2Fingerprint, Ja4hFingerprint, akamai_h2_fingerprint, ja4h
from .h2.config import H2Config
from .h2.record import H2PrefaceRecord, PseudoHeaderOrder
from .headers import HeaderInput, Headers
from .message import Request, Response, UpgradeHandler
from .method import Method
from .status import StatusCode, reason_phrase
from .uri import Uri, UriForm, default_port
from .version import Version

__version__ = "0.1.0"

__all__ = [
    "AkamaiH2Fingerprint",
    "Body",
    "BodyAlreadyConsumed",
    "BodyError",
    "BodyInput",
    "BodyTooLarge",
    "BodyWriter",
    "HeaderInput",
    "Headers",
    "H2Config",
    "H2PrefaceRecord",
    "HttpError",
    "InvalidHeader",
    "InvalidUri",
    "Ja4hFingerprint",
    "LocalProtocolError",
    "Method",
    "ProtocolError",
    "PseudoHeaderOrder",
    "RemoteProtocolError",
    "Request",
    "Response",
    "StatusCode",
    "UpgradeHandler",
    "Uri",
    "UriForm",
    "Version",
    "akamai_h2_fingerprint",
    "default_port",
    "ja4h",
    "reason_phrase",
]
