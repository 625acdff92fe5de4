"""rama_proxy.mitm: TLS interception with hooks, for the HTTP and SOCKS5 proxies.

::

    ca = CertificateAuthority.create()
    mitm = MitmProxy(ca, hooks=[MyHooks()])
    proxy = HttpProxy(connect_policy=mitm.connect_policy())   # or SocksProxy(connect_handoff=mitm)

- :class:`MitmProxy`: the pipeline for one tunnelled connection (peek the
  ClientHello, policy, eager upstream with ALPN from the client, leaf from
  the CA, HTTP/h2 relay, WebSocket relay, raw pass-through);
- :class:`MitmPolicy` (:class:`HostPolicy`, :class:`InterceptAll`,
  :func:`mitm_policy_fn`): intercept / pass through / reject per connection;
- :class:`MitmHooks`: modify request and response heads and bodies, and
  WebSocket messages; :class:`HookLayer` is one as a Layer;
- :class:`MitmObserver`: what a flow recorder is told (:class:`MitmConnection`,
  :class:`HttpFlow`, :class:`WebSocketMessage`).
"""

from ._flow import (
    ConnectionMode,
    HttpFlow,
    MitmConnection,
    MitmHooks,
    MitmObserver,
    MitmObservers,
    WebSocketMessage,
)
from ._plan import HTTP_ALPN, Sniffed, client_alpn, leaf_hosts, sniff, upstream_alpn
from ._policy import (
    HostPolicy,
    Intercept,
    InterceptAll,
    MitmDecision,
    MitmPolicy,
    MitmRequest,
    PassThrough,
    RejectConnection,
    mitm_policy_fn,
)
from ._relay import HookLayer, HookService
from ._service import MitmConnectPolicy, MitmProxy

__all__ = [
    "HTTP_ALPN",
    "ConnectionMode",
    "HookLayer",
    "HookService",
    "HostPolicy",
    "HttpFlow",
    "Intercept",
    "InterceptAll",
    "MitmConnectPolicy",
    "MitmConnection",
    "MitmDecision",
    "MitmHooks",
    "MitmObserver",
    "MitmObservers",
    "MitmPolicy",
    "MitmProxy",
    "MitmRequest",
    "PassThrough",
    "RejectConnection",
    "Sniffed",
    "WebSocketMessage",
    "client_alpn",
    "leaf_hosts",
    "mitm_policy_fn",
    "sniff",
    "upstream_alpn",
]
