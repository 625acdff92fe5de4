"""rama_proxy.mitm: TLS interception with hooks, behind the HTTP and SOCKS5 proxies.

::

    ca = CertificateAuthority.create()            # or .load("ca.pem", "ca.key")
    mitm = MitmProxy(ca, hooks=[MyHooks()], observer=my_recorder)
    http_proxy = HttpProxy(connect_policy=mitm.connect_policy())
    socks_proxy = SocksProxy(connect_handoff=mitm)

The pipeline, per tunnelled connection (:class:`MitmProxy`, its decisions
in the sans-IO :class:`~rama_proxy.mitm._layer.InterceptionLayer`):

1. peek the first bytes (``peek_timeout``): a TLS ClientHello, cleartext
   HTTP/1.x (relayed through the hooks too), or anything else (a raw tunnel);
2. the :class:`MitmPolicy` decides from the SNI, the target, the client's
   address and the proxy user: :class:`Intercept`, :class:`PassThrough`
   (untouched; the client keeps the real certificate), or
   :class:`RejectConnection` (:class:`HostPolicy` does globs/networks,
   :func:`mitm_policy_fn` wraps a function);
3. connect the server first, through the :class:`~rama_proxy.Egress` (so
   upstream HTTP/SOCKS5 proxies work), offering the client's HTTP ALPN
   protocols; verification is on (system roots, or ``upstream_ca``;
   ``upstream_insecure`` turns it off). With ``mirror_tls`` the server gets
   the client's own ClientHello through :mod:`rama_tls.emulation`: tests
   check that a server records the client's JA4 (and, for curl, its JA3)
   for curl and headless Chromium, TLS 1.3 against nginx and rama;
4. terminate the client's TLS with a leaf from the CA (SAN: the SNI; without
   SNI the server certificate's names; IP targets get IP SANs; cached per
   host, issued off the event loop), offering only the protocol the server
   chose: h1 stays h1, h2 stays h2. A server that cannot be reached or
   trusted is shown to the client as a 502 page naming the cause;
5. serve the decrypted side with rama's HTTP server (h1/h2) through
   :class:`HookLayer` s (one per :class:`MitmHooks`) to the already-open
   server connection (more are opened as needed). Bodies stream; a hook that
   asks for one gets it buffered (``max_body_size``: 413/502 past it),
   decoded (gzip, deflate; br and zstd with brotli/zstandard installed) and
   re-encoded. WebSockets (HTTP/1.1 Upgrade, and h2 extended CONNECT, relayed
   to the server as an HTTP/1.1 Upgrade) go message by message through
   :meth:`MitmHooks.websocket_message` (forward, rewrite, drop, inject).

:class:`MitmObserver` (:class:`MitmObservers` for several) is told
everything a flow recorder needs: :class:`MitmConnection` (target, client,
user, ClientHello, both TLS sides with the real server certificate, tunnel
bytes, upstream timings), :class:`HttpFlow` (heads after hooks, body chunks,
timings, errors) and :class:`WebSocketMessage`. :class:`FlowRecordingObserver`
records all of it as :mod:`rama_proxy.flows` records (store, JSON lines, HAR).
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
from ._recording import FlowRecordingObserver
from ._relay import HookLayer, HookService
from ._service import MitmConnectPolicy, MitmProxy

__all__ = [
    "HTTP_ALPN",
    "ConnectionMode",
    "FlowRecordingObserver",
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
