"""One port for every proxy protocol: route a connection by its first bytes.

A forward-proxy client speaks first, so the first bytes say what it speaks:

- ``0x05``: SOCKS5 (the greeting's version byte); ``0x04``: SOCKS4/4a;
- ``0x16 0x03``: a TLS ClientHello, the proxy itself behind TLS
  (``curl --proxy https://...``): TLS is terminated with the proxy's
  certificate and HTTP (h1, or h2 by ALPN) is served over it;
- an HTTP method token followed by a space: an HTTP proxy request (plain
  HTTP/1.x, or h2 with prior knowledge when the full h2 preface is there);
- anything else, nothing within the peek timeout, or EOF: the connection is
  closed without an answer (logged once, at DEBUG/INFO, rate-limited).

:func:`detect_proxy_protocol` is the pure decision over bytes;
:class:`ProxyDetector` is the ``Service[ByteStream, None]`` that peeks with a
bounded timeout and hands the stream on. HTTP/1.x and h2 get the original
stream and the peeked bytes as ``initial``, so a CONNECT tunnel keeps the
zero-copy path; the SOCKS service gets a :class:`rama_net.PeekStream` that
replays them.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from typing import Any

import anyio
from anyio.abc import ByteStream

from rama_core import Context, Service
from rama_http import Request, Response
from rama_http.server import HttpServer, ServerConfig, serve_h2, serve_http1
from rama_net import ConnectionLost, PeekError, PeekStream, RateLimitedLog, SocketInfo
from rama_tls import TlsAcceptorConfig, TlsAcceptorService

from ._metrics import ProxyMetrics, proxy_metrics

__all__ = ["DetectedProtocol", "ProxyDetector", "detect_proxy_protocol"]

_log = logging.getLogger("rama.proxy.detect")

_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_MAX_METHOD = 24
"""Longer than any registered HTTP method (``UPDATEREDIRECTREF`` has 17)."""
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_PEEK_LIMIT = len(_H2_PREFACE)


class DetectedProtocol(enum.Enum):
    """What a connection's first bytes are."""

    HTTP1 = "http/1.1"
    """An HTTP/1.x request line (a method token and a space)."""
    H2 = "h2"
    """The h2 connection preface (prior knowledge)."""
    TLS = "tls"
    """A TLS handshake record (the proxy behind TLS)."""
    SOCKS5 = "socks5"
    SOCKS4 = "socks4"
    UNKNOWN = "unknown"
    """None of the above: close."""


def detect_proxy_protocol(first_bytes: bytes) -> DetectedProtocol | None:
    """Classify the first bytes of a connection; None: not enough bytes to decide yet.

    Decides on as few bytes as possible: one for SOCKS, two for TLS, the
    method token and its space for HTTP; the h2 preface needs its 24 bytes
    (until one differs, which means HTTP/1.x).
    """
    if not first_bytes:
        return None
    first = first_bytes[0]
    if first == 0x05:
        return DetectedProtocol.SOCKS5
    if first == 0x04:
        return DetectedProtocol.SOCKS4
    if first == 0x16:
        # a TLS record header: content type 22 (handshake), then version major 3
        if len(first_bytes) < 2:
            return None
        return DetectedProtocol.TLS if first_bytes[1] == 0x03 else DetectedProtocol.UNKNOWN
    n = min(len(first_bytes), len(_H2_PREFACE))
    if first_bytes[:n] == _H2_PREFACE[:n]:
        return DetectedProtocol.H2 if n == len(_H2_PREFACE) else None
    for i, byte in enumerate(first_bytes[: _MAX_METHOD + 1]):
        if byte == 0x20:
            return DetectedProtocol.HTTP1 if i > 0 else DetectedProtocol.UNKNOWN
        if byte not in _TCHAR:
            return DetectedProtocol.UNKNOWN
    return DetectedProtocol.UNKNOWN if len(first_bytes) > _MAX_METHOD else None


def _fallback(peeked: bytes) -> DetectedProtocol:
    """The decision when no more bytes come (timeout or EOF) after ``peeked``."""
    if peeked and _H2_PREFACE.startswith(peeked[: len(_H2_PREFACE)]):
        # a partial preface (or "P..." of a stalled request line): HTTP/1.x answers 400/408
        return DetectedProtocol.HTTP1
    if peeked and all(b in _TCHAR for b in peeked[:_MAX_METHOD]):
        return DetectedProtocol.HTTP1
    return DetectedProtocol.UNKNOWN


class ProxyDetector:
    """A ``Service[ByteStream, None]`` serving HTTP proxy, HTTPS proxy and SOCKS on one port.

    ``http`` is the HTTP proxy service (e.g. :class:`rama_proxy.HttpProxy`),
    served as HTTP/1.1 and (when ``h2``) h2 with ``http_config`` (default:
    rama-http's limits without the request-body cap); ``socks``
    is the SOCKS service (e.g. :class:`rama_proxy.SocksProxy`), which gets
    both versions unless ``socks4`` is false; ``tls`` terminates TLS
    connections (without it they are closed). Each protocol whose service is
    missing is closed like unknown bytes. ``peek_timeout`` bounds the wait for
    the first bytes. Served connections are counted by detected protocol in
    ``metrics`` (default: the process-wide :func:`~rama_proxy.proxy_metrics`).

    ::

        detector = ProxyDetector(http=HttpProxy(), socks=SocksProxy(),
                                 tls=TlsAcceptorConfig.single(cert))
        await TcpListener.bind("127.0.0.1:8080").serve(detector)
    """

    def __init__(
        self,
        *,
        http: Service[Request, Response] | None = None,
        socks: Service[ByteStream, Any] | None = None,
        tls: TlsAcceptorConfig | None = None,
        http_config: ServerConfig | None = None,
        peek_timeout: float = 10.0,
        h2: bool = True,
        socks4: bool = True,
        metrics: ProxyMetrics | None = None,
    ) -> None:
        if peek_timeout <= 0:
            raise ValueError("peek_timeout must be positive")
        self.http = http
        self.socks = socks
        # a proxy streams bodies through: no request-body cap unless one is asked for
        self.http_config = http_config or ServerConfig(max_body_size=None)
        self.peek_timeout = peek_timeout
        self.h2 = h2
        self.socks4 = socks4
        self.metrics = metrics or proxy_metrics()
        self.tls: TlsAcceptorService[None] | None = None
        if tls is not None and http is not None:
            if tls.ssl_context is None and not tls.alpn_protocols:
                alpn = ("h2", "http/1.1") if h2 else ("http/1.1",)
                tls = dataclasses.replace(tls, alpn_protocols=alpn)
            self.tls = TlsAcceptorService(HttpServer(http, self.http_config, h2=h2), tls)
        self._unknown_log = RateLimitedLog(_log, 10.0)

    async def serve(self, ctx: Context, stream: ByteStream) -> None:
        """Detect the protocol and serve the connection with it; returns when it ends."""
        peek = stream if isinstance(stream, PeekStream) else PeekStream(stream)
        protocol = await self._detect(ctx, peek)
        if protocol is None:
            return
        if protocol is DetectedProtocol.UNKNOWN:
            self._closing(ctx, "unrecognised first bytes %r", peek.peeked[:16])
            return
        self.metrics.connection_opened(protocol.value)
        try:
            await self._route(ctx, stream, peek, protocol)
        finally:
            self.metrics.connection_closed(protocol.value)

    async def _route(
        self, ctx: Context, stream: ByteStream, peek: PeekStream, protocol: DetectedProtocol
    ) -> None:
        if protocol is DetectedProtocol.HTTP1 or protocol is DetectedProtocol.H2:
            if self.http is not None and (protocol is DetectedProtocol.HTTP1 or self.h2):
                initial = peek.take_peeked()
                raw = peek.inner if peek is not stream else stream
                if protocol is DetectedProtocol.H2:
                    await serve_h2(ctx, raw, self.http, self.http_config, initial=initial)
                else:
                    await serve_http1(ctx, raw, self.http, self.http_config, initial=initial)
                return
        elif protocol is DetectedProtocol.TLS:
            if self.tls is not None:
                await self.tls.serve(ctx, peek)
                return
        elif self.socks is not None and (protocol is DetectedProtocol.SOCKS5 or self.socks4):
            await self.socks.serve(ctx, peek)
            return
        self._closing(ctx, "%s is not served on this port", protocol.value)

    async def _detect(self, ctx: Context, peek: PeekStream) -> DetectedProtocol | None:
        """Peek until a decision; None when the connection is to be dropped silently."""
        protocol: DetectedProtocol | None = None
        async with anyio.create_task_group() as tg:
            if ctx.executor.shutdown is not None:
                # a connection that has not sent a byte yet is idle: a shutdown closes it
                async def on_shutdown() -> None:
                    await ctx.executor.wait_shutdown()
                    if not peek.peeked:
                        tg.cancel_scope.cancel()

                tg.start_soon(on_shutdown)
            try:
                await peek.fill(
                    lambda buf: detect_proxy_protocol(buf) is not None,
                    limit=_PEEK_LIMIT,
                    timeout=self.peek_timeout,
                )
                protocol = detect_proxy_protocol(peek.peeked)
                if protocol is None:  # EOF before a decision
                    if not peek.peeked:
                        _log.debug("%s: closed before sending a byte", _peer(ctx))
                        tg.cancel_scope.cancel()
                        return None
                    protocol = _fallback(peek.peeked)
            except PeekError:
                if not peek.peeked:
                    self._closing(ctx, "nothing sent within %gs", self.peek_timeout)
                    tg.cancel_scope.cancel()
                    return None
                protocol = _fallback(peek.peeked)
            except ConnectionLost as exc:
                _log.debug("%s: connection lost before the first bytes: %s", _peer(ctx), exc)
                tg.cancel_scope.cancel()
                return None
            tg.cancel_scope.cancel()
        return protocol

    def _closing(self, ctx: Context, why: str, *args: Any) -> None:
        self._unknown_log.log(logging.INFO, "%s: closing: " + why, _peer(ctx), *args)


def _peer(ctx: Context) -> str:
    info = ctx.get(SocketInfo)
    return str(info.peer_addr) if info is not None else "unknown peer"
