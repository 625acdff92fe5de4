"""One server for every HTTP version: HTTP/1.1 and h2 on the same listener.

Behind TLS the version is the negotiated ALPN protocol (from the
:class:`rama_tls.NegotiatedTls` that ``rama_tls``'s acceptor puts in the
Context, or from the TLS stream itself). On cleartext (or TLS without ALPN)
the first bytes decide, peeked with :class:`rama_net.PeekStream`: the
24-byte h2 connection preface means h2 with prior knowledge, the first byte
that differs from it means HTTP/1.x. The peeked bytes are handed to the
chosen connection as ``initial``, so nothing is lost and the connection keeps
the original (fast) stream. The same ``Service[Request, Response]`` serves
both; handlers see the version on ``request.version``.

::

    from rama_http.server.auto import HttpServer, serve

    await serve("127.0.0.1:8080", my_service)                # cleartext h1 + h2c
    await serve("[::1]:8443", my_service, tls=TlsAcceptorConfig.single(cert))  # TLS + ALPN
    await serve("[::1]:8443", my_service, tls=..., plaintext=True)  # https and http, one port
    await serve("[::1]:8443", my_service, ssl_context=ctx)   # a stdlib SSLContext instead

    # or compose it yourself:
    await TcpListener.bind("127.0.0.1:8443").serve(
        TlsAcceptorLayer(tls_config).layer(HttpServer(my_service)), ctx=shutdown.context()
    )

Graceful shutdown: with a Context from :class:`rama_core.Shutdown`, a
triggered shutdown makes the listener stop accepting, h2 connections send
GOAWAY and finish the streams they accepted, HTTP/1.1 connections finish the
request in flight (answering with ``Connection: close``) and idle ones close;
:func:`serve` returns once every connection is gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import ssl
from collections.abc import Callable, Sequence
from typing import Any

import anyio
from anyio.abc import ByteStream
from anyio.streams.tls import TLSAttribute, TLSStream

from rama_core import Context, Service
from rama_net import PeekError, PeekStream, SocketAddress, TcpListener, TcpServerConfig
from rama_tls import NegotiatedTls, TlsAcceptorConfig, TlsAcceptorLayer

from ..h2.record import CONNECTION_PREFACE
from ..message import Request, Response
from .config import ServerConfig
from .h1_conn import serve_http1
from .h2 import serve_h2

__all__ = ["HttpServer", "HttpVersionChoice", "TlsTermination", "detect_version", "serve"]

_log = logging.getLogger("rama.http.server")


class HttpVersionChoice(enum.Enum):
    """Which protocol a connection speaks, as decided by :class:`HttpServer`.

    A layer below the server that already knows (say, from its own ALPN
    handling) may insert one into the connection Context to skip detection.
    """

    HTTP1 = "http/1.1"
    H2 = "h2"


def detect_version(first_bytes: bytes) -> HttpVersionChoice | None:
    """Decide from the first bytes of a cleartext connection; None: need more bytes.

    h2 only when the full connection preface is there; the first byte that
    differs from it means HTTP/1.x.
    """
    n = min(len(first_bytes), len(CONNECTION_PREFACE))
    if first_bytes[:n] != CONNECTION_PREFACE[:n]:
        return HttpVersionChoice.HTTP1
    if n == len(CONNECTION_PREFACE):
        return HttpVersionChoice.H2
    return None


def _alpn_of(ctx: Context, stream: ByteStream) -> str | None:
    negotiated = ctx.get(NegotiatedTls)
    if negotiated is not None and negotiated.side == "server" and negotiated.alpn:
        return negotiated.alpn
    alpn = stream.extra(TLSAttribute.alpn_protocol, None)
    return alpn if isinstance(alpn, str) else None


_ALPN_CHOICES = {
    "h2": HttpVersionChoice.H2,
    "http/1.1": HttpVersionChoice.HTTP1,
    "http/1.0": HttpVersionChoice.HTTP1,
}


class HttpServer:
    """A ``Service[ByteStream, None]`` serving HTTP/1.1 and h2 with one HTTP service.

    Plug it into any TCP listener (``rama_net``'s, anyio's), behind a TLS
    acceptor or not. ``http1``/``h2`` switch a version off: a connection that
    asks for a disabled one is closed without an answer.
    """

    def __init__(
        self,
        service: Service[Request, Response],
        config: ServerConfig | None = None,
        *,
        http1: bool = True,
        h2: bool = True,
    ) -> None:
        if not (http1 or h2):
            raise ValueError("enable at least one of http1 and h2")
        self.service = service
        self.config = config or ServerConfig()
        self.http1 = http1
        self.h2 = h2

    async def serve(self, ctx: Context, stream: ByteStream) -> None:
        """Serve one connection until it ends. The stream is not closed here."""
        initial = b""
        choice = ctx.get(HttpVersionChoice)
        if choice is None:
            alpn = _alpn_of(ctx, stream)
            choice = _ALPN_CHOICES.get(alpn) if alpn is not None else None
        if choice is None:
            if not self.h2:
                choice = HttpVersionChoice.HTTP1
            else:
                choice, stream, initial = await self._sniff(ctx, stream)
                if choice is None:
                    return
        if choice is HttpVersionChoice.H2 and self.h2:
            await serve_h2(ctx, stream, self.service, self.config, initial=initial)
        elif choice is HttpVersionChoice.HTTP1 and self.http1:
            await serve_http1(ctx, stream, self.service, self.config, initial=initial)
        else:
            _log.debug("connection wants %s, which is disabled", choice.value)

    async def _sniff(
        self, ctx: Context, stream: ByteStream
    ) -> tuple[HttpVersionChoice | None, ByteStream, bytes]:
        """Peek just enough to tell the h2 preface from HTTP/1.x.

        Returns the choice (None: close without answering), the stream to
        serve (the unwrapped original) and the bytes already read from it.
        """
        peek = stream if isinstance(stream, PeekStream) else PeekStream(stream)
        cfg = self.config
        timeout = cfg.header_read_timeout
        if timeout is None:
            timeout = cfg.keep_alive_timeout
        choice: HttpVersionChoice | None = None
        async with anyio.create_task_group() as tg:
            if ctx.executor.shutdown is not None:
                # A connection that has not sent a byte is idle: a shutdown closes it.
                async def on_shutdown() -> None:
                    await ctx.executor.wait_shutdown()
                    if not peek.peeked:
                        tg.cancel_scope.cancel()

                tg.start_soon(on_shutdown)
            try:
                await peek.fill(
                    lambda buf: detect_version(buf) is not None,
                    limit=len(CONNECTION_PREFACE),
                    timeout=timeout,
                )
                choice = detect_version(peek.peeked)
            except PeekError:
                pass
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as e:
                _log.debug("connection lost while detecting the version: %r", e)
                tg.cancel_scope.cancel()
                return None, stream, b""
            tg.cancel_scope.cancel()
        initial = peek.take_peeked()
        if choice is None and initial:
            # Too slow, or closed, before the preface was complete: HTTP/1.x answers
            # (400 for garbage, 408 for a stalled request head).
            choice = HttpVersionChoice.HTTP1
        return choice, (peek.inner if peek is not stream else stream), initial


class TlsTermination:
    """A minimal TLS server layer for :func:`serve`: handshake with a stdlib SSLContext.

    It does no ClientHello capture and no per-SNI certificates; for those use
    ``rama_tls``'s acceptor in front of :class:`HttpServer`. The ALPN protocols
    of ``ssl_context`` decide the HTTP version (see :class:`HttpServer`).
    """

    def __init__(
        self,
        inner: Service[ByteStream, Any],
        ssl_context: ssl.SSLContext,
        handshake_timeout: float | None = 10.0,
    ) -> None:
        self.inner = inner
        self.ssl_context = ssl_context
        self.handshake_timeout = handshake_timeout

    async def serve(self, ctx: Context, stream: ByteStream) -> None:
        """Handshake (bounded by ``handshake_timeout``), then serve the decrypted stream."""
        try:
            with anyio.fail_after(self.handshake_timeout):
                tls = await TLSStream.wrap(
                    stream,
                    server_side=True,
                    ssl_context=self.ssl_context,
                    standard_compatible=False,
                )
        except (ssl.SSLError, TimeoutError, anyio.EndOfStream) as e:
            _log.debug("TLS handshake failed: %r", e)
            return
        try:
            await self.inner.serve(ctx, tls)
        finally:
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(1.0),
                contextlib.suppress(OSError, ssl.SSLError, anyio.BrokenResourceError),
            ):
                await tls.aclose()


async def serve(
    address: str | tuple[str, int] | TcpListener,
    service: Service[Request, Response],
    config: ServerConfig | None = None,
    *,
    ctx: Context | None = None,
    tls: TlsAcceptorConfig | None = None,
    plaintext: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    alpn_protocols: Sequence[str] | None = ("h2", "http/1.1"),
    tcp_config: TcpServerConfig | None = None,
    on_listening: Callable[[SocketAddress], Any] | None = None,
) -> None:
    """Listen on ``address`` (``"host:port"``, a tuple or a bound listener); serve h1 and h2.

    With ``tls`` connections go through ``rama_tls``'s acceptor (ClientHello
    and :class:`rama_tls.NegotiatedTls` land in the Context; a config without
    ALPN protocols gets ``alpn_protocols``); ``plaintext=True`` also serves
    cleartext HTTP on the same port. With ``ssl_context`` (a stdlib context)
    a minimal :class:`TlsTermination` is used instead; ``alpn_protocols`` are
    set on it (None keeps the context's own). The version comes from ALPN.
    Runs until cancelled or, when ``ctx`` comes from a
    :class:`rama_core.Shutdown`, until a graceful shutdown has drained every
    connection. ``on_listening`` gets the bound address (useful with port 0).
    """
    owned = not isinstance(address, TcpListener)
    listener = address if isinstance(address, TcpListener) else TcpListener.bind(address)
    if tls is not None and ssl_context is not None:
        raise ValueError("pass tls or ssl_context, not both")
    http = HttpServer(service, config)
    stream_service: Service[ByteStream, Any] = http
    if tls is not None:
        if not tls.alpn_protocols and alpn_protocols:
            tls = dataclasses.replace(tls, alpn_protocols=tuple(alpn_protocols))
        stream_service = TlsAcceptorLayer(tls, plaintext=http if plaintext else None).layer(http)
    elif ssl_context is not None:
        if alpn_protocols:
            ssl_context.set_alpn_protocols(list(alpn_protocols))
        timeout = (config or ServerConfig()).header_read_timeout
        stream_service = TlsTermination(stream_service, ssl_context, timeout)
    if on_listening is not None:
        on_listening(listener.local_addr)
    try:
        await listener.serve(stream_service, tcp_config, ctx=ctx)
    finally:
        listener.close()
        if owned:
            # Cancelled (not shut down), serve() leaves its sockets open; ours must not leak.
            for sock in listener.sockets:
                sock.close()
