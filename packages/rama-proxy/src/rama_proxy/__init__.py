"""HTTP(S) forward/CONNECT, SOCKS5, PROXY protocol and MITM proxies for rama.

Every part is a Service or a Layer:

- :class:`Egress` reaches a target directly or through an upstream proxy that an
  :class:`UpstreamSelector` picks (a fixed one, or the proxy DB by labels);
- :class:`ProxyAuthenticator` checks proxy credentials (HTTP Basic and SOCKS5);
- :class:`ProxyRecord` is what each request or tunnel did, for the access log
  and the metrics (:class:`ProxyObservers`);
- :class:`HttpProxy` (forward and CONNECT), :class:`SocksProxy` (SOCKS5/4),
  :class:`ProxyDetector` (one port for all) and :class:`ProxyServer` (the
  assembled ``rama serve proxy``).

Protocol details live in public submodules: :mod:`rama_proxy.socks` (codecs,
UDP relay), :mod:`rama_proxy.haproxy` (PROXY protocol codec and layers),
:mod:`rama_proxy.upstream` (labels, proxy DB, selector), :mod:`rama_proxy.mitm`
(interception), :mod:`rama_proxy.flows` (flows, HAR, curl) and
:mod:`rama_proxy.ca` (the CA on disk).
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
from ._haproxy_codec import ProxyProtocolHeader
from ._haproxy_layer import ProxyProtocolConnectorLayer, ProxyProtocolLayer, TransportSocketInfo
from ._hop_by_hop import HOP_BY_HOP, is_websocket_upgrade, strip_hop_by_hop
from ._http_proxy import HttpProxy, classify_forward_error
from ._https_connector import HttpsProxyConnector

# upstreamdb: _labels, _proxy_db, _selector (username labels, the proxy DB, its selector)
from ._labels import UsernameLabelParser
from ._proxy_db import ProxyDb, ProxyDbError, ProxyDbFile, UpstreamProxy
from ._record import ProxyObserver, ProxyObservers, ProxyRecord, begin_record, end_record
from ._selector import ProxyDbSelector
from ._socks_connector import Socks4ProxyConnector, Socks5ProxyConnector, SocksProxyError
from ._socks_server import SocksProxy

# isort: split
from ._access_log import AccessLog
from ._detect import DetectedProtocol, ProxyDetector, detect_proxy_protocol
from ._metrics import ProxyMetrics, proxy_metrics
from ._proxy_server import ProxyServer, ProxyServerConfig, serve_proxy

__version__ = "0.1.0"

__all__ = [
    "AccessLog",
    "AllowAll",
    "ConnectDecision",
    "ConnectPolicy",
    "ConnectTarget",
    "CredentialChecker",
    "DetectedProtocol",
    "Egress",
    "EgressConnection",
    "HOP_BY_HOP",
    "Handoff",
    "HttpProxy",
    "HttpsProxyConnector",
    "NoUpstream",
    "PlainUsername",
    "ProxyAuthenticator",
    "ProxyConnectors",
    "ProxyDb",
    "ProxyDbError",
    "ProxyDbFile",
    "ProxyDbSelector",
    "ProxyDetector",
    "ProxyFilter",
    "ProxyMetrics",
    "ProxyObserver",
    "ProxyObservers",
    "ProxyProtocolConnectorLayer",
    "ProxyProtocolHeader",
    "ProxyProtocolLayer",
    "ProxyRecord",
    "ProxyServer",
    "ProxyServerConfig",
    "ProxyUser",
    "Reject",
    "Socks4ProxyConnector",
    "Socks5ProxyConnector",
    "SocksProxy",
    "SocksProxyError",
    "StaticCredentials",
    "StaticUpstream",
    "TransportSocketInfo",
    "Tunnel",
    "UpstreamError",
    "UpstreamFailure",
    "UpstreamProxy",
    "UpstreamSelector",
    "UsernameLabelParser",
    "UsernameParser",
    "begin_record",
    "classify_forward_error",
    "classify_upstream_error",
    "connect_policy_fn",
    "default_proxy_connectors",
    "detect_proxy_protocol",
    "end_record",
    "is_websocket_upgrade",
    "parse_basic_credentials",
    "proxy_metrics",
    "redact_proxy_url",
    "serve_proxy",
    "strip_hop_by_hop",
]
