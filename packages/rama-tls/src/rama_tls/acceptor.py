"""TLS acceptor: capture the ClientHello, pick a certificate, terminate TLS.

:class:`TlsAcceptorService` wraps a ``Service[ByteStream, T]`` (typically the
per-connection service of a ``rama_net.TcpListener``). For each connection it

1. peeks the ClientHello without consuming it (the bytes are replayed to the
   TLS engine) and inserts the parsed :class:`~rama_tls.ClientHello` into the
   Context;
2. asks the :class:`~rama_tls.resolver.CertResolver` for a certificate (async,
   so it may be issued on the fly);
3. runs the handshake with the stdlib ``ssl`` module through anyio's
   ``TLSStream`` (:class:`~rama_tls.stream.TlsStream`) and inserts
   :class:`~rama_tls.NegotiatedTls` (version, cipher, ALPN, SNI, client
   certificate under mTLS);
4. serves the inner service with the decrypted stream.

Steps 1-3 share one deadline (``handshake_timeout``). Every failure is
raised as a :class:`~rama_tls.errors.TlsError` subclass for this connection
only; the listener and other connections are unaffected.
"""

from __future__ import annotations

import ssl
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import anyio
from anyio.abc import ByteStream

from rama_core import Context, Service
from rama_net import PeekError, PeekStream

from ._singleflight import SingleFlight
from ._sslctx import load_certified_key
from .certs import CertifiedKey
from .client_hello import ClientHello
from .errors import ClientHelloError, HandshakeError, HandshakeTimeout, NotTlsError
from .info import NegotiatedTls
from .record import DEFAULT_MAX_CLIENT_HELLO, ClientHelloComplete, ClientHelloReader
from .resolver import CertResolver, StaticCertResolver
from .stream import TlsStream, wrap_tls

__all__ = [
    "ClientAuth",
    "TlsAcceptorConfig",
    "TlsAcceptorLayer",
    "TlsAcceptorService",
    "peek_client_hello",
]

T = TypeVar("T")


@dataclass(frozen=True)
class ClientAuth:
    """Client-certificate verification (mTLS) settings."""

    ca_pem: bytes
    """PEM bundle of the CAs that may sign client certificates."""
    required: bool = True
    """Refuse clients without a certificate; else verify one only if sent."""


@dataclass(frozen=True)
class TlsAcceptorConfig:
    """How the acceptor terminates TLS."""

    resolver: CertResolver
    """Picks the certificate per ClientHello (see :mod:`rama_tls.resolver`)."""
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

    @classmethod
    def single(cls, cert: CertifiedKey, **options: Any) -> TlsAcceptorConfig:
        """A config serving one certificate for every name."""
        return cls(resolver=StaticCertResolver(cert), **options)


async def peek_client_hello(
    stream: PeekStream, *, max_size: int = DEFAULT_MAX_CLIENT_HELLO
) -> ClientHelloComplete:
    """Read ahead until a whole ClientHello is buffered; nothing is consumed.

    Raises :class:`~rama_tls.errors.ClientHelloError` on bad input (including
    :class:`~rama_tls.errors.NotTlsError` for another protocol) and
    :class:`~rama_tls.errors.HandshakeError` when the peer closes first.
    """
    reader = ClientHelloReader(max_size=max_size)
    seen = 0
    result: list[ClientHelloComplete] = []

    def done(buffer: bytes) -> bool:
        nonlocal seen
        if result:
            return True
        outcome = reader.feed(buffer[seen:])
        seen = len(buffer)
        if isinstance(outcome, ClientHelloComplete):
            result.append(outcome)
            return True
        return False

    # headers of the records that carry the hello add 5 bytes per 16 KiB
    limit = max_size + 5 * (max_size // 16384 + 2)
    try:
        await stream.fill(done, limit=limit)
    except PeekError as exc:
        raise HandshakeError(f"reading the ClientHello failed: {exc}") from exc
    if not result:
        raise HandshakeError(f"peer closed after {seen} bytes, before a whole ClientHello")
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
    (:class:`~rama_tls.errors.NotTlsError`, decided from the first bytes) is
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
        found = await peek_client_hello(peek, max_size=self.config.max_client_hello_size)
        hello: ClientHello = found.client_hello
        ctx.insert(hello)
        cert = await self.config.resolver.resolve(ctx, hello)
        if cert is None:
            raise HandshakeError(f"no certificate for server name {hello.server_name!r}")
        ssl_context = await self._contexts.get(cert)
        tls = await wrap_tls(peek, ssl_context, server_side=True)
        ctx.insert(NegotiatedTls.from_stream(tls, "server", hello.server_name))
        return tls

    async def serve(self, ctx: Context, req: ByteStream) -> T:
        """Handshake, then hand the TLS stream to the inner service."""
        peek = req if isinstance(req, PeekStream) else PeekStream(req)
        try:
            tls = await self.handshake(ctx, peek)
        except NotTlsError as exc:
            if self.plaintext is None:
                exc.add_context("reading the TLS ClientHello")
                raise
            return await self.plaintext.serve(ctx, peek)
        except ClientHelloError as exc:
            exc.add_context("reading the TLS ClientHello")
            raise
        try:
            return await self.inner.serve(ctx, tls)
        finally:
            with anyio.CancelScope(shield=True):
                await tls.aclose()


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
