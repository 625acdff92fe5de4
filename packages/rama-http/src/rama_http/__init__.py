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

from ._body import Body, BodyInput, BodyWriter
from ._errors import (
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
from ._h2._config import H2Config
from ._h2._record import H2PrefaceRecord, PseudoHeaderOrder
from ._headers import HeaderInput, Headers
from ._message import Request, Response, UpgradeHandler
from ._method import Method
from ._status import StatusCode, reason_phrase
from ._uri import Uri, UriForm, default_port
from ._version import Version
from .fingerprint import AkamaiH2Fingerprint, Ja4hFingerprint, akamai_h2_fingerprint, ja4h

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
