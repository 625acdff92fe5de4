"""HTTP(S) forward/CONNECT, SOCKS5, PROXY protocol and MITM proxies for rama.

Every part is a Service or a Layer:

- :class:`Egress` reaches a target directly or through an upstream proxy that an
  :class:`UpstreamSelector` picks (a fixed one, or the proxy DB by labels);
- :class:`ProxyAuthenticator` checks proxy credentials (HTTP Basic and SOCKS5);
- :class:`ProxyRecord` is what each request or tunnel did, for the access log
  and the metrics (:class:`ProxyObservers`).
"""

from ._auth import (
    CredentialChecker,
    PlainUsername,
    ProxyAuthenticator,
    ProxyUser,
    StaticCredentials,
    UsernameParser,
    parse_basic_credentials,
)
from ._connect_policy import (
    AllowAll,
    ConnectDecision,
    ConnectPolicy,
    ConnectTarget,
    Handoff,
    Reject,
    Tunnel,
    connect_policy_fn,
)
from ._egress import (
    Egress,
    EgressConnection,
    NoUpstream,
    ProxyConnectors,
    StaticUpstream,
    UpstreamSelector,
    default_proxy_connectors,
    redact_proxy_url,
)
from ._errors import UpstreamError, UpstreamFailure, classify_upstream_error
from ._filter import ProxyFilter

# -- haproxy: PROXY protocol v1/v2 (codec, server and client layers) --
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
from ._hop_by_hop import HOP_BY_HOP, is_websocket_upgrade, strip_hop_by_hop
from ._http_proxy import HttpProxy, classify_forward_error
from ._https_connector import HttpsProxyConnector

# -- end haproxy --
# upstreamdb: _labels, _proxy_db, _selector (username labels, the proxy DB, its selector)
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
from ._record import ProxyObserver, ProxyObservers, ProxyRecord, begin_record, end_record
from ._selector import ProxyDbSelector, SelectionMode, UpstreamNeeds, rendezvous_order

# -- socks (issue 15) --
from ._socks4_codec import Socks4Command, Socks4Reply, Socks4ReplyCode, Socks4Request
from ._socks5_codec import (
    Socks5ClientProtocol,
    Socks5Command,
    Socks5ReplyCode,
    Socks5ServerProtocol,
    Socks5UdpDatagram,
    SocksAddressTypeError,
    SocksCommandError,
    SocksError,
    SocksFormatError,
    SocksTruncatedError,
    SocksVersionError,
    decode_udp_datagram,
    encode_udp_datagram,
)
from ._socks_connector import (
    Socks4ProxyConnector,
    Socks5ProxyConnector,
    SocksProxyError,
    socks5_reply_failure,
)
from ._socks_server import SocksProxy
from ._udp_relay import UdpRelay

# -- end socks --

# isort: split
# -- proxyserve: one port, access log, metrics, the assembled server --
from ._access_log import AccessLog
from ._detect import DetectedProtocol, ProxyDetector, detect_proxy_protocol
from ._metrics import ProxyMetrics, proxy_metrics
from ._proxy_server import ProxyServer, ProxyServerConfig, serve_proxy

__version__ = "0.1.0"

__all__ = [
    # httpproxy
    "HOP_BY_HOP",
    "AllowAll",
    "ConnectDecision",
    "ConnectPolicy",
    "ConnectTarget",
    "Handoff",
    "HttpProxy",
    "HttpsProxyConnector",
    "Reject",
    "Tunnel",
    "classify_forward_error",
    "connect_policy_fn",
    "is_websocket_upgrade",
    "strip_hop_by_hop",
    # foundation
    "CredentialChecker",
    "Egress",
    "EgressConnection",
    "NoUpstream",
    "PlainUsername",
    "ProxyAuthenticator",
    "ProxyConnectors",
    "ProxyFilter",
    "ProxyObserver",
    "ProxyObservers",
    "ProxyRecord",
    "ProxyUser",
    "StaticCredentials",
    "StaticUpstream",
    "UpstreamError",
    "UpstreamFailure",
    "UpstreamSelector",
    "UsernameParser",
    "begin_record",
    "classify_upstream_error",
    "default_proxy_connectors",
    "end_record",
    "parse_basic_credentials",
    "redact_proxy_url",
    # -- socks (issue 15) --
    "Socks4Command",
    "Socks4ProxyConnector",
    "Socks4Reply",
    "Socks4ReplyCode",
    "Socks4Request",
    "Socks5ClientProtocol",
    "Socks5Command",
    "Socks5ProxyConnector",
    "Socks5ReplyCode",
    "Socks5ServerProtocol",
    "Socks5UdpDatagram",
    "SocksAddressTypeError",
    "SocksCommandError",
    "SocksError",
    "SocksFormatError",
    "SocksProxy",
    "SocksProxyError",
    "SocksTruncatedError",
    "SocksVersionError",
    "UdpRelay",
    "decode_udp_datagram",
    "encode_udp_datagram",
    "socks5_reply_failure",
    # -- end socks --
    # proxyserve
    "AccessLog",
    "DetectedProtocol",
    "ProxyDetector",
    "ProxyMetrics",
    "ProxyServer",
    "ProxyServerConfig",
    "detect_proxy_protocol",
    "proxy_metrics",
    "serve_proxy",
    # -- haproxy --
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
    # -- end haproxy --
    # upstreamdb
    "LabelParser",
    "UsernameLabelParser",
    "format_username",
    "PROXY_SCHEMES",
    "ProxyDb",
    "ProxyDbError",
    "ProxyDbFile",
    "ProxyDbSource",
    "Transport",
    "UpstreamProxy",
    "ProxyDbSelector",
    "SelectionMode",
    "UpstreamNeeds",
    "rendezvous_order",
]
