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
from ._plan import Sniffed, client_alpn, leaf_hosts, sniff, upstream_alpn
from ._policy import InterceptAll, MitmPolicy, MitmRequest, PassThrough, RejectConnection
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
        self.server_config = server_config or ServerConfig()
        self.websocket_config = websocket_config
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
        with contextlib.suppress(PeekError):
            await peek.fill(lambda b: sniff(b) is not None, limit=16, timeout=self.peek_timeout)
        kind = sniff(peek.peeked)
        if kind is None:
            if not peek.peeked:
                conn.mode, conn.error = "error", "no data"
                return
            kind = Sniffed.OTHER
        hello: ClientHello | None = None
        if kind is Sniffed.TLS:
            try:
                hello = await peek_client_hello(peek, timeout=self.peek_timeout)
            except ClientHelloError as e:
                conn.mode, conn.error = "error", "bad ClientHello"
                _log.info("MITM: bad ClientHello from %s: %s", conn.client, e)
                return
            except TlsError as e:
                conn.mode, conn.error = "error", "no ClientHello"
                _log.info("MITM: no ClientHello from %s: %s", conn.client, e)
                return
            conn.client_hello = hello
        decision = await self.policy.decide(
            ctx, MitmRequest(conn.target, conn.client, conn.user, hello)
        )
        if isinstance(decision, RejectConnection):
            conn.mode, conn.error = "reject", decision.reason
            _log.info("MITM: %s to %s rejected: %s", conn.client, conn.target, decision.reason)
            return
        if isinstance(decision, PassThrough) or kind is Sniffed.OTHER:
            conn.mode = "pass_through" if isinstance(decision, PassThrough) else "raw"
            await self._tunnel(ctx, peek, conn)
            return
        if kind is Sniffed.HTTP:
            conn.mode = "http"
            await self._plain_http(ctx, peek, conn)
            return
        assert hello is not None
        conn.mode = "intercept"
        await self._intercept(ctx, peek, conn, hello)

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
            authority=_authority_text(conn.target),
            observer=self.observer,
        )

    async def _plain_http(self, ctx: Context, peek: PeekStream, conn: MitmConnection) -> None:
        async def opener() -> tuple[ByteStream, str | None]:
            return await self._dial(ctx, conn.target, conn), None

        upstream = UpstreamConnections(
            opener, authority=_authority_text(conn.target), scheme="http"
        )
        try:
            server = HttpServer(
                self._http_stack(conn, upstream, "http"), self.server_config, h2=False
            )
            await server.serve(ctx, peek)
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

    async def _intercept(
        self, ctx: Context, peek: PeekStream, conn: MitmConnection, hello: ClientHello
    ) -> None:
        target_host = str(conn.target.host).strip("[]")
        server_name = hello.server_name or target_host
        offered = tuple(p.decode("latin-1") for p in hello.alpn_protocols)
        up_alpn = upstream_alpn(offered)
        failure: str | None = None
        first: tuple[ByteStream, str | None] | None = None
        upstream_cert = None
        try:
            raw = await self._dial(ctx, conn.target, conn)
            try:
                tls, negotiated = await self._upstream_tls(raw, server_name, up_alpn, hello)
            except BaseException:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await raw.aclose()
                raise
            conn.upstream_tls = negotiated
            first = (tls, negotiated.alpn)
            upstream_cert = negotiated.peer_certificate
        except _UpstreamFailed as e:
            failure = e.reason
            conn.error = e.reason
        chosen = first[1] if first is not None else None
        if failure is None:
            alpn = client_alpn(chosen, offered)
        else:
            alpn = ("http/1.1",) if "http/1.1" in offered else (("h2",) if "h2" in offered else ())
        hosts = leaf_hosts(hello.server_name, target_host, upstream_cert)
        tctx = ctx.fork()
        tctx.insert(_ChosenLeaf(await self._leaf(hosts)))
        try:
            try:
                client_tls = await self._acceptor(alpn).handshake(tctx, peek)
            except TlsError as e:
                # the client refused our leaf (pinning, untrusted CA) or went away
                _log.info("MITM: TLS handshake with client %s failed: %s", conn.client, e)
                conn.error = conn.error or "client TLS handshake failed"
                return
            conn.client_tls = tctx.get(NegotiatedTls)
            try:
                if failure is not None:
                    reason = failure
                    page: Service[Request, Response] = service_fn(
                        lambda _c, _r: _failure_page(server_name, reason)
                    )
                    await HttpServer(page, self.server_config).serve(tctx, client_tls)
                    return

                async def opener() -> tuple[ByteStream, str | None]:
                    again = await self._dial(ctx, conn.target, conn)
                    try:
                        s, n = await self._upstream_tls(
                            again, server_name, (chosen,) if chosen else up_alpn, hello
                        )
                    except BaseException:
                        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                            await again.aclose()
                        raise
                    return s, n.alpn

                upstream = UpstreamConnections(
                    opener, authority=_authority_text(conn.target), scheme="https", first=first
                )
                first = None
                try:
                    stack = self._http_stack(conn, upstream, "https")
                    await HttpServer(stack, self.server_config).serve(tctx, client_tls)
                finally:
                    await upstream.aclose()
            finally:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await client_tls.aclose()
        finally:
            if first is not None:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await first[0].aclose()


def _soon() -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(days=1)


async def _never(ctx: Context, stream: ByteStream) -> None:  # the acceptors only handshake
    raise RuntimeError("unused")


def _authority_text(target: Authority) -> str:
    host = str(target.host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host if target.port == 443 else f"{host}:{target.port}"


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>502 Bad Gateway</title></head>
<body><h1>502 Bad Gateway</h1>
<p>The proxy could not open a trusted connection to <b>{host}</b>: {reason}.</p>
</body></html>
"""


async def _failure_page(host: str, reason: str) -> Response:
    import html

    body = _PAGE.format(host=html.escape(host), reason=html.escape(reason)).encode()
    return Response(
        502,
        headers=[("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")],
        body=body,
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
