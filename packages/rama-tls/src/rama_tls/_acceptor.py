"""TLS acceptor: capture the ClientHello, pick a certificate, terminate TLS.

:class:`TlsAcceptorService` wraps a ``Service[ByteStream, T]`` (typically the
per-connection service of a ``rama_net.TcpListener``). For each connection it

1. peeks the ClientHello without consuming it (the bytes are replayed to the
   TLS engine) and inserts the parsed :class:`~rama_tls.ClientHello` into the
   Context;
2. asks the :class:`~rama_tls.CertResolver` for a certificate (async,
   so it may be issued on the fly);
3. runs the handshake with the stdlib ``ssl`` module through anyio's
   ``TLSStream`` (:class:`~rama_tls.TlsStream`) and inserts
   :class:`~rama_tls.NegotiatedTls` (version, cipher, ALPN, SNI, client
   certificate under mTLS);
4. serves the inner service with the decrypted stream.

Steps 1-3 share one deadline (``handshake_timeout``). Every failure is
raised as a :class:`~rama_tls.TlsError` subclass for this connection
only; the listener and other connections are unaffected.
"""

from __future__ import annotations

import logging
import ssl
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import anyio
from anyio.abc import ByteStream

from rama_core import Context, Service
from rama_net import PeekError, PeekStream, SocketInfo

from ._certs import CertifiedKey
from ._client_hello import ClientHello
from ._errors import (
    CertificateVerificationError,
    ClientHelloError,
    ClientHelloTooLarge,
    HandshakeTimeout,
    MalformedClientHello,
    NoCertificate,
    NotTlsError,
    PeerClosed,
    TlsError,
)
from ._info import NegotiatedTls
from ._metrics import TlsMetrics, tls_metrics
from ._record import DEFAULT_MAX_CLIENT_HELLO, ClientHelloComplete, ClientHelloReader
from ._resolver import CertResolver, StaticCertResolver
from ._singleflight import SingleFlight
from ._sslctx import load_certified_key
from ._stream import TlsStream, wrap_tls

__all__ = [
    "ClientAuth",
    "TlsAcceptorConfig",
    "TlsAcceptorLayer",
    "TlsAcceptorService",
    "peek_client_hello",
]

T = TypeVar("T")

_log = logging.getLogger("rama.tls.acceptor")


@dataclass(frozen=True)
class ClientAuth:
    """Client-certificate verification (mTLS) settings."""

    ca_pem: bytes
    """PEM bundle of the CAs that may sign client certificates."""
    required: bool = True
    """Refuse clients without a certificate; else verify one only if sent."""


@dataclass(frozen=True)
class TlsAcceptorConfig:
    """How the acceptor terminates TLS.

    Certificates come either from a ``resolver`` (per ClientHello: SNI names,
    on-the-fly issuance), for which the acceptor builds its own SSLContexts
    from the options below, or from a ready stdlib ``ssl_context``
    (:meth:`from_ssl_context`) used as it is for every connection. Exactly one
    of the two is set. With ``ssl_context`` the context's own settings apply
    (ALPN protocols, versions, ciphers, client verification): the acceptor
    never changes it, so ``alpn_protocols``, ``client_auth`` and ``ciphers``
    must stay unset there (a ValueError otherwise) and ``minimum_version`` /
    ``maximum_version`` are ignored. Both kinds get the same ClientHello
    capture, ``handshake_timeout``, logging and metrics.
    """

    resolver: CertResolver | None = None
    """Picks the certificate per ClientHello (see :mod:`rama_tls._resolver`)."""
    alpn_protocols: Sequence[str] = ()
    """Protocols the server accepts, in preference order (e.g. ``("h2", "http/1.1")``)."""
    client_auth: ClientAuth | None = None
    handshake_timeout: float = 10.0
    """Deadline in seconds for reading the ClientHello plus the handshake."""
    max_client_hello_size: int = DEFAULT_MAX_CLIENT_HELLO
    minimum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    maximum_version: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED
    ciphers: str | None = None
    """OpenSSL cipher string for TLS <= 1.2 (None: the ssl module's default)."""
    context_cache_size: int = 1024
    """How many per-certificate SSLContexts to keep."""
    ssl_context: ssl.SSLContext | None = None
    """A ready server context for every connection, instead of ``resolver``."""
    metrics: TlsMetrics | None = None
    """Where handshake failures are counted (None: :func:`~rama_tls.tls_metrics`)."""

    def __post_init__(self) -> None:
        if (self.resolver is None) == (self.ssl_context is None):
            raise ValueError("TlsAcceptorConfig needs exactly one of resolver and ssl_context")
        if self.ssl_context is not None:
            if not isinstance(self.ssl_context, ssl.SSLContext):
                raise TypeError(
                    f"ssl_context must be an ssl.SSLContext, not {type(self.ssl_context).__name__}"
                )
            if self.ssl_context.protocol == ssl.PROTOCOL_TLS_CLIENT:
                raise ValueError(
                    "ssl_context is a client context (PROTOCOL_TLS_CLIENT); a server needs "
                    "ssl.create_default_context(ssl.Purpose.CLIENT_AUTH) or PROTOCOL_TLS_SERVER"
                )
            given = [
                name
                for name, value in (
                    ("alpn_protocols", self.alpn_protocols),
                    ("client_auth", self.client_auth),
                    ("ciphers", self.ciphers),
                )
                if value
            ]
            if given:
                raise ValueError(
                    f"{', '.join(given)} cannot be combined with ssl_context: "
                    "configure them on the context itself"
                )
        if not self.handshake_timeout > 0:
            raise ValueError(f"handshake_timeout must be positive, not {self.handshake_timeout!r}")

    @classmethod
    def single(cls, cert: CertifiedKey, **options: Any) -> TlsAcceptorConfig:
        """A config serving one certificate for every name."""
        return cls(resolver=StaticCertResolver(cert), **options)

    @classmethod
    def from_ssl_context(cls, ssl_context: ssl.SSLContext, **options: Any) -> TlsAcceptorConfig:
        """A config terminating every connection with a ready stdlib server context.

        The context is used as it is and never modified: its ALPN protocols
        (``set_alpn_protocols``) decide what is negotiated. ``options`` are the
        other fields (``handshake_timeout``, ``max_client_hello_size``...).
        """
        return cls(ssl_context=ssl_context, **options)


async def peek_client_hello(
    stream: PeekStream,
    *,
    max_size: int = DEFAULT_MAX_CLIENT_HELLO,
    timeout: float | None = None,
) -> ClientHello:
    """Read ahead until a whole ClientHello is buffered and return it; nothing is consumed.

    The hello's bytes stay in ``stream`` (``stream.peeked``) and are replayed
    to whoever reads it next, e.g. the TLS engine. Each received chunk is
    parsed once (the reader is fed only new bytes), so a hello dripped one
    byte per segment costs linear time.

    Raises :class:`~rama_tls.ClientHelloError` on bad input (including
    :class:`~rama_tls.NotTlsError` for another protocol),
    :class:`~rama_tls.HandshakeTimeout` when ``timeout`` seconds pass
    first and :class:`~rama_tls.HandshakeError` when the peer closes
    first.
    """
    reader = ClientHelloReader(max_size=max_size)
    result: list[ClientHello] = []

    def feed(new: bytes) -> bool:
        if result:
            return True
        outcome = reader.feed(new)
        if isinstance(outcome, ClientHelloComplete):
            result.append(outcome.client_hello)
            return True
        return False

    # headers of the records that carry the hello add 5 bytes per 16 KiB
    limit = max_size + 5 * (max_size // 16384 + 2)
    with anyio.move_on_after(timeout) as scope:
        try:
            await stream.fill(feed, limit=limit, incremental=True)
        except PeekError as exc:
            raise MalformedClientHello(f"reading the ClientHello failed: {exc}") from exc
    if scope.cancelled_caught:
        assert timeout is not None
        raise HandshakeTimeout(timeout)
    if not result:
        raise PeerClosed(f"peer closed after {reader.buffered} bytes, before a whole ClientHello")
    return result[0]


class _ContextCache:
    """Bounded LRU of server SSLContexts, one per certificate.

    Building one loads the chain and key (and the client CAs) through OpenSSL
    and a temporary file, so it runs in a worker thread, once per certificate
    however many handshakes want it at the same time.
    """

    def __init__(self, config: TlsAcceptorConfig) -> None:
        self.config = config
        self._contexts: OrderedDict[CertifiedKey, ssl.SSLContext] = OrderedDict()
        self._building: SingleFlight[CertifiedKey, ssl.SSLContext] = SingleFlight()

    def _lookup(self, ck: CertifiedKey) -> ssl.SSLContext | None:
        ctx = self._contexts.get(ck)
        if ctx is not None:
            self._contexts.move_to_end(ck)
        return ctx

    async def get(self, ck: CertifiedKey) -> ssl.SSLContext:
        ctx = self._lookup(ck)
        if ctx is not None:
            return ctx

        async def build() -> ssl.SSLContext:
            done = self._lookup(ck)
            if done is not None:
                return done
            built = await anyio.to_thread.run_sync(self._build, ck)
            self._contexts[ck] = built
            while len(self._contexts) > self.config.context_cache_size:
                self._contexts.popitem(last=False)
            return built

        return await self._building.run(ck, build)

    def _build(self, ck: CertifiedKey) -> ssl.SSLContext:
        cfg = self.config
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = cfg.minimum_version
        ctx.maximum_version = cfg.maximum_version
        if cfg.ciphers:
            ctx.set_ciphers(cfg.ciphers)
        if cfg.alpn_protocols:
            ctx.set_alpn_protocols(list(cfg.alpn_protocols))
        if cfg.client_auth is not None:
            ctx.load_verify_locations(cadata=cfg.client_auth.ca_pem.decode("ascii"))
            ctx.verify_mode = ssl.CERT_REQUIRED if cfg.client_auth.required else ssl.CERT_OPTIONAL
        load_certified_key(ctx, ck)
        return ctx


class TlsAcceptorService(Generic[T]):
    """Terminates TLS on each stream, then serves ``inner`` with the plaintext stream.

    With ``plaintext`` set, a stream that does not start with a TLS handshake
    (:class:`~rama_tls.NotTlsError`, decided from the first bytes) is
    served by that service instead, its peeked bytes replayed: TLS and plain
    text on one port.
    """

    def __init__(
        self,
        inner: Service[ByteStream, T],
        config: TlsAcceptorConfig,
        *,
        plaintext: Service[ByteStream, T] | None = None,
    ) -> None:
        self.inner = inner
        self.config = config
        self.plaintext = plaintext
        self._contexts = _ContextCache(config)

    async def handshake(self, ctx: Context, stream: ByteStream) -> TlsStream:
        """Capture the ClientHello and complete the handshake; fills the Context.

        Inserts :class:`~rama_tls.ClientHello` and :class:`~rama_tls.NegotiatedTls`.
        """
        timeout = self.config.handshake_timeout
        peek = stream if isinstance(stream, PeekStream) else PeekStream(stream)
        with anyio.move_on_after(timeout) as scope:
            return await self._handshake(ctx, peek)
        assert scope.cancelled_caught
        raise HandshakeTimeout(timeout)

    async def _handshake(self, ctx: Context, peek: PeekStream) -> TlsStream:
        cfg = self.config
        hello = await peek_client_hello(peek, max_size=cfg.max_client_hello_size)
        ctx.insert(hello)
        if cfg.ssl_context is not None:
            ssl_context = cfg.ssl_context
        else:
            assert cfg.resolver is not None  # __post_init__: one of the two
            cert = await cfg.resolver.resolve(ctx, hello)
            if cert is None:
                raise NoCertificate(f"no certificate for server name {hello.server_name!r}")
            ssl_context = await self._contexts.get(cert)
        tls = await wrap_tls(peek, ssl_context, server_side=True)
        ctx.insert(NegotiatedTls.from_stream(tls, "server", hello.server_name))
        return tls

    async def serve(self, ctx: Context, req: ByteStream) -> T:
        """Handshake, then hand the TLS stream to the inner service.

        A failed handshake is logged once on ``rama.tls.acceptor`` (INFO, one
        line with the peer address, no traceback; DEBUG for a peer that just
        went away), counted in ``rama.tls.handshake_failures`` and re-raised
        as its :class:`~rama_tls.TlsError`.
        """
        peek = req if isinstance(req, PeekStream) else PeekStream(req)
        try:
            tls = await self.handshake(ctx, peek)
        except NotTlsError as exc:
            if self.plaintext is None:
                self._failed(ctx, "not_tls", exc)
                exc.add_context("reading the TLS ClientHello")
                raise
            return await self.plaintext.serve(ctx, peek)
        except TlsError as exc:
            self._failed(ctx, _failure_reason(exc), exc)
            if isinstance(exc, ClientHelloError):
                exc.add_context("reading the TLS ClientHello")
            raise
        try:
            return await self.inner.serve(ctx, tls)
        finally:
            with anyio.CancelScope(shield=True):
                await tls.aclose()

    def _failed(self, ctx: Context, reason: str, exc: TlsError) -> None:
        (self.config.metrics or tls_metrics()).handshake_failed(reason)
        info = ctx.get(SocketInfo)
        peer = str(info.peer_addr) if info is not None else "unknown peer"
        level = logging.DEBUG if reason == "peer_closed" else logging.INFO
        _log.log(level, "TLS handshake from %s failed (%s): %s", peer, reason, exc)


def _failure_reason(exc: TlsError) -> str:
    """The ``reason`` attribute of ``rama.tls.handshake_failures`` for ``exc``."""
    if isinstance(exc, NotTlsError):
        return "not_tls"
    if isinstance(exc, ClientHelloTooLarge):
        return "client_hello_too_large"
    if isinstance(exc, ClientHelloError):
        return "malformed_client_hello"
    if isinstance(exc, HandshakeTimeout):
        return "timeout"
    if isinstance(exc, CertificateVerificationError):
        return "certificate"
    if isinstance(exc, NoCertificate):
        return "no_certificate"
    if isinstance(exc, PeerClosed):
        return "peer_closed"
    return "handshake"


class TlsAcceptorLayer:
    """Layer form of :class:`TlsAcceptorService` (``plaintext``: see there)."""

    def __init__(
        self, config: TlsAcceptorConfig, *, plaintext: Service[ByteStream, Any] | None = None
    ) -> None:
        self.config = config
        self.plaintext = plaintext

    def layer(self, inner: Service[ByteStream, T]) -> TlsAcceptorService[T]:
        """Wrap ``inner`` so it receives decrypted streams."""
        return TlsAcceptorService(inner, self.config, plaintext=self.plaintext)
