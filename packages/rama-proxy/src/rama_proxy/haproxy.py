"""HAProxy PROXY protocol v1 and v2.

The sans-IO codec and the server and client layers.
"""

from __future__ import annotations

from ._haproxy_codec import (
    AddressFamily,
    BadSignature,
    ChecksumMismatch,
    HeaderTooLarge,
    InvalidHeader,
    NeedMoreBytes,
    ProxyCommand,
    ProxyHeaderDecoder,
    ProxyProtocolError,
    ProxyProtocolHeader,
    SslInfo,
    Tlv,
    TlvOverrun,
    TlvType,
    TransportProtocol,
    UnixAddress,
    crc32c,
    detect_proxy_header,
    encode_v1,
    encode_v2,
    parse_proxy_header,
)
from ._haproxy_layer import (
    ProxyProtocolConnector,
    ProxyProtocolConnectorLayer,
    ProxyProtocolLayer,
    ProxyProtocolService,
    TransportSocketInfo,
)

__all__ = [
    "AddressFamily",
    "BadSignature",
    "ChecksumMismatch",
    "HeaderTooLarge",
    "InvalidHeader",
    "NeedMoreBytes",
    "ProxyCommand",
    "ProxyHeaderDecoder",
    "ProxyProtocolConnector",
    "ProxyProtocolConnectorLayer",
    "ProxyProtocolError",
    "ProxyProtocolHeader",
    "ProxyProtocolLayer",
    "ProxyProtocolService",
    "SslInfo",
    "Tlv",
    "TlvOverrun",
    "TlvType",
    "TransportProtocol",
    "TransportSocketInfo",
    "UnixAddress",
    "crc32c",
    "detect_proxy_header",
    "encode_v1",
    "encode_v2",
    "parse_proxy_header",
]
