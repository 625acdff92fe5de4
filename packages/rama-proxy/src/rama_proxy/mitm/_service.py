"""The interception pipeline for one tunnelled connection: :class:`MitmProxy`.

1. peek the first bytes (bounded by ``peek_timeout``): a TLS ClientHello,
   plain HTTP, or anything else (forwarded raw);
2. ask the :class:`MitmPolicy` (SNI, target, client address, user);
3. intercept: connect the server first (through the :class:`Egress`, so
   upstream proxies work), offering the client's HTTP ALPN protocols, with
   the stdlib connector (verification on) or, with ``mirror_tls``, the
   client's own ClientHello; then terminate the client's TLS with a leaf
   from the CA offering only the protocol the server chose; a server that
   fails (certificate, handshake, refused) is shown as a 502 page;
4. serve the decrypted client side with the rama HTTP server (h1 or h2)
   through the flow/hook/relay stack of :mod:`rama_proxy.mitm._relay`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import logging
import os
import ssl
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
from anyio.abc import ByteStream

from rama_core import Context, Service, service_fn
from rama_http import Request, Response
from rama_http.server import HttpServer, ServerConfig
from rama_http.ws import WebSocketConfig
from rama_net import Authority, PeekError, PeekStream, SocketInfo, forward
from rama_tls import (
    CertificateAuthority,
    CertificateVerificationError,
    CertifiedKey,
    ClientHello,
    ClientHelloError,
    LeafCertificateCache,
    NegotiatedTls,
    TlsAcceptorConfig,
    TlsAcceptorService,
    TlsClientConfig,
    TlsError,
    peek_client_hello,
    tls_connect,
)

from .._auth import ProxyUser
from .._connect_policy import ConnectDecision, ConnectPolicy, ConnectTarget, Handoff, Reject
from .._egress import Egress
from .._errors import UpstreamError
from ._flow import MitmConnection, MitmHooks, MitmObserver
from ._layer import (
    AcceptClient,
    AskPolicy,
    ClientAccepted,
    ClientFailed,
    Close,
    Command,
    ConnectUpstream,
    Event,
    FirstBytes,
    HelloFailed,
    HelloParsed,
    InterceptionLayer,
    PolicyDecided,
    ReadClientHello,
    ReadMore,
    ServeFailure,
    ServeHttp,
    ServePlainHttp,
    Tunnel,
    UpstreamFailed,
    UpstreamReady,
)
from ._plan import sniff, upstream_alpn
from ._policy import InterceptAll, MitmPolicy, MitmRequest
from ._relay import FlowService, HookLayer, ObserveService, UpstreamConnections, UpstreamRelay

__all__ = ["MitmConnectPolicy", "MitmProxy"]

_log = logging.getLogger("rama.proxy.mitm")


@dataclass(frozen=True, slots=True)
class _ChosenLeaf:
    leaf: CertifiedKey


class _ChosenLeafResolver:
    async def resolve(self, ctx: Context, hello: ClientHello) -> CertifiedKey | None:
        chosen = ctx.get(_ChosenLeaf)
        return chosen.leaf if chosen is not None else None


class _UpstreamFailed(Exception):
    """The server could not be reached or its TLS failed: ``reason`` is shown in a 502 page."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MitmProxy:
    """``Service[ByteStream, None]``: intercepts one tunnelled connection (see the module).

    Plug it into :class:`~rama_proxy.HttpProxy` with ``connect_policy=mitm.connect_policy()``
    or into :class:`~rama_proxy.SocksProxy` with ``connect_handoff=mitm``; it
    finds the target as :class:`~rama_proxy.ConnectTarget` in the Context.
    """

    def __init__(
        self,
        ca: CertificateAuthority | LeafCertificateCache,
        *,
        egress: Egress | None = None,
        policy: MitmPolicy | None = None,
        hooks: Sequence[MitmHooks] = (),
        observer: MitmObserver | None = None,
        upstream_insecure: bool = False,
        upstream_ca: bytes | str | os.PathLike[str] | None = None,
        mirror_tls: bool = False,
        peek_timeout: float = 10.0,
        handshake_timeout: float = 10.0,
        timeout: float = 30.0,
        idle_timeout: float | None = 300.0,
        max_body_size: int = 16 << 20,
        server_config: ServerConfig | None = None,
        websocket_config: WebSocketConfig | None = None,
        translate_http_version: bool = False,
    ) -> None:
        self.leaves = ca if isinstance(ca, LeafCertificateCache) else LeafCertificateCache(ca)
        """Leaf certificates shown to clients, one per host, cached."""
        self.egress = egress or Egress()
        self.policy: MitmPolicy = policy or InterceptAll()
        self.hooks = tuple(hooks)
        self.observer = observer
        self.upstream_insecure = upstream_insecure
        """Do not verify the servers' certificates (tests, or servers you trust anyway)."""
        self.upstream_ca = upstream_ca
        """PEM bytes, or a PEM file, of the CAs trusted for servers (None: the system roots)."""
        self.mirror_tls = mirror_tls
        """Send the client's own ClientHello to the server (its JA3/JA4), via rama_tls.emulation."""
        self.peek_timeout = peek_timeout
        self.handshake_timeout = handshake_timeout
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.max_body_size = max_body_size
        self.server_config = server_config or ServerConfig(max_body_size=None)
        """The decrypted client side's limits (bodies are the server's business: no size limit)."""
        self.websocket_config = websocket_config
        self.translate_http_version = translate_http_version
        """Negotiate HTTP versions per side (a client on h2 to an h1 server...); default:
        the client gets the server's choice, so h1 stays h1 and h2 stays h2."""
        self._acceptors: dict[tuple[str, ...], TlsAcceptorService[None]] = {}
        self._client_contexts: dict[tuple[str, ...], ssl.SSLContext] = {}
        self._multi_leaves: OrderedDict[tuple[str, ...], CertifiedKey] = OrderedDict()

    def connect_policy(self, inner: ConnectPolicy | None = None) -> MitmConnectPolicy:
        """A :class:`~rama_proxy.ConnectPolicy` handing every allowed CONNECT to this MITM."""
        return MitmConnectPolicy(self, inner)

    # -- the connection ---------------------------------------------------------------------------
    async def serve(self, ctx: Context, stream: ByteStream) -> None:
        """Intercept, pass through or refuse ``stream`` (owned: closed at the end)."""
        target_ext = ctx.get(ConnectTarget)
        if target_ext is None:
            raise RuntimeError("MitmProxy needs a ConnectTarget in the Context")
        info = ctx.get(SocketInfo)
        user = ctx.get(ProxyUser)
        conn = MitmConnection(
            target_ext.authority,
            client=info.peer_addr if info is not None else None,
            user=user.name if user is not None else None,
        )
        if self.observer is not None:
            self.observer.connection_started(conn)
        peek = stream if isinstance(stream, PeekStream) else PeekStream(stream)
        try:
            await self._serve(ctx, peek, conn)
        except Exception as e:
            conn.error = conn.error or type(e).__name__
            if isinstance(e, (TlsError, anyio.BrokenResourceError, anyio.EndOfStream, OSError)):
                _log.info("MITM connection to %s failed: %s", conn.target, e)
            else:
                _log.exception("MITM connection to %s failed", conn.target)
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await peek.aclose()
            conn.finished = anyio.current_time()
            if self.observer is not None:
                self.observer.connection_finished(conn)

    async def _serve(self, ctx: Context, peek: PeekStream, conn: MitmConnection) -> None:
        """Drive the :class:`InterceptionLayer`: carry out each command, feed back the outcome."""
        layer = InterceptionLayer(str(conn.target.host), translate=self.translate_http_version)
        cmd: Command = layer.start()
        upstream: tuple[ByteStream, NegotiatedTls] | None = None
        client_tls: ByteStream | None = None
        tctx = ctx.fork()
        try:
            while True:
                if isinstance(cmd, ReadMore):
                    final = False
                    try:
                        await peek.fill(
                            lambda b: sniff(b) is not None, limit=16, timeout=self.peek_timeout
                        )
                    except PeekError:
                        final = True
                    cmd = layer.handle(FirstBytes(peek.peeked, final or peek.at_eof))
                elif isinstance(cmd, ReadClientHello):
                    cmd = layer.handle(await self._read_hello(peek, conn))
                elif isinstance(cmd, AskPolicy):
                    request = MitmRequest(conn.target, conn.client, conn.user, cmd.hello)
                    cmd = layer.handle(PolicyDecided(await self.policy.decide(ctx, request)))
                elif isinstance(cmd, Close):
                    conn.mode = cmd.mode
                    conn.error = conn.error or cmd.error
                    if cmd.error is not None:
                        _log.info("MITM: %s to %s closed: %s", conn.client, conn.target, cmd.error)
                    return
                elif isinstance(cmd, Tunnel):
                    conn.mode = cmd.mode
                    await self._tunnel(ctx, peek, conn)
                    return
                elif isinstance(cmd, ServePlainHttp):
                    conn.mode = "http"
                    await self._plain_http(ctx, peek, conn)
                    return
                elif isinstance(cmd, ConnectUpstream):
                    conn.mode = "intercept"
                    assert conn.client_hello is not None
                    try:
                        upstream = await self._connect_upstream(
                            ctx, conn, cmd.server_name, cmd.alpn, conn.client_hello
                        )
                    except _UpstreamFailed as e:
                        conn.error = e.reason
                        cmd = layer.handle(UpstreamFailed(e.reason))
                    else:
                        conn.upstream_tls = upstream[1]
                        cert = upstream[1].peer_certificate
                        cmd = layer.handle(UpstreamReady(upstream[1].alpn, cert))
                elif isinstance(cmd, AcceptClient):
                    tctx.insert(_ChosenLeaf(await self._leaf(cmd.hosts)))
                    try:
                        client_tls = await self._acceptor(cmd.alpn).handshake(tctx, peek)
                    except TlsError as e:
                        # the client refused our leaf (pinning, untrusted CA) or went away
                        _log.info("MITM: TLS handshake with client %s failed: %s", conn.client, e)
                        cmd = layer.handle(ClientFailed("client TLS handshake failed"))
                        continue
                    conn.client_tls = tctx.get(NegotiatedTls)
                    alpn = conn.client_tls.alpn if conn.client_tls is not None else None
                    cmd = layer.handle(ClientAccepted(alpn))
                elif isinstance(cmd, ServeFailure):
                    assert client_tls is not None
                    page = _FailurePage(conn.server_name or str(conn.target.host), cmd.reason)
                    await HttpServer(page, self.server_config).serve(tctx, client_tls)
                    return
                elif isinstance(cmd, ServeHttp):
                    assert client_tls is not None
                    assert upstream is not None
                    first, upstream = (upstream[0], upstream[1].alpn), None
                    await self._relay(ctx, tctx, conn, client_tls, first, layer.upstream_alpn)
                    return
                else:  # pragma: no cover - every command is handled above
                    raise AssertionError(cmd)
        finally:
            with anyio.CancelScope(shield=True):
                if upstream is not None:
                    with contextlib.suppress(Exception):
                        await upstream[0].aclose()
                if client_tls is not None:
                    with contextlib.suppress(Exception):
                        await client_tls.aclose()

    async def _read_hello(self, peek: PeekStream, conn: MitmConnection) -> Event:
        try:
            hello = await peek_client_hello(peek, timeout=self.peek_timeout)
        except ClientHelloError as e:
            _log.debug("MITM: bad ClientHello from %s: %s", conn.client, e)
            return HelloFailed("bad ClientHello")
        except TlsError as e:
            _log.debug("MITM: no ClientHello from %s: %s", conn.client, e)
            return HelloFailed("no ClientHello")
        conn.client_hello = hello
        return HelloParsed(hello)

    async def _dial(self, ctx: Context, target: Authority, conn: MitmConnection) -> ByteStream:
        try:
            up = await self.egress.serve(ctx, target)
        except UpstreamError as e:
            conn.upstream_proxy = e.upstream
            raise _UpstreamFailed(e.failure.reason) from e
        conn.upstream_addr = up.peer_addr
        conn.upstream_proxy = up.upstream_label
        return up.stream

    async def _tunnel(self, ctx: Context, peek: PeekStream, conn: MitmConnection) -> None:
        try:
            upstream = await self._dial(ctx, conn.target, conn)
        except _UpstreamFailed as e:
            conn.error = e.reason
            _log.info("MITM tunnel to %s: %s", conn.target, e.reason)
            return
        stats = await forward(peek, upstream, idle_timeout=self.idle_timeout)
        conn.bytes_from_client += stats.left_to_right
        conn.bytes_from_server += stats.right_to_left
        if stats.idle_timed_out:
            conn.error = "idle timeout"
        elif stats.error is not None:
            conn.error = "connection lost"

    def _http_stack(
        self, conn: MitmConnection, upstream: UpstreamConnections, scheme: str
    ) -> Service[Request, Response]:
        service: Service[Request, Response] = UpstreamRelay(
            upstream,
            hooks=self.hooks,
            observer=self.observer,
            timeout=self.timeout,
            websocket_config=self.websocket_config,
        )
        service = ObserveService(service, self.observer)
        for hooks in reversed(self.hooks):
            service = HookLayer(hooks, max_body_size=self.max_body_size).layer(service)
        return FlowService(
            service,
            conn,
            scheme=scheme,
            authority=upstream.authority,
            observer=self.observer,
        )

    async def _plain_http(self, ctx: Context, peek: PeekStream, conn: MitmConnection) -> None:
        # h2 with prior knowledge (h2c) stays h2c to the server; HTTP/1.x stays HTTP/1.x
        h2c = peek.peeked.startswith(b"PRI ")

        async def opener() -> tuple[ByteStream, str | None]:
            return await self._dial(ctx, conn.target, conn), "h2" if h2c else None

        upstream = UpstreamConnections(
            opener, authority=_authority_text(conn.target, 80), scheme="http"
        )
        try:
            stack = self._http_stack(conn, upstream, "http")
            await HttpServer(stack, self.server_config, http1=not h2c, h2=h2c).serve(ctx, peek)
        finally:
            await upstream.aclose()

    # -- TLS interception -------------------------------------------------------------------------
    async def _upstream_tls(
        self,
        stream: ByteStream,
        server_name: str,
        alpn: tuple[str, ...],
        hello: ClientHello,
    ) -> tuple[ByteStream, NegotiatedTls]:
        verify = not self.upstream_insecure
        try:
            if self.mirror_tls:
                from rama_tls.emulation import ClientHelloSpec, emulated_tls_connect

                spec = ClientHelloSpec.from_client_hello(hello)
                if tuple(p.decode("latin-1") for p in hello.alpn_protocols) != alpn:
                    # a reconnection for one protocol (a WebSocket over HTTP/1.1...)
                    spec = spec.with_alpn(alpn)
                ca = self.upstream_ca
                etls = await emulated_tls_connect(
                    stream,
                    server_name=server_name,
                    spec=spec,
                    verify=verify,
                    ca=os.fspath(ca) if isinstance(ca, os.PathLike) else ca,
                    handshake_timeout=self.handshake_timeout,
                )
                return etls, etls.negotiated()
            sslctx = self._client_contexts.get(alpn)
            if sslctx is None:
                config = self._tls_config(alpn)
                sslctx = await anyio.to_thread.run_sync(config.build_ssl_context)
                self._client_contexts[alpn] = sslctx
            tmp = Context()
            tls = await tls_connect(
                stream, server_name, self._tls_config(alpn), ctx=tmp, ssl_context=sslctx
            )
            negotiated = tmp.get(NegotiatedTls)
            assert negotiated is not None
            return tls, negotiated
        except CertificateVerificationError as e:
            _log.info("MITM: certificate of %s not trusted: %s", server_name, e)
            raise _UpstreamFailed("the server's certificate is not trusted") from e
        except (TlsError, anyio.BrokenResourceError, anyio.EndOfStream, OSError) as e:
            _log.info("MITM: TLS handshake with %s failed: %s", server_name, e)
            raise _UpstreamFailed("the TLS handshake with the server failed") from e

    def _tls_config(self, alpn: tuple[str, ...]) -> TlsClientConfig:
        ca = self.upstream_ca
        return TlsClientConfig(
            verify=not self.upstream_insecure,
            ca_pem=ca if isinstance(ca, bytes) else None,
            ca_file=ca if isinstance(ca, (str, os.PathLike)) else None,
            alpn_protocols=alpn,
            handshake_timeout=self.handshake_timeout,
        )

    async def _leaf(self, hosts: tuple[str, ...]) -> CertifiedKey:
        if len(hosts) == 1:
            return await self.leaves.aget(hosts[0])
        leaf = self._multi_leaves.get(hosts)
        if leaf is None or leaf.cert.not_valid_after_utc < _soon():
            cache = self.leaves
            leaf = await anyio.to_thread.run_sync(
                lambda: cache.ca.issue(*hosts, valid_days=cache.valid_days, key_type=cache.key_type)
            )
            self._multi_leaves[hosts] = leaf
            while len(self._multi_leaves) > self.leaves.max_size:
                self._multi_leaves.popitem(last=False)
        self._multi_leaves.move_to_end(hosts)
        return leaf

    def _acceptor(self, alpn: tuple[str, ...]) -> TlsAcceptorService[None]:
        acceptor = self._acceptors.get(alpn)
        if acceptor is None:
            config = TlsAcceptorConfig(
                resolver=_ChosenLeafResolver(),
                alpn_protocols=alpn,
                handshake_timeout=self.handshake_timeout,
            )
            acceptor = TlsAcceptorService(service_fn(_never), config)
            self._acceptors[alpn] = acceptor
        return acceptor

    async def _connect_upstream(
        self,
        ctx: Context,
        conn: MitmConnection,
        server_name: str,
        alpn: tuple[str, ...],
        hello: ClientHello,
    ) -> tuple[ByteStream, NegotiatedTls]:
        first = conn.upstream_dial_started is None
        if first:
            conn.upstream_dial_started = anyio.current_time()
        raw = await self._dial(ctx, conn.target, conn)
        if first:
            conn.upstream_connected = anyio.current_time()
        try:
            result = await self._upstream_tls(raw, server_name, alpn, hello)
            if first:
                conn.upstream_tls_done = anyio.current_time()
            return result
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await raw.aclose()
            raise

    async def _relay(
        self,
        ctx: Context,
        tctx: Context,
        conn: MitmConnection,
        client_tls: ByteStream,
        first: tuple[ByteStream, str | None],
        chosen: str | None,
    ) -> None:
        hello = conn.client_hello
        assert hello is not None
        server_name = hello.server_name or str(conn.target.host).strip("[]")
        offered = tuple(p.decode("latin-1") for p in hello.alpn_protocols)

        async def opener() -> tuple[ByteStream, str | None]:
            alpn = (chosen,) if chosen else upstream_alpn(offered)
            s, n = await self._connect_upstream(ctx, conn, server_name, alpn, hello)
            return s, n.alpn

        async def h1_opener() -> tuple[ByteStream, str | None]:
            s, n = await self._connect_upstream(ctx, conn, server_name, ("http/1.1",), hello)
            if n.alpn not in (None, "http/1.1"):
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await s.aclose()
                raise _UpstreamFailed("the server would not speak HTTP/1.1")
            return s, n.alpn

        upstream = UpstreamConnections(
            opener,
            authority=_authority_text(conn.target),
            scheme="https",
            first=first,
            h1_opener=h1_opener,
        )
        try:
            stack = self._http_stack(conn, upstream, "https")
            await HttpServer(stack, self.server_config).serve(tctx, client_tls)
        finally:
            await upstream.aclose()


def _soon() -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(days=1)


async def _never(ctx: Context, stream: ByteStream) -> None:  # the acceptors only handshake
    raise RuntimeError("unused")


def _authority_text(target: Authority, default_port: int = 443) -> str:
    host = str(target.host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host if target.port == default_port else f"{host}:{target.port}"


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>502 Bad Gateway</title></head>
<body><h1>502 Bad Gateway</h1>
<p>The proxy could not open a trusted connection to <b>{host}</b>: {reason}.</p>
</body></html>
"""


class _FailurePage:
    """Answers every request with the 502 page (the server could not be reached or trusted)."""

    def __init__(self, host: str, reason: str) -> None:
        self.body = _PAGE.format(host=html.escape(host), reason=html.escape(reason)).encode()

    async def serve(self, ctx: Context, req: Request) -> Response:
        return Response(
            502,
            headers=[("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")],
            body=self.body,
        )


class MitmConnectPolicy:
    """A :class:`~rama_proxy.ConnectPolicy` that hands CONNECTs to a :class:`MitmProxy`.

    ``inner`` (optional) decides first: its :class:`~rama_proxy.Reject` and
    :class:`~rama_proxy.Handoff` stand; a tunnel becomes the hand-off.
    """

    def __init__(self, mitm: MitmProxy, inner: ConnectPolicy | None = None) -> None:
        self.mitm = mitm
        self.inner = inner
        self._handoff = Handoff(mitm)

    async def decide(self, ctx: Context, target: Authority, req: Request) -> ConnectDecision:
        """Hand off (unless ``inner`` rejects or hands off elsewhere)."""
        if self.inner is not None:
            decision = await self.inner.decide(ctx, target, req)
            if isinstance(decision, (Reject, Handoff)):
                return decision
        return self._handoff
