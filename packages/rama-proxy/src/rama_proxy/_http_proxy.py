"""The HTTP proxy service: absolute-form forwarding and CONNECT tunnels.

:class:`HttpProxy` is a ``Service[Request, Response]`` for any rama-http
server (HTTP/1.1, h2, behind TLS or not):

- an absolute-form request (``GET http://host/path``; every h2 request) is
  forwarded through rama's HTTP client pool: header order and casing kept,
  hop-by-hop fields removed (:mod:`rama_proxy._hop_by_hop`), optional ``Via``
  and ``Forwarded``/``X-Forwarded-For``, bodies streamed both ways. The
  upstream proxy is chosen per request by the :class:`~rama_proxy.Egress`'s
  selector (from the Context's :class:`~rama_proxy.ProxyUser`); pooled
  connections are keyed by it, and a filter asking for ``new_connection``
  never reuses one. A failure answers 502/504 with the cause's short reason;
- ``CONNECT host:port`` asks the :class:`~rama_proxy.ConnectPolicy`, connects
  the egress (eagerly: ``200 Connection established`` only once it is up; or
  lazily) and relays bytes with :func:`rama_net.forward` (splice on plain TCP);
- WebSocket handshakes are relayed: an absolute-form ``GET`` with
  ``Upgrade: websocket`` (the 101 turns into a relay), and RFC 8441 extended
  CONNECT over h2 (translated to an HTTP/1.1 upgrade towards the origin);
- ``Proxy-Authorization: Basic`` is checked by a
  :class:`~rama_proxy.ProxyAuthenticator` (407 otherwise); the credentials
  never go upstream.

Plain ``http://`` requests through an ``http://`` upstream proxy go to it in
absolute-form (``absolute_form_upstream``); every other upstream kind carries
them through a tunnel. Every request and tunnel opens one
:class:`~rama_proxy.ProxyRecord` (``protocol`` ``http`` or ``connect``); an
upstream failure is logged once at INFO, a client's bad request at DEBUG.
Serve it with :meth:`HttpProxy.server_config` (no request-body cap).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import logging
import os
import ssl
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from typing import Any, Final
from urllib.parse import unquote

import anyio
from anyio.abc import ByteStream

from rama_core import Context
from rama_http import (
    Body,
    Headers,
    InvalidUri,
    RemoteProtocolError,
    Request,
    Response,
    Uri,
    UriForm,
)
from rama_http import Version as HttpVersion
from rama_http.client import (
    ClientConnection,
    ConnectionPool,
    HttpConnector,
    Limits,
    PoolKey,
    ProxyConfig,
    ProxyError,
    Timeout,
    TimeoutException,
)
from rama_http.client._connection import NoResponse
from rama_http.client._h1_engine import (
    NEED_DATA,
    BodyData,
    BodyEnd,
    ResponseHead,
    prepare_headers,
    serialize_head,
)
from rama_http.client._h1_fast import FastClientEngine
from rama_http.client._transport import IDEMPOTENT_METHODS, is_replayable
from rama_http.server import ExtendedConnectProtocol, ServerConfig
from rama_http.server._h1_stream import RewindStream
from rama_net import (
    AddressError,
    Authority,
    ConnectionLost,
    ConnectRefused,
    ProtocolStream,
    ResolveError,
    SocketInfo,
    forward,
)
from rama_net import ConnectError as NetConnectError
from rama_tls import TlsClientConfig, TlsError, tls_connect

from ._auth import ProxyAuthenticator, ProxyUser, parse_basic_credentials
from ._connect_policy import AllowAll, ConnectPolicy, ConnectTarget, Handoff, Reject, Tunnel
from ._egress import Egress, NoUpstream, StaticUpstream, redact_proxy_url
from ._errors import UpstreamError, UpstreamFailure, classify_upstream_error
from ._hop_by_hop import is_websocket_upgrade, strip_hop_by_hop
from ._record import ProxyRecord, begin_record, end_record

__all__ = ["HttpProxy", "classify_forward_error"]

_log = logging.getLogger("rama.proxy.http")

_PROXY_LIMITS: Final = Limits(
    max_connections=1024, max_connections_per_host=256, keepalive_expiry=60.0
)
_TARGET_CACHE: Final = 1024
_VIA_VERSIONS: Final = {HttpVersion.HTTP_10: "1.0", HttpVersion.HTTP_11: "1.1"}


def _text(status: int, text: str, headers: list[tuple[str, str]] | None = None) -> Response:
    resp = Response(status, headers=headers, body=Body((text + "\n").encode()))
    resp.headers.add("Content-Type", "text/plain; charset=utf-8")
    return resp


def classify_forward_error(exc: BaseException, *, upstream: str | None = None) -> UpstreamError:
    """A failure of the forwarding client -> :class:`UpstreamError` (502/504 with its cause).

    Looks through the client's typed errors (``ConnectError`` wraps the
    network, DNS and TLS causes) to the cause the client can be told.
    """
    if isinstance(exc, UpstreamError):
        return exc
    failure: UpstreamFailure | None = None
    if isinstance(exc, TimeoutException | TimeoutError):
        failure = UpstreamFailure.TIMEOUT
    else:
        seen = 0
        cause: BaseException | None = exc
        while cause is not None and seen < 8 and failure is None:
            if isinstance(cause, UpstreamError):
                failure = cause.failure
            elif isinstance(cause, ResolveError):
                failure = UpstreamFailure.DNS
            elif isinstance(cause, ConnectRefused):
                failure = UpstreamFailure.REFUSED
            elif isinstance(cause, TlsError):
                failure = UpstreamFailure.TLS
            elif isinstance(cause, TimeoutError):
                failure = UpstreamFailure.TIMEOUT
            elif isinstance(cause, NetConnectError | OSError) and not isinstance(
                cause, ConnectionLost
            ):
                classified = classify_upstream_error(cause)
                if classified.failure is not UpstreamFailure.OTHER:
                    failure = classified.failure
            cause = cause.__cause__ or cause.__context__
            seen += 1
        if failure is None:
            if isinstance(exc, ProxyError):
                f = getattr(exc, "failure", None)
                failure = f if isinstance(f, UpstreamFailure) else UpstreamFailure.PROXY
            else:
                failure = UpstreamFailure.OTHER
    err = UpstreamError(failure, str(exc) or failure.reason, upstream=upstream)
    err.__cause__ = exc
    return err


async def _no_bytes() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


class _CountedBody:
    """A body source that counts bytes into a record and ends it with the body."""

    __slots__ = ("_ctx", "_direction_out", "_done", "_inner", "_it", "_record")

    def __init__(self, inner: Body, ctx: Context | None, record: ProxyRecord, out: bool) -> None:
        self._inner = inner
        self._it: AsyncIterator[bytes] | None = None
        self._record = record
        self._ctx = ctx
        self._direction_out = out
        self._done = False

    @property
    def trailers(self) -> Headers | None:
        return self._inner.trailers

    def __aiter__(self) -> _CountedBody:
        return self

    async def __anext__(self) -> bytes:
        it = self._it
        if it is None:
            it = self._it = aiter(self._inner)
        try:
            chunk = await it.__anext__()
        except StopAsyncIteration:
            self._finish(None)
            raise
        except BaseException:
            # the server logs the failed body once; the record says which side it was
            self._finish("upstream body failed" if self._direction_out else "client body failed")
            raise
        if self._direction_out:
            self._record.bytes_out += len(chunk)
        else:
            self._record.bytes_in += len(chunk)
        return chunk

    def _finish(self, error: str | None) -> None:
        if self._done:
            return
        self._done = True
        if error is not None and self._record.error is None:
            self._record.error = error
        if self._ctx is not None:
            end_record(self._ctx, self._record)

    async def aclose(self) -> None:
        if not self._done:
            self._finish("closed before the end")
        await self._inner.aclose()


_MAX_UPGRADE_HEAD = 64 * 1024
_WS_GUID: Final = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _ws_accept(key: str) -> str:
    """RFC 6455 section 4.2.2: the Sec-WebSocket-Accept for ``key``."""
    return base64.b64encode(hashlib.sha1((key + _WS_GUID).encode("ascii")).digest()).decode()


async def _read_raw_head(stream: ByteStream) -> tuple[bytes, bytes]:
    """``(head block, bytes after it)`` of the next response; bounded to 64 KiB."""
    buf = b""
    while True:
        i = buf.find(b"\r\n\r\n")
        if i >= 0:
            return buf[: i + 4], buf[i + 4 :]
        if len(buf) > _MAX_UPGRADE_HEAD:
            raise RemoteProtocolError("response head too large", status=502)
        try:
            buf += await stream.receive()
        except anyio.EndOfStream:
            raise RemoteProtocolError("closed without a response", status=502) from None


def _parse_switching(block: bytes) -> Headers | None:
    """The header fields of a ``101`` head, or None for any other status."""
    status_line, _, rest = block[:-4].partition(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or parts[1] != b"101":
        return None
    fields: list[tuple[str, str]] = []
    for line in rest.split(b"\r\n") if rest else ():
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise RemoteProtocolError("invalid header line in a 101 answer", status=502)
        fields.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    try:
        return Headers(fields)
    except ValueError as e:
        raise RemoteProtocolError("invalid header in a 101 answer", status=502) from e


class _EngineBody:
    """The body of a non-101 answer to a relayed upgrade, read from its own connection."""

    def __init__(self, engine: FastClientEngine, stream: ByteStream, timeout: float) -> None:
        self.engine = engine
        self.stream = stream
        self.timeout = timeout
        self.trailers: Headers | None = None

    def __aiter__(self) -> _EngineBody:
        return self

    async def __anext__(self) -> bytes:
        engine = self.engine
        try:
            while True:
                ev = engine.next_event()
                if isinstance(ev, BodyData):
                    if ev.data:
                        return bytes(ev.data)
                    continue
                if isinstance(ev, BodyEnd) or ev is not NEED_DATA:
                    await self.aclose()
                    raise StopAsyncIteration
                try:
                    with anyio.fail_after(self.timeout):
                        engine.feed(await self.stream.receive())
                except anyio.EndOfStream:
                    engine.feed_eof()
        except StopAsyncIteration:
            raise
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.stream.aclose()


class _Started:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = False


def _on_abandon(
    ctx: Context, record: ProxyRecord, stream: ByteStream | None, started: _Started
) -> None:
    if started.value or record.duration is not None:
        return
    # the server never ran the upgrade (the client left before the 200/101 went out)
    if record.error is None:
        record.error = "client left before the tunnel started"
    if isinstance(stream, ProtocolStream):
        stream.abort()
    end_record(ctx, record)


def _guarded(
    ctx: Context,
    record: ProxyRecord,
    stream: ByteStream | None,
    fn: Callable[[ByteStream], Awaitable[None]],
) -> Callable[[ByteStream], Awaitable[None]]:
    """``fn`` as an ``on_upgrade`` handler whose record ends even if it never runs."""
    started = _Started()

    async def on_upgrade(client: ByteStream) -> None:
        started.value = True
        await fn(client)

    weakref.finalize(on_upgrade, _on_abandon, ctx, record, stream, started)
    return on_upgrade


class HttpProxy:
    """HTTP forward proxy and CONNECT tunnels, a ``Service[Request, Response]``.

    ``timeout`` bounds each wait on the upstream (read, write, a free pooled
    connection); connecting is bounded by the egress's ``connect_timeout``.
    ``via`` adds ``Via: 1.1 <via>`` both ways; ``forwarded`` adds
    ``Forwarded: for=...;proto=...`` and appends the client to
    ``X-Forwarded-For``. ``lazy_connect`` answers CONNECT before the egress is
    up (a policy's :class:`Tunnel` can override it per request).
    ``tunnel_idle_timeout`` closes a tunnel silent both ways that long.
    ``client_tls`` is how ``https://`` absolute-form targets are verified.
    ``absolute_form_upstream``: see the attribute.
    """

    def __init__(
        self,
        *,
        egress: Egress | None = None,
        authenticator: ProxyAuthenticator | None = None,
        connect_policy: ConnectPolicy | None = None,
        allow_connect_ports: Collection[int] | None = None,
        timeout: float = 30.0,
        via: str | None = None,
        forwarded: bool = False,
        lazy_connect: bool = False,
        tunnel_idle_timeout: float | None = 600.0,
        client_tls: TlsClientConfig | None = None,
        limits: Limits = _PROXY_LIMITS,
        upstream_http2: bool = False,
        absolute_form_upstream: bool = True,
        small_body: int = 64 * 1024,
    ) -> None:
        self.egress = egress or Egress()
        self.authenticator = authenticator
        self.connect_policy: ConnectPolicy = connect_policy or AllowAll()
        self.allow_connect_ports = (
            frozenset(allow_connect_ports) if allow_connect_ports is not None else None
        )
        self.timeout = timeout
        self.via = via
        self.forwarded = forwarded
        self.lazy_connect = lazy_connect
        self.tunnel_idle_timeout = tunnel_idle_timeout
        self.small_body = small_body
        """Response bodies with a Content-Length up to this size are read whole before
        answering (one write, the upstream connection released at once); larger
        ones, and bodies of unknown length, stream chunk by chunk."""
        self._targets: dict[tuple[str, int], Authority] = {}
        self._direct_keys: dict[tuple[str, str, int], PoolKey] = {}
        self.absolute_form_upstream = absolute_form_upstream
        """Send plain ``http://`` requests to an ``http://`` upstream proxy in absolute-form
        (as a browser would; squid and friends see, log and cache them) instead of
        through a CONNECT tunnel. Other upstreams (https, SOCKS) always tunnel."""
        self._client_timeout = Timeout(
            connect=self.egress.connect_timeout, read=timeout, write=timeout, pool=timeout
        )
        tls = client_tls or TlsClientConfig()
        self._tls_key: Any = tls
        try:
            hash(tls)
        except TypeError:
            self._tls_key = id(tls)
        self.connector = HttpConnector(
            tcp=self.egress.tcp,
            proxy_connector=self.egress.connectors,
            tls=tls,
            connect_timeout=self.egress.connect_timeout,
            http2=upstream_http2,
        )
        """Opens upstream connections: the egress's TCP and proxy connectors, then TLS."""
        self.pool = ConnectionPool(
            self.connector,
            max_connections=limits.max_connections,
            max_connections_per_host=limits.max_connections_per_host,
            idle_timeout=limits.keepalive_expiry,
        )
        """The upstream connection pool (keyed by target, upstream proxy and TLS)."""
        self._upgrade_ssl: ssl.SSLContext | None = None
        if authenticator is not None and any(
            ord(c) < 0x20 or ord(c) == 0x7F for c in authenticator.realm
        ):
            raise ValueError("the proxy realm must not contain control characters")
        self._realm_header = (
            'Basic realm="{}"'.format(authenticator.realm.replace("\\", "\\\\").replace('"', '\\"'))
            if authenticator is not None
            else ""
        )

    @staticmethod
    def server_config(**changes: Any) -> ServerConfig:
        """A :class:`~rama_http.server.ServerConfig` suited to serving a proxy.

        Request bodies are not limited in size (they stream to the upstream;
        the server's default 16 MiB cap would answer 413 to large uploads);
        ``changes`` override any field.
        """
        return dataclasses.replace(ServerConfig(max_body_size=None), **changes)

    async def aclose(self) -> None:
        """Close every pooled upstream connection."""
        await self.pool.aclose()

    # -- entry ---------------------------------------------------------------------------
    async def serve(self, ctx: Context, req: Request) -> Response:
        """Forward an absolute-form request, or open a CONNECT tunnel."""
        info = ctx.get(SocketInfo)
        connect = req.method == "CONNECT"
        record = begin_record(
            ctx,
            "connect" if connect else "http",
            client=info.peer_addr if info is not None else None,
            method=req.method,
        )
        try:
            if self.authenticator is not None:
                user = await self._authenticate(ctx, req, record)
                if user is None:
                    return self._finish(
                        ctx,
                        record,
                        _text(
                            407,
                            "proxy authentication required",
                            [("Proxy-Authenticate", self._realm_header)],
                        ),
                        "proxy authentication required",
                    )
                ctx.insert(user)
                record.user = user.name
            if connect:
                return await self._connect(ctx, req, record)
            return await self._forward(ctx, req, record)
        except BaseException as e:
            if record.duration is None:
                if record.error is None:
                    record.error = "internal error" if isinstance(e, Exception) else "cancelled"
                end_record(ctx, record)
            raise

    async def _authenticate(
        self, ctx: Context, req: Request, record: ProxyRecord
    ) -> ProxyUser | None:
        assert self.authenticator is not None
        value = req.headers.get("proxy-authorization")
        if value is None:
            return None
        creds = parse_basic_credentials(value)
        if creds is None:
            return None
        return await self.authenticator.authenticate(creds[0], creds[1], peer=record.client)

    @staticmethod
    def _finish(
        ctx: Context, record: ProxyRecord, resp: Response, error: str | None = None
    ) -> Response:
        record.status = resp.status
        if error is not None:
            record.error = error
            if resp.status < 500:  # the client's doing (5xx are logged by the caller)
                _log.debug("%s %s: %d %s", record.method, record.target, resp.status, error)
        end_record(ctx, record)
        return resp

    def _fail(self, ctx: Context, record: ProxyRecord, err: UpstreamError) -> Response:
        failure = err.failure
        if err.upstream is not None:
            record.upstream = err.upstream
        _log.info("%s %s: %s (%s)", record.method, record.target, failure.reason, err)
        return self._finish(ctx, record, _text(failure.http_status, failure.reason), failure.reason)

    # -- forwarding ----------------------------------------------------------------------
    async def _forward(self, ctx: Context, req: Request, record: ProxyRecord) -> Response:
        try:
            uri = req.uri
        except InvalidUri:
            record.target = req.target[:200]
            return self._finish(ctx, record, _text(400, "invalid request target"), "bad target")
        record.target = req.target if req.version is not HttpVersion.HTTP_2 else str(uri)
        if uri.host is None or uri.scheme is None:
            return self._finish(
                ctx,
                record,
                _text(400, "not a proxy request: an absolute URL is expected"),
                "not a proxy request",
            )
        scheme = uri.scheme
        if scheme not in ("http", "https"):
            return self._finish(ctx, record, _text(400, "unsupported URL scheme"), "bad scheme")
        host = uri.host.lower()
        port = uri.effective_port or (443 if scheme == "https" else 80)
        target = self._targets.get((host, port))
        if target is None:
            try:
                target = Authority.parse(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
            except AddressError:
                return self._finish(ctx, record, _text(400, "invalid host"), "bad host")
            if len(self._targets) >= _TARGET_CACHE:
                self._targets.clear()
            self._targets[(host, port)] = target

        websocket = (
            req.method == "GET"
            and "upgrade" in req.headers._keys
            and is_websocket_upgrade(req.headers)
        )
        headers = strip_hop_by_hop(req.headers, keep_upgrade=websocket)
        host_value = headers.get("host")
        expected_host = uri.authority or host
        needs_copy = (
            self.via is not None
            or self.forwarded
            or (host_value is not None and host_value.lower() != expected_host.lower())
        )
        if needs_copy and headers is req.headers:
            headers = headers.copy()
        if host_value is None:
            # h2 (``:authority``) and HTTP/1.0 requests: Host first, from the target
            headers = Headers.from_parsed(
                [("Host", expected_host), *headers._items], ["host", *headers._keys]
            )
        elif host_value.lower() != expected_host.lower():
            # RFC 9112 section 3.2.2: the target's authority wins over a stale Host
            headers.set("Host", expected_host)
        if self.via is not None:
            headers.add("Via", f"{_VIA_VERSIONS.get(req.version, '2')} {self.via}")
        if self.forwarded and record.client is not None:
            ip = str(record.client.ip)
            node = f'"[{ip}]"' if ":" in ip else ip
            headers.add("Forwarded", f"for={node};proto={scheme}")
            xff = headers.get("x-forwarded-for")
            if xff:
                headers.set("X-Forwarded-For", f"{xff}, {ip}")
            else:
                headers.add("X-Forwarded-For", ip)
        if websocket:
            return await self._relay_upgrade(ctx, req, record, uri, target, headers)

        body = req.body
        data = body.bytes_now()
        if data is not None:
            record.bytes_in = len(data)
        else:
            body = Body(stream=_CountedBody(body, None, record, False), length=body.length)

        selector = self.egress.selector
        candidates: Sequence[ProxyConfig]
        if type(selector) is NoUpstream:
            candidates = ()  # the common case: no await for an empty answer
        else:
            try:
                candidates = list(await selector.select(ctx, target))
            except UpstreamError as e:
                return self._fail(ctx, record, e)
            candidates = candidates[: self.egress.max_attempts]
        user = ctx.get(ProxyUser)
        fresh = user is not None and user.filter.new_connection
        timeout = self._client_timeout
        tls_key = self._tls_key if scheme == "https" else None
        conn: ClientConnection | None = None
        last: UpstreamError | None = None
        absolute = False
        for upstream in candidates or (None,):
            label = redact_proxy_url(upstream.url) if upstream is not None else None
            absolute = (
                upstream is not None
                and scheme == "http"
                and self.absolute_form_upstream
                and (upstream.uri.scheme or "http").lower() == "http"
            )
            if absolute:
                assert upstream is not None
                # a plain request to an HTTP upstream proxy: sent to it in absolute-form
                proxy_at = upstream.uri
                key = PoolKey(
                    "http",
                    (proxy_at.host or "").lower(),
                    upstream.authority.port,
                    None,
                    None,
                    ("absolute-form", upstream.url),
                )
            else:
                if upstream is None:
                    dk = (scheme, host, port)
                    cached = self._direct_keys.get(dk)
                    if cached is None:
                        if len(self._direct_keys) >= _TARGET_CACHE:
                            self._direct_keys.clear()
                        cached = self._direct_keys[dk] = PoolKey(scheme, host, port, None, tls_key)
                    key = cached
                else:
                    key = PoolKey(scheme, host, port, upstream, tls_key)
            try:
                conn = await self.pool.acquire(
                    ctx,
                    key,
                    pool_timeout=timeout.pool,
                    connect_timeout=timeout.connect,
                    fresh=fresh,
                )
            except Exception as e:
                last = classify_forward_error(e, upstream=label)
                if upstream is not None:
                    if (
                        not isinstance(e, ProxyError)
                        and last.failure is not UpstreamFailure.TIMEOUT
                    ):
                        last = UpstreamError(
                            UpstreamFailure.PROXY, f"upstream proxy {label}: {e}", upstream=label
                        )
                    self.egress.selector.report(upstream, False)
                continue
            if upstream is not None:
                self.egress.selector.report(upstream, True)
            record.upstream = label
            break
        if conn is None:
            assert last is not None
            return self._fail(ctx, record, last)
        if absolute:
            assert upstream is not None
            userinfo = upstream.uri.userinfo
            if userinfo:
                if headers is req.headers:
                    headers = headers.copy()
                token = base64.b64encode(unquote(userinfo).encode()).decode("ascii")
                headers.add("Proxy-Authorization", f"Basic {token}")
            target_form = f"http://{uri.authority}{uri.path_and_query}"
        else:
            target_form = uri.path_and_query
        out = Request._trusted(req.method, target_form, headers, body, HttpVersion.HTTP_11)

        try:
            try:
                resp = await conn.send(out, timeout)
            except NoResponse as e:
                # a reused connection the upstream had closed: once more on a fresh one
                if not (req.method in IDEMPOTENT_METHODS and is_replayable(out)):
                    raise e.error from e.__cause__
                conn = await self.pool.acquire(
                    ctx, key, pool_timeout=timeout.pool, connect_timeout=timeout.connect, fresh=True
                )
                try:
                    resp = await conn.send(out, timeout)
                except NoResponse as e2:
                    raise e2.error from e2.__cause__
        except RemoteProtocolError as e:
            _log.info("%s %s: invalid response from upstream: %s", req.method, record.target, e)
            return self._finish(
                ctx, record, _text(502, "invalid response from upstream"), "invalid response"
            )
        except Exception as e:
            return self._fail(ctx, record, classify_forward_error(e, upstream=record.upstream))

        resp_headers = strip_hop_by_hop(resp.headers)
        if resp.body.length is None and "content-length" in resp_headers._keys:
            # chunked upstream (Transfer-Encoding wins, RFC 9112 section 6.3): its
            # Content-Length is wrong by definition, and passing it on beside our own
            # framing would desynchronize (or smuggle through) the next hop
            if resp_headers is resp.headers:
                resp_headers = resp_headers.copy()
            resp_headers.remove("content-length")
        if self.via is not None:
            if resp_headers is resp.headers:
                resp_headers = resp_headers.copy()
            resp_headers.add("Via", f"{_VIA_VERSIONS.get(resp.version, '1.1')} {self.via}")
        resp.headers = resp_headers
        record.status = resp.status
        rbody = resp.body
        if (
            req.method == "HEAD"
            and resp.status >= 200
            and resp.status not in (204, 304)
            and "content-length" not in resp_headers._keys
        ):
            # A HEAD answer announces the framing the GET would get through this proxy:
            # without a length that is chunked (never a made-up Content-Length: 0).
            with contextlib.suppress(Exception):
                await rbody.read()  # nothing, but it gives the connection back to the pool
            resp.body = Body(stream=_no_bytes(), length=None)
            end_record(ctx, record)
            return resp
        rdata = rbody.bytes_now()
        length = rbody.length
        if rdata is None and length is not None and length <= self.small_body:
            # A small body of known length (usually in the same read as the head):
            # taken whole, so the answer goes out in one write and the upstream
            # connection is free at once. Larger or unframed bodies stream.
            try:
                rdata = await rbody.read()
            except Exception as e:
                with contextlib.suppress(Exception):
                    await rbody.aclose()
                if isinstance(e, RemoteProtocolError):
                    return self._finish(
                        ctx,
                        record,
                        _text(502, "invalid response from upstream"),
                        "invalid response",
                    )
                return self._fail(ctx, record, classify_forward_error(e, upstream=record.upstream))
            resp.body = Body(rdata)
        if rdata is not None:
            record.bytes_out = len(rdata)
            end_record(ctx, record)
        else:
            counted = _CountedBody(rbody, ctx, record, True)
            resp.body = Body(stream=counted, length=rbody.length)
        return resp

    # -- WebSocket upgrades -------------------------------------------------------------
    async def _relay_upgrade(
        self,
        ctx: Context,
        req: Request,
        record: ProxyRecord,
        uri: Uri,
        target: Authority,
        headers: Headers,
        *,
        ws_key: str | None = None,
    ) -> Response:
        """A WebSocket handshake in absolute-form: relayed on its own egress connection.

        The client pool does not switch protocols, so the handshake goes out on
        a connection of its own; a ``101`` answer turns both sides into a relay,
        any other answer is passed back (its body streamed) and the connection closed.
        With ``ws_key`` the client spoke RFC 8441 (an h2 extended CONNECT): the
        handshake went out as an HTTP/1.1 upgrade with that key, the origin's
        ``Sec-WebSocket-Accept`` is checked and the client gets a ``200``.
        """
        method = "GET" if ws_key is not None else req.method
        try:
            conn = await self.egress.serve(ctx, target)
        except UpstreamError as e:
            return self._fail(ctx, record, e)
        record.upstream = conn.upstream_label
        upstream: ByteStream = conn.stream
        try:
            if uri.scheme == "https":
                upstream = await tls_connect(
                    upstream, uri.host, self.connector.tls_config, ssl_context=self._ssl_context()
                )
            out, _ = prepare_headers(method, uri.authority or "", headers.items(), 0)
            with anyio.fail_after(self.timeout):
                await upstream.send(serialize_head(method, uri.path_and_query, out))
                block, leftover = await _read_raw_head(upstream)
            switching = _parse_switching(block)
            engine: FastClientEngine | None = None
            head: ResponseHead | None = None
            if switching is None:
                engine = FastClientEngine()
                engine.request(method, uri.path_and_query, out, b"")
                engine.feed(block + leftover)
                ev = engine.next_event()
                while not isinstance(ev, ResponseHead):  # 1xx interim answers
                    if ev is NEED_DATA:
                        with anyio.fail_after(self.timeout):
                            engine.feed(await upstream.receive())
                    ev = engine.next_event()
                head = ev
        except BaseException as e:
            with contextlib.suppress(Exception):
                await upstream.aclose()
            if not isinstance(e, Exception):
                raise
            if isinstance(e, RemoteProtocolError):
                _log.info("%s %s: invalid upgrade answer: %s", req.method, record.target, e)
                return self._finish(
                    ctx, record, _text(502, "invalid response from upstream"), "invalid response"
                )
            return self._fail(ctx, record, classify_forward_error(e, upstream=record.upstream))
        if switching is not None:
            status = 101
            resp_headers = strip_hop_by_hop(switching, keep_upgrade=ws_key is None)
            if ws_key is not None:
                if switching.get("sec-websocket-accept") != _ws_accept(ws_key):
                    with contextlib.suppress(Exception):
                        await upstream.aclose()
                    _log.info("%s: wrong Sec-WebSocket-Accept from upstream", record.target)
                    return self._finish(
                        ctx, record, _text(502, "invalid response from upstream"), "bad accept"
                    )
                status = 200  # RFC 8441 section 5: the CONNECT stream is the WebSocket
                resp_headers.remove("sec-websocket-accept")
            record.status = status

            async def relay(client: ByteStream) -> None:
                try:
                    if leftover:
                        await client.send(leftover)
                        record.bytes_out += len(leftover)
                    await self._relay(client, upstream, record)
                finally:
                    end_record(ctx, record)

            return Response(
                status, headers=resp_headers, on_upgrade=_guarded(ctx, record, upstream, relay)
            )
        assert head is not None
        assert engine is not None
        record.status = head.status
        resp = Response(
            head.status, headers=strip_hop_by_hop(Headers.from_parsed(head.headers, head.keys))
        )
        source = _EngineBody(engine, upstream, self.timeout)
        resp.body = Body(
            stream=_CountedBody(Body(stream=source, length=head.content_length), ctx, record, True),
            length=head.content_length,
        )
        return resp

    def _ssl_context(self) -> ssl.SSLContext:
        if self._upgrade_ssl is None:
            self._upgrade_ssl = self.connector.tls_config.build_ssl_context()
        return self._upgrade_ssl

    # -- CONNECT -------------------------------------------------------------------------
    async def _connect(self, ctx: Context, req: Request, record: ProxyRecord) -> Response:
        record.target = req.target[:300]
        try:
            uri = req.uri
        except InvalidUri:
            return self._finish(ctx, record, _text(400, "invalid CONNECT target"), "bad target")
        protocol = ctx.get(ExtendedConnectProtocol)
        if protocol is not None or uri.form is UriForm.ABSOLUTE:
            return await self._extended_connect(ctx, req, record, uri, protocol)
        if uri.host is None or uri.port is None:
            return self._finish(ctx, record, _text(400, "invalid CONNECT target"), "bad target")
        try:
            target = Authority.parse(
                f"[{uri.host}]:{uri.port}" if ":" in uri.host else f"{uri.host}:{uri.port}"
            )
        except AddressError:
            return self._finish(ctx, record, _text(400, "invalid CONNECT target"), "bad target")
        record.target = str(target)
        if self.allow_connect_ports is not None and target.port not in self.allow_connect_ports:
            return self._finish(
                ctx, record, _text(403, "CONNECT to this port is not allowed"), "port not allowed"
            )
        decision = await self.connect_policy.decide(ctx, target, req)
        if isinstance(decision, Reject):
            status = decision.status if 400 <= decision.status < 500 else 403
            return self._finish(ctx, record, _text(status, decision.reason), decision.reason)
        if isinstance(decision, Handoff):
            ctx.insert(ConnectTarget(target, req))
            service = decision.service

            async def handoff(stream: ByteStream) -> None:
                try:
                    await service.serve(ctx, stream)
                finally:
                    end_record(ctx, record)

            record.status = 200
            return Response(
                200,
                reason="Connection established",
                on_upgrade=_guarded(ctx, record, None, handoff),
            )
        assert isinstance(decision, Tunnel)
        egress = self.egress
        if decision.upstream is not None:
            egress = Egress(
                egress.tcp,
                selector=StaticUpstream(decision.upstream),
                connectors=egress.connectors,
                connect_timeout=egress.connect_timeout,
                max_attempts=1,
            )
        lazy = self.lazy_connect if decision.lazy is None else decision.lazy
        if lazy:

            async def lazy_tunnel(stream: ByteStream) -> None:
                try:
                    try:
                        conn = await egress.serve(ctx, target)
                    except UpstreamError as e:
                        record.status = e.failure.http_status
                        record.error = e.failure.reason
                        if e.upstream is not None:
                            record.upstream = e.upstream
                        _log.info("CONNECT %s: %s (%s)", target, e.failure.reason, e)
                        with contextlib.suppress(Exception):
                            await stream.aclose()
                        return
                    record.upstream = conn.upstream_label
                    await self._relay(stream, conn.stream, record)
                finally:
                    end_record(ctx, record)

            record.status = 200
            return Response(
                200,
                reason="Connection established",
                on_upgrade=_guarded(ctx, record, None, lazy_tunnel),
            )
        try:
            conn = await egress.serve(ctx, target)
        except UpstreamError as e:
            return self._fail(ctx, record, e)
        record.upstream = conn.upstream_label
        record.status = 200
        upstream_stream = conn.stream

        async def tunnel(stream: ByteStream) -> None:
            try:
                await self._relay(stream, upstream_stream, record)
            finally:
                end_record(ctx, record)

        return Response(
            200,
            reason="Connection established",
            on_upgrade=_guarded(ctx, record, upstream_stream, tunnel),
        )

    async def _extended_connect(
        self,
        ctx: Context,
        req: Request,
        record: ProxyRecord,
        uri: Uri,
        protocol: str | None,
    ) -> Response:
        """RFC 8441 (h2 extended CONNECT): a WebSocket to ``uri``, relayed as an h1 upgrade."""
        record.target = str(uri)[:300]
        if (protocol or "").lower() != "websocket" or uri.scheme not in ("http", "https"):
            return self._finish(
                ctx, record, _text(501, "unsupported CONNECT protocol"), "bad :protocol"
            )
        if uri.host is None:
            return self._finish(ctx, record, _text(400, "invalid CONNECT target"), "bad target")
        host = uri.host.lower()
        port = uri.effective_port or (443 if uri.scheme == "https" else 80)
        try:
            target = Authority.parse(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        except AddressError:
            return self._finish(ctx, record, _text(400, "invalid CONNECT target"), "bad target")
        if self.allow_connect_ports is not None and port not in self.allow_connect_ports:
            return self._finish(
                ctx, record, _text(403, "CONNECT to this port is not allowed"), "port not allowed"
            )
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        fields: list[tuple[str, str]] = [("Host", uri.authority or host)]
        for name, value in strip_hop_by_hop(req.headers).items():
            k = name.lower()
            if k in ("host", "sec-websocket-key", "sec-websocket-accept"):
                continue
            fields.append((name, value))
        fields += [("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Key", key)]
        if not any(n.lower() == "sec-websocket-version" for n, _ in fields):
            fields.append(("Sec-WebSocket-Version", "13"))
        if self.via is not None:
            fields.append(("Via", f"2 {self.via}"))
        return await self._relay_upgrade(ctx, req, record, uri, target, Headers(fields), ws_key=key)

    async def _relay(self, client: ByteStream, upstream: ByteStream, record: ProxyRecord) -> None:
        early = 0
        try:
            if isinstance(client, RewindStream):
                # bytes the client sent right behind its CONNECT head: pass them on
                # first, then relay the raw stream (so plain TCP still splices)
                prefix = client.pending
                client = client.inner
                if prefix:
                    with anyio.fail_after(self.timeout):
                        await upstream.send(prefix)
                    early = len(prefix)
            stats = await forward(client, upstream, idle_timeout=self.tunnel_idle_timeout)
        except BaseException as e:
            with anyio.CancelScope(shield=True):
                for s in (client, upstream):
                    with contextlib.suppress(Exception):
                        await s.aclose()
            if isinstance(e, (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)):
                record.error = "connection lost"  # the early bytes could not go upstream
                return
            if isinstance(e, TimeoutError):
                record.error = "upstream timed out"
                return
            raise
        record.bytes_in = early + stats.left_to_right
        record.bytes_out += stats.right_to_left
        if stats.idle_timed_out:
            record.error = "idle timeout"
        elif stats.error is not None:
            record.error = "connection lost"
