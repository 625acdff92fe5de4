"""The HTTP side of the MITM: a ``Service[Request, Response]`` stack served to the client.

Outermost to innermost (each a Service; the hooks are Layers):

- :class:`FlowService` makes the :class:`HttpFlow` of each request, puts it in
  the Context, reports the response (after the hooks) and the end of the
  exchange to the observer;
- :class:`HookLayer` (one per :class:`MitmHooks`): request head/body hooks,
  then the inner service, then response head/body hooks; bodies are only
  buffered (bounded) when a hook asks;
- :class:`ObserveService` reports the request as sent and counts body bytes;
- :class:`UpstreamRelay` sends the request over the connection(s) the MITM
  opened to the server (h1 or h2, as negotiated) and relays WebSocket upgrades.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import anyio
from anyio.abc import ByteStream
from wsproto.utilities import generate_accept_token

from rama_core import Context, Service
from rama_http import Body, BodyTooLarge, Headers, Request, Response, Version
from rama_http.client import Http1Connection, Http2Connection, Timeout
from rama_http.client._connect import engine_factory
from rama_http.client._connection import ClientConnection, NoResponse
from rama_http.server import ExtendedConnectProtocol
from rama_http.ws import WebSocket, WebSocketClosed, WebSocketConfig

from .._hop_by_hop import is_websocket_upgrade, strip_hop_by_hop
from ._coding import DecodedTooLarge, content_codings, decode_body, encode_body
from ._flow import HttpFlow, MitmConnection, MitmHooks, MitmObserver, WebSocketMessage

__all__ = [
    "FlowService",
    "HookLayer",
    "HookService",
    "ObserveService",
    "UpstreamConnections",
    "UpstreamRelay",
]

_log = logging.getLogger("rama.proxy.mitm")

Opener = Callable[[], Awaitable[tuple[ByteStream, str | None]]]
"""Opens one more stream to the server: ``(stream, negotiated ALPN)``."""

_new_h1_engine = engine_factory("fast")
_H2_WS_DROP = frozenset(
    {"upgrade", "connection", "sec-websocket-key", "sec-websocket-version", "content-length"}
)
_MAX_WS_HEAD = 64 * 1024


def _text(status: int, message: str) -> Response:
    return Response(
        status,
        headers=[("Content-Type", "text/plain; charset=utf-8"), ("Connection", "close")],
        body=(message + "\n").encode(),
    )


class UpstreamConnections:
    """The HTTP connections of one intercepted client connection to its server.

    Starts with the stream the MITM opened eagerly; more are opened with
    ``opener`` when that one is busy (h1 pipelining is not used) or closed.
    """

    def __init__(
        self,
        opener: Opener,
        *,
        authority: str,
        scheme: str,
        first: tuple[ByteStream, str | None] | None = None,
        max_connections: int = 32,
        h1_opener: Opener | None = None,
    ) -> None:
        self.opener = opener
        self.h1_opener = h1_opener or opener
        """Opens a stream that speaks HTTP/1.1 (for a WebSocket an h2 client asked for)."""
        self.authority = authority
        self.scheme = scheme
        self.max_connections = max_connections
        self._fresh: list[tuple[ByteStream, str | None]] = [first] if first is not None else []
        self._conns: list[ClientConnection] = []
        self.alpn: str | None = first[1] if first is not None else None

    def _wrap(self, stream: ByteStream, alpn: str | None) -> ClientConnection:
        if alpn == "h2":
            return Http2Connection(stream, authority=self.authority, scheme=self.scheme)
        return Http1Connection(stream, _new_h1_engine(), authority=self.authority)

    async def _open(self) -> tuple[ByteStream, str | None]:
        if self._fresh:
            return self._fresh.pop()
        return await self.opener()

    async def acquire(self) -> ClientConnection:
        """A connection with a free slot (reserved), opening one if needed."""
        self._conns = [c for c in self._conns if not c.is_closed]
        for conn in self._conns:
            if not conn.is_dead_at_idle() and conn.reserve():
                return conn
        if len(self._conns) >= self.max_connections:
            raise NoResponse(RuntimeError("too many upstream connections"))
        stream, alpn = await self._open()
        conn = self._wrap(stream, alpn)
        self._conns.append(conn)
        conn.reserve()
        return conn

    async def take_stream(self) -> ByteStream:
        """A raw HTTP/1.1 stream to the server, no longer pooled (for a WebSocket)."""
        if self.alpn == "h2":
            return (await self.h1_opener())[0]
        if self._fresh:
            return self._fresh.pop()[0]
        for conn in self._conns:
            if (
                isinstance(conn, Http1Connection)
                and not conn.is_closed
                and not conn.in_flight
                and not conn.is_dead_at_idle()
            ):
                self._conns.remove(conn)
                return conn.stream
        return (await self.opener())[0]

    async def aclose(self) -> None:
        """Close every connection (shielded: runs in cleanup)."""
        with anyio.CancelScope(shield=True):
            for stream, _ in self._fresh:
                with contextlib.suppress(Exception):
                    await stream.aclose()
            for conn in self._conns:
                with contextlib.suppress(Exception):
                    await conn.aclose()
        self._fresh.clear()
        self._conns.clear()


def _origin_form(target: str) -> str:
    if target.startswith(("http://", "https://")):
        rest = target.split("://", 1)[1]
        slash = rest.find("/")
        return rest[slash:] if slash >= 0 else "/"
    return target or "/"


class UpstreamRelay:
    """Sends each request over :class:`UpstreamConnections`; relays WebSocket upgrades."""

    def __init__(
        self,
        upstream: UpstreamConnections,
        *,
        hooks: Sequence[MitmHooks] = (),
        observer: MitmObserver | None = None,
        timeout: float = 30.0,
        websocket_config: WebSocketConfig | None = None,
    ) -> None:
        self.upstream = upstream
        self.hooks = tuple(hooks)
        self.observer = observer
        self.timeout = Timeout(connect=timeout, read=timeout, write=timeout, pool=timeout)
        self.websocket_config = websocket_config or WebSocketConfig()

    def _outbound(self, req: Request, flow: HttpFlow | None, *, upgrade: bool) -> Request:
        headers = strip_hop_by_hop(req.headers, keep_upgrade=upgrade)
        if headers is req.headers:
            headers = headers.copy()
        if "host" not in headers:
            authority = (flow.authority if flow is not None else "") or self.upstream.authority
            items = [("Host", authority), *headers.items()]
            headers = Headers(items)
        if upgrade:
            # messages are relayed decoded: no permessage-deflate between the sides
            headers.remove("sec-websocket-extensions")
        return Request(req.method, _origin_form(req.target), headers=headers, body=req.body)

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Relay ``req`` to the server; 502 with a short cause when that fails."""
        flow = ctx.get(HttpFlow)
        if req.method == "CONNECT":
            protocol = ctx.get(ExtendedConnectProtocol)
            if protocol is not None and protocol.lower() == "websocket":
                return await self._websocket(ctx, req, flow, h2_client=True)
            return _text(501, "CONNECT inside an intercepted connection is not supported")
        if is_websocket_upgrade(req.headers):
            return await self._websocket(ctx, req, flow, h2_client=False)
        out = self._outbound(req, flow, upgrade=False)
        for attempt in (1, 2):
            try:
                conn = await self.upstream.acquire()
            except NoResponse as e:
                return self._failed(flow, f"cannot reach the server: {e.error}")
            except Exception as e:
                return self._failed(flow, f"cannot reach the server ({type(e).__name__})")
            try:
                resp = await conn.send(out, self.timeout)
            except NoResponse as e:
                # a kept-alive connection the server had closed: once more on a new one
                if attempt == 1 and out.body.bytes_now() is not None:
                    continue
                return self._failed(flow, f"the server closed the connection ({e.error})")
            except Exception as e:
                return self._failed(flow, f"the server failed ({type(e).__name__}: {e})")
            break
        resp.headers = strip_hop_by_hop(resp.headers)
        return resp

    def _failed(self, flow: HttpFlow | None, why: str) -> Response:
        _log.info("MITM upstream request failed: %s", why)
        if flow is not None:
            flow.error = why
        return _text(502, "bad gateway: " + why.split(":", 1)[0])

    # -- WebSocket over HTTP/1.1 Upgrade --------------------------------------------------------
    async def _websocket(
        self, ctx: Context, req: Request, flow: HttpFlow | None, *, h2_client: bool
    ) -> Response:
        """Relay a WebSocket handshake over HTTP/1.1 to the server, then its messages.

        An h2 client's extended CONNECT (RFC 8441) becomes an HTTP/1.1 Upgrade
        on a connection of its own (the upstream h2 client has no extended
        CONNECT); the client gets the h2 answer (200).
        """
        out = self._outbound(req, flow, upgrade=True)
        key = ""
        if h2_client:
            headers = Headers([(n, v) for n, v in out.headers if n.lower() not in _H2_WS_DROP])
            key = base64.b64encode(os.urandom(16)).decode()
            headers.add("Upgrade", "websocket")
            headers.add("Connection", "Upgrade")
            headers.add("Sec-WebSocket-Key", key)
            headers.add("Sec-WebSocket-Version", "13")
            out = Request("GET", out.target, headers=headers)
        try:
            stream = await self.upstream.take_stream()
        except Exception as e:
            return self._failed(flow, f"cannot reach the server ({type(e).__name__})")
        lines = [f"{out.method} {out.target} HTTP/1.1"] + [f"{n}: {v}" for n, v in out.headers]
        try:
            with anyio.fail_after(self.timeout.read):
                await stream.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
                buf = b""
                while b"\r\n\r\n" not in buf:
                    if len(buf) > _MAX_WS_HEAD:
                        raise ValueError("answer head too large")
                    buf += await stream.receive()
            head, _, rest = buf.partition(b"\r\n\r\n")
            status, headers = _parse_head(head)
        except Exception as e:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await stream.aclose()
            return self._failed(flow, f"WebSocket handshake with the server failed ({e})")
        headers = strip_hop_by_hop(headers, keep_upgrade=status == 101)
        if status != 101:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await stream.aclose()
            headers.remove("content-length")
            headers.remove("transfer-encoding")
            return Response(status, headers=headers, body=rest if status >= 200 else b"")
        if h2_client and headers.get("sec-websocket-accept") != generate_accept_token(
            key.encode()
        ).decode("ascii"):
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await stream.aclose()
            return self._failed(flow, "WebSocket handshake with the server failed (bad accept)")
        if flow is not None:
            flow.websocket = True
        subprotocol = headers.get("sec-websocket-protocol")
        relay = _WebSocketRelay(self, flow, subprotocol, self.websocket_config)

        async def run(client_stream: ByteStream) -> None:
            await relay.run(client_stream, stream, rest)

        if h2_client:
            answer = [("sec-websocket-protocol", subprotocol)] if subprotocol else []
            return Response(200, headers=answer, on_upgrade=run)
        return Response(101, headers=headers, on_upgrade=run)


def _parse_head(head: bytes) -> tuple[int, Headers]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ValueError("invalid status line")
    headers = Headers()
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ValueError("invalid header line")
        headers.add(name.strip(), value.strip())
    return int(parts[1]), headers


class _WebSocketRelay:
    """Pumps messages both ways through the hooks until either side closes."""

    def __init__(
        self,
        relay: UpstreamRelay,
        flow: HttpFlow | None,
        subprotocol: str | None,
        config: WebSocketConfig,
    ) -> None:
        self.relay = relay
        self.flow = flow
        self.subprotocol = subprotocol
        self.config = config

    async def _apply(self, message: WebSocketMessage) -> list[WebSocketMessage]:
        messages = [message]
        flow = self.flow
        if flow is None:
            return messages
        for hooks in self.relay.hooks:
            out: list[WebSocketMessage] = []
            for m in messages:
                r = await hooks.websocket_message(flow, m)
                if r is None:
                    continue
                if isinstance(r, WebSocketMessage):
                    out.append(r)
                else:
                    out.extend(r)
            messages = out
        return messages

    async def run(self, client_stream: ByteStream, server_stream: ByteStream, rest: bytes) -> None:
        client = WebSocket(
            client_stream, client=False, subprotocol=self.subprotocol, config=self.config
        )
        server = WebSocket(
            server_stream,
            client=True,
            subprotocol=self.subprotocol,
            config=self.config,
            trailing_data=rest,
        )
        sides = {True: server, False: client}  # where a message from_client=... goes
        observer = self.relay.observer

        async def pump(source: WebSocket, from_client: bool, tg: anyio.abc.TaskGroup) -> None:
            try:
                async for content in source:
                    for m in await self._apply(WebSocketMessage(from_client, content)):
                        await sides[m.from_client].send(m.content)
                        if observer is not None and self.flow is not None:
                            observer.websocket_message(self.flow, m)
            except (WebSocketClosed, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass
            code = source.close_code or 1000
            other = sides[from_client]
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                if not other.closed:
                    await other.close(code if code not in (1005, 1006, 1015) else 1000)
            tg.cancel_scope.cancel()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pump, client, True, tg)
                tg.start_soon(pump, server, False, tg)
        finally:
            with anyio.CancelScope(shield=True):
                for s in (server_stream, client_stream):
                    with contextlib.suppress(Exception):
                        await s.aclose()


class ObserveService:
    """Reports the request as it goes upstream and counts both bodies' bytes."""

    def __init__(self, inner: Service[Request, Response], observer: MitmObserver | None) -> None:
        self.inner = inner
        self.observer = observer

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Observe, then call the inner service."""
        flow = ctx.get(HttpFlow)
        if flow is None:
            return await self.inner.serve(ctx, req)
        flow.request = req
        observer = self.observer
        body = req.body
        if observer is not None and not body.is_empty:
            req.body = Body(stream=_counted(body, flow, True, observer), length=body.length)
        flow.request_sent = anyio.current_time()
        if observer is not None:
            observer.request(flow)
        resp = await self.inner.serve(ctx, req)
        flow.response_started = anyio.current_time()
        return resp


async def _counted(
    body: Body, flow: HttpFlow, request: bool, observer: MitmObserver | None
) -> AsyncIterator[bytes]:
    try:
        async for chunk in body:
            if request:
                flow.request_bytes += len(chunk)
                if observer is not None:
                    observer.request_body(flow, chunk)
            else:
                flow.response_bytes += len(chunk)
                if observer is not None:
                    observer.response_body(flow, chunk)
            yield chunk
    finally:
        await body.aclose()


class FlowService:
    """Creates the :class:`HttpFlow` of each request and reports its end."""

    def __init__(
        self,
        inner: Service[Request, Response],
        connection: MitmConnection,
        *,
        scheme: str,
        authority: str,
        observer: MitmObserver | None = None,
    ) -> None:
        self.inner = inner
        self.connection = connection
        self.scheme = scheme
        self.authority = authority
        self.observer = observer

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Run the exchange; the flow ends when the response body has been sent."""
        authority = req.headers.get("host") or self.authority
        if req.version is Version.HTTP_2:
            with contextlib.suppress(Exception):
                authority = req.uri.authority or authority
        flow = HttpFlow(self.connection, req, scheme=self.scheme, authority=authority)
        ctx = ctx.fork()
        ctx.insert(flow)
        observer = self.observer
        try:
            resp = await self.inner.serve(ctx, flow.request)
        except BaseException as e:
            flow.error = flow.error or f"{type(e).__name__}"
            flow.finished = anyio.current_time()
            if observer is not None:
                observer.flow_finished(flow)
            raise
        flow.response = resp
        if flow.response_started is None:
            flow.response_started = anyio.current_time()
        if observer is not None:
            observer.response(flow)
        if observer is None:
            return resp  # nobody counts: the body goes through untouched (no per-chunk work)
        if resp.body.is_empty or resp.on_upgrade is not None:
            flow.finished = anyio.current_time()
            if observer is not None:
                observer.flow_finished(flow)
            return resp
        resp.body = Body(
            stream=_finishing(resp.body, flow, observer),
            length=resp.body.length,
            trailers=resp.body.trailers,
        )
        return resp


async def _finishing(
    body: Body, flow: HttpFlow, observer: MitmObserver | None
) -> AsyncIterator[bytes]:
    try:
        async for chunk in _counted(body, flow, False, observer):
            yield chunk
    except BaseException as e:
        flow.error = flow.error or f"response body failed ({type(e).__name__})"
        raise
    finally:
        flow.finished = anyio.current_time()
        if observer is not None:
            observer.flow_finished(flow)


class HookService:
    """Runs one :class:`MitmHooks` around the inner service (see :class:`MitmHooks`)."""

    def __init__(
        self, inner: Service[Request, Response], hooks: MitmHooks, *, max_body_size: int
    ) -> None:
        self.inner = inner
        self.hooks = hooks
        self.max_body_size = max_body_size

    async def _buffer(self, body: Body, headers: Headers) -> tuple[bytes, list[str] | None]:
        data = await body.read(self.max_body_size)
        codings = content_codings(headers) if self.hooks.decode_bodies else None
        if codings:
            try:
                data = decode_body(data, codings, self.max_body_size)
            except DecodedTooLarge:
                raise
            except Exception:
                return data, None  # undecodable: the hook sees the raw bytes
        return data, codings

    @staticmethod
    def _replace_body(headers: Headers, data: bytes, codings: list[str] | None) -> Body:
        if codings:
            data = encode_body(data, codings)
        headers.remove("transfer-encoding")
        headers.set("Content-Length", str(len(data)))
        return Body(data)

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Request hooks, the inner service, response hooks."""
        flow = ctx.get(HttpFlow)
        if flow is None:
            return await self.inner.serve(ctx, req)
        flow.request = req
        hooks = self.hooks
        local = await hooks.request(flow)
        if local is not None:
            return local
        req = flow.request
        if hooks.wants_request_body(flow):
            try:
                data, codings = await self._buffer(req.body, req.headers)
            except (BodyTooLarge, DecodedTooLarge):
                _log.info("MITM: request body over %d bytes for a body hook", self.max_body_size)
                flow.error = "request body too large"
                return _text(413, f"request body larger than {self.max_body_size} bytes")
            data = await hooks.request_body(flow, data)
            req.body = self._replace_body(req.headers, data, codings)
        resp = await self.inner.serve(ctx, req)
        flow.response = resp
        await hooks.response(flow)
        resp = flow.response
        if resp.on_upgrade is None and hooks.wants_response_body(flow):
            try:
                data, codings = await self._buffer(resp.body, resp.headers)
            except (BodyTooLarge, DecodedTooLarge):
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await resp.body.aclose()
                _log.info("MITM: response body over %d bytes for a body hook", self.max_body_size)
                flow.error = "response body too large"
                return _text(502, f"response body larger than {self.max_body_size} bytes")
            data = await hooks.response_body(flow, data)
            resp.body = self._replace_body(resp.headers, data, codings)
        return resp


class HookLayer:
    """Layer form of :class:`HookService`."""

    def __init__(self, hooks: MitmHooks, *, max_body_size: int = 16 << 20) -> None:
        self.hooks = hooks
        self.max_body_size = max_body_size

    def layer(self, inner: Service[Request, Response]) -> HookService:
        """Wrap ``inner`` with the hooks."""
        return HookService(inner, self.hooks, max_body_size=self.max_body_size)
