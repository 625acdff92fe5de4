"""HTTP middleware: each a Layer over ``Service[Request, Response]``, usable alone.

- :class:`CompressionLayer` (gzip, deflate, br, zstd; negotiated, streaming) and
  :class:`RequestDecompressionLayer`;
- :class:`CorsLayer`; :class:`RequestIdLayer`; :class:`SetHeadersLayer`;
- :class:`AccessLogLayer` (common, combined, JSON lines);
- :class:`HttpTelemetryLayer` (OpenTelemetry spans and ``http.server.*`` metrics);
- :class:`BasicAuthLayer`, :class:`BearerAuthLayer`;
- :class:`BodyLimitLayer`, :class:`CatchFailureLayer`, :class:`RateLimitLayer`,
  :class:`HookLayer`; timeouts are :class:`rama_core.layers.TimeoutLayer`
  (answered 504).
"""

from ._access_log import AccessLog, AccessLogLayer
from ._auth import AuthenticatedUser, BasicAuth, BasicAuthLayer, BearerAuth, BearerAuthLayer
from ._compression import (
    Compression,
    CompressionLayer,
    RequestDecompression,
    RequestDecompressionLayer,
    available_encodings,
)
from ._cors import Cors, CorsLayer
from ._headers_layer import HeaderRule, SetHeaders, SetHeadersLayer
from ._limits import (
    BodyLimit,
    BodyLimitLayer,
    CatchFailure,
    CatchFailureLayer,
    Hook,
    HookLayer,
    RateLimit,
    RateLimitLayer,
    client_ip_key,
)
from ._request_id import RequestId, RequestIdLayer, RequestIdService
from ._telemetry import HttpTelemetry, HttpTelemetryLayer

__all__ = [
    "AccessLog",
    "AccessLogLayer",
    "AuthenticatedUser",
    "BasicAuth",
    "BasicAuthLayer",
    "BearerAuth",
    "BearerAuthLayer",
    "BodyLimit",
    "BodyLimitLayer",
    "CatchFailure",
    "CatchFailureLayer",
    "Compression",
    "CompressionLayer",
    "Cors",
    "CorsLayer",
    "HeaderRule",
    "Hook",
    "HookLayer",
    "HttpTelemetry",
    "HttpTelemetryLayer",
    "RateLimit",
    "RateLimitLayer",
    "RequestDecompression",
    "RequestDecompressionLayer",
    "RequestId",
    "RequestIdLayer",
    "RequestIdService",
    "SetHeaders",
    "SetHeadersLayer",
    "available_encodings",
    "client_ip_key",
]
