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

    from rama_http.server import HttpServer, serve

    await serve("127.0.0.1:8080", my_service)                # cleartext h1 + h2c
    await serve("[::1]:8443", my_service, tls=TlsAcceptorConfig.single(cert))  # TLS + ALPN
    await serve("[::1]:8443", my_service, tls=..., plaintext=True)  # https and http, one port
    await serve("[::1]:8443", my_service, ssl_context=ctx)   # a stdlib server SSLContext

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

import dataclasses
import enum
import logging
import ssl
from collections.abc import Callable, Sequence
from typing import Any

import anyio
from anyio.abc import ByteStream
from anyio.streams.tls import TLSAttribute

from rama_core import Context, Service
from rama_net import (
    ConnectionLost,
    PeekError,
    PeekStream,
    SocketAddress,
    TcpListener,
    TcpServerConfig,
)
from rama_tls import NegotiatedTls, TlsAcceptorConfig, TlsAcceptorLayer

from .._h2._record import CONNECTION_PREFACE
from .._message import Request, Response
from ._config import ServerConfig
from ._h1_conn import serve_http1
from ._h2 import serve_h2

__all__ = ["HttpServer", "HttpVersionChoice", "detect_version", "serve"]

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

        def on_shutdown() -> None:
            # A connection that has not sent a byte is idle: a shutdown closes it.
            if not peek.peeked:
                scope.cancel()

        # No task per connection: a shutdown callback (a dict entry) cancels the wait.
        with anyio.CancelScope() as scope, ctx.executor.on_shutdown(on_shutdown):
            try:
                await peek.fill(
                    lambda buf: detect_version(buf) is not None,
                    limit=len(CONNECTION_PREFACE),
                    timeout=timeout,
                )
                choice = detect_version(peek.peeked)
            except PeekError:
                pass
            except ConnectionLost as e:
                _log.debug("connection lost while detecting the version: %s", e)
                return None, stream, b""
        if scope.cancelled_caught:
            return None, stream, b""
        initial = peek.take_peeked()
        if choice is None and initial:
            # Too slow, or closed, before the preface was complete: HTTP/1.x answers
            # (400 for garbage, 408 for a stalled request head).
            choice = HttpVersionChoice.HTTP1
        return choice, (peek.inner if peek is not stream else stream), initial


async def serve(
    address: str | tuple[str, int] | TcpListener,
    service: Service[Request, Response],
    config: ServerConfig | None = None,
    *,
    ctx: Context | None = None,
    tls: TlsAcceptorConfig | None = None,
    plaintext: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    alpn_protocols: Sequence[str] | None = None,
    tcp_config: TcpServerConfig | None = None,
    on_listening: Callable[[SocketAddress], Any] | None = None,
) -> None:
    """Listen on ``address`` (``"host:port"``, a tuple or a bound listener); serve h1 and h2.

    TLS has one path, ``rama_tls``'s acceptor, whichever way it is asked for:
    the ClientHello and :class:`rama_tls.NegotiatedTls` land in the Context,
    the handshake is bounded by the acceptor's ``handshake_timeout`` and
    failures are logged on ``rama.tls.acceptor`` and counted.

    * ``tls``: a :class:`rama_tls.TlsAcceptorConfig`. A resolver config
      without ALPN protocols gets ``alpn_protocols`` (default
      ``("h2", "http/1.1")``).
    * ``ssl_context``: a stdlib server context, shorthand for
      ``tls=TlsAcceptorConfig.from_ssl_context(ssl_context)``. The context is
      never modified: its own ALPN protocols decide the version, so call
      ``ssl_context.set_alpn_protocols(["h2", "http/1.1"])`` for h2 (without
      ALPN, clients speak HTTP/1.1, or h2 with prior knowledge, which the
      preface detection still serves). ``alpn_protocols`` cannot be combined
      with it.
    * ``plaintext=True`` (with either) also serves cleartext HTTP on the same port.

    The arguments are checked before anything is bound: a bad one raises
    ``TypeError``/``ValueError`` and leaves no socket behind. Runs until
    cancelled or, when ``ctx`` comes from a :class:`rama_core.Shutdown`, until
    a graceful shutdown has drained every connection. ``on_listening`` gets
    the bound address (useful with port 0).
    """
    _check_type("ctx", ctx, Context)
    stream_service = _stream_service(
        service, config, tls, plaintext, ssl_context, alpn_protocols, tcp_config
    )
    if isinstance(address, TcpListener):
        owned = False
        listener = address
    elif isinstance(address, str | tuple):
        owned = True
        listener = TcpListener.bind(address)
    else:
        raise TypeError(
            f"address must be 'host:port', a (host, port) tuple or a TcpListener, "
            f"not {type(address).__name__}"
        )
    try:
        if on_listening is not None:
            on_listening(listener.local_addr)
        await listener.serve(stream_service, tcp_config, ctx=ctx)
    finally:
        listener.close()
        if owned:
            # Cancelled (not shut down), serve() leaves its sockets open; ours must not leak.
            for sock in listener.sockets:
                sock.close()


def _check_type(name: str, value: object, kind: type | tuple[type, ...]) -> None:
    if value is not None and not isinstance(value, kind):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise TypeError(f"{name} must be a {want} or None, not {type(value).__name__}")


def _stream_service(
    service: Service[Request, Response],
    config: ServerConfig | None,
    tls: TlsAcceptorConfig | None,
    plaintext: bool,
    ssl_context: ssl.SSLContext | None,
    alpn_protocols: Sequence[str] | None,
    tcp_config: TcpServerConfig | None,
) -> Service[ByteStream, Any]:
    """Check :func:`serve`'s arguments and build its per-connection service (binds nothing)."""
    if not callable(getattr(service, "serve", None)):
        raise TypeError(f"service must be a Service (with .serve), not {type(service).__name__}")
    _check_type("config", config, ServerConfig)
    _check_type("tls", tls, TlsAcceptorConfig)
    _check_type("ssl_context", ssl_context, ssl.SSLContext)
    _check_type("tcp_config", tcp_config, TcpServerConfig)
    if isinstance(alpn_protocols, str):
        raise TypeError("alpn_protocols must be a sequence of protocol names, not one str")
    if tls is not None and ssl_context is not None:
        raise ValueError("pass tls or ssl_context, not both")
    if plaintext and tls is None and ssl_context is None:
        raise ValueError("plaintext=True serves cleartext beside TLS: pass tls or ssl_context")
    if ssl_context is not None:
        if alpn_protocols is not None:
            raise ValueError(
                "alpn_protocols cannot be combined with ssl_context, which is used unchanged: "
                "call ssl_context.set_alpn_protocols(...) on it instead"
            )
        tls = TlsAcceptorConfig.from_ssl_context(ssl_context)
    elif tls is not None and tls.ssl_context is not None and alpn_protocols is not None:
        raise ValueError("alpn_protocols cannot be combined with a config's own ssl_context")
    http = HttpServer(service, config)
    if tls is None:
        return http
    if tls.ssl_context is None and not tls.alpn_protocols:
        protocols = _DEFAULT_ALPN if alpn_protocols is None else tuple(alpn_protocols)
        if protocols:
            tls = dataclasses.replace(tls, alpn_protocols=protocols)
    return TlsAcceptorLayer(tls, plaintext=http if plaintext else None).layer(http)


_DEFAULT_ALPN = ("h2", "http/1.1")
