"""TLS connector: client TLS over any stream, so it also works through proxies.

* :class:`TlsClientConfig` - verification (on by default; system roots or a
  custom CA bundle), SNI override, ALPN offer, client certificate, versions.
* :func:`tls_connect` - handshake over an already open ``ByteStream`` (a TCP
  connection, a CONNECT tunnel, a SOCKS5 stream, even another TLS stream).
* :class:`TlsConnector` / :class:`TlsConnectorLayer` - a connector service of
  ``Authority -> EstablishedConnection`` that wraps an inner connector
  (default :class:`rama_net.TcpConnector`) and upgrades its stream.

With verification on (the default) the certificate is checked against a
server name: the host being connected to, or ``server_name``. A DNS name is
matched against the certificate's DNS SANs, an IP address (no SNI is sent for
it) against its IP SANs. A handshake without any name raises
:class:`~rama_tls.MissingServerNameError` before a byte is sent,
unless ``verify_hostname=False`` explicitly opts out of the name check (the
chain is still verified).

The negotiated parameters go into the Context as a
:class:`~rama_tls.NegotiatedTls` (``side="client"``). Every handshake is a
full one: the connector keeps no sessions to resume, so ``session_reused`` is
always ``False`` on this side. Failures are typed:
:class:`~rama_tls.CertificateVerificationError` for a rejected server
certificate, :class:`~rama_tls.HandshakeTimeout`, and
:class:`~rama_tls.HandshakeError` for the rest.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
from anyio.abc import ByteStream

from rama_core import Context, Service
from rama_net import Authority, EstablishedConnection, TcpConnector

from ._certs import CertifiedKey
from ._errors import HandshakeTimeout, MissingServerNameError
from ._info import NegotiatedTls
from ._sslctx import load_certified_key
from ._stream import TlsStream, wrap_tls

__all__ = [
    "TlsClientConfig",
    "TlsConnector",
    "TlsConnectorLayer",
    "tls_connect",
]


@dataclass(frozen=True)
class TlsClientConfig:
    """How the connector originates TLS."""

    verify: bool = True
    """Verify the server's certificate chain and host name (turn off only for tests/MITM)."""
    ca_pem: bytes | None = None
    """PEM bundle of trusted CAs; replaces the system roots when set (with ``ca_file``)."""
    ca_file: str | os.PathLike[str] | None = None
    """File of trusted CAs (PEM); replaces the system roots when set (with ``ca_pem``)."""
    server_name: str | None = None
    """SNI and verified name; default: the host being connected to (no SNI for IPs)."""
    alpn_protocols: Sequence[str] = ()
    """Protocols to offer, in preference order (e.g. ``("h2", "http/1.1")``)."""
    client_cert: CertifiedKey | None = None
    """Certificate (and key) to present when the server asks for one (mTLS)."""
    minimum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    maximum_version: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED
    ciphers: str | None = None
    """OpenSSL cipher string for TLS <= 1.2 (None: the ssl module's default)."""
    handshake_timeout: float = 10.0
    """Deadline in seconds for the handshake."""
    verify_hostname: bool = True
    """With ``verify``: also check the certificate against the server name (DNS or IP SAN).

    ``False`` still verifies the chain against the trusted CAs but accepts a
    certificate for any name, and allows handshakes without a server name
    (which otherwise raise :class:`~rama_tls.MissingServerNameError`).
    Only for peers whose name is unknown and whose CA is trusted for nothing else.
    """

    def build_ssl_context(self) -> ssl.SSLContext:
        """A fresh client ``SSLContext`` for these settings (reuse it: building loads roots)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = self.minimum_version
        ctx.maximum_version = self.maximum_version
        if self.ciphers:
            ctx.set_ciphers(self.ciphers)
        if self.alpn_protocols:
            ctx.set_alpn_protocols(list(self.alpn_protocols))
        if self.verify:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.check_hostname = self.verify_hostname
            if self.ca_pem is None and self.ca_file is None:
                ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
            if self.ca_pem is not None:
                ctx.load_verify_locations(cadata=self.ca_pem.decode("ascii"))
            if self.ca_file is not None:
                ctx.load_verify_locations(cafile=os.fspath(self.ca_file))
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.client_cert is not None:
            load_certified_key(ctx, self.client_cert)
        return ctx


def _server_name(*candidates: str | None) -> str | None:
    """The first non-empty name, an IP literal without its brackets (``[::1]`` -> ``::1``)."""
    for name in candidates:
        if not name:
            continue
        if name.startswith("[") and name.endswith("]"):
            with contextlib.suppress(ValueError):
                return str(ipaddress.ip_address(name[1:-1]))
        return name
    return None


async def _handshake(
    stream: ByteStream,
    server_name: str | None,
    ssl_context: ssl.SSLContext,
    timeout: float,
    ctx: Context | None,
) -> TlsStream:
    if server_name is None and ssl_context.check_hostname:
        # the stdlib would silently skip the name check (SSLObject has no such guard)
        raise MissingServerNameError(
            "certificate verification needs a server name: pass the host (or IP) being "
            "connected to, set TlsClientConfig.server_name, or opt out of the name check "
            "with TlsClientConfig(verify_hostname=False)"
        )
    with anyio.move_on_after(timeout) as scope:
        tls = await wrap_tls(stream, ssl_context, server_side=False, server_hostname=server_name)
    if scope.cancelled_caught:
        raise HandshakeTimeout(timeout)
    if ctx is not None:
        ctx.insert(NegotiatedTls.from_stream(tls, "client", server_name))
    return tls


async def tls_connect(
    stream: ByteStream,
    server_name: str | None,
    config: TlsClientConfig | None = None,
    *,
    ctx: Context | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> TlsStream:
    """Run a client handshake over ``stream`` and return the TLS stream.

    ``server_name`` is sent as SNI (unless it is an IP literal) and verified
    against the certificate; ``config.server_name`` overrides it. With
    verification on, a missing name raises
    :class:`~rama_tls.MissingServerNameError` unless the config sets
    ``verify_hostname=False``. Without ``ssl_context`` one is built per call,
    in a worker thread; pass a prebuilt one (``config.build_ssl_context()``)
    to share it. The stream is left open on failure: the caller owns it.
    """
    cfg = config or TlsClientConfig()
    sni = _server_name(cfg.server_name, server_name)
    sslctx = ssl_context
    if sslctx is None:
        # building loads the trust store (the system roots: tens of milliseconds)
        sslctx = await anyio.to_thread.run_sync(cfg.build_ssl_context)
    return await _handshake(stream, sni, sslctx, cfg.handshake_timeout, ctx)


class TlsConnector:
    """``Authority -> EstablishedConnection`` service: connect with ``inner``, then TLS.

    ``inner`` is any connector service (a plain :class:`rama_net.TcpConnector`
    by default; a proxy connector to tunnel). The returned connection's
    ``stream`` is a :class:`~rama_tls.TlsStream`.
    """

    def __init__(
        self,
        inner: Service[Authority, EstablishedConnection] | None = None,
        config: TlsClientConfig | None = None,
    ) -> None:
        self.inner: Service[Authority, EstablishedConnection] = inner or TcpConnector()
        self.config = config or TlsClientConfig()
        self.ssl_context = self.config.build_ssl_context()

    async def handshake(
        self, ctx: Context, stream: ByteStream, server_name: str | None
    ) -> TlsStream:
        """Upgrade an already open ``stream``; inserts NegotiatedTls into ``ctx``.

        ``server_name`` is verified as in :func:`tls_connect`.
        """
        sni = _server_name(self.config.server_name, server_name)
        return await _handshake(stream, sni, self.ssl_context, self.config.handshake_timeout, ctx)

    async def serve(self, ctx: Context, req: Authority) -> EstablishedConnection:
        """Connect to ``req`` through ``inner`` and complete a TLS handshake."""
        conn = await self.inner.serve(ctx, req)
        try:
            tls = await self.handshake(ctx, conn.stream, str(req.host))
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await conn.stream.aclose()
            raise
        return EstablishedConnection(tls, conn.authority, conn.info)


class TlsConnectorLayer:
    """Layer form of :class:`TlsConnector`: wraps a connector service."""

    def __init__(self, config: TlsClientConfig | None = None) -> None:
        self.config = config or TlsClientConfig()

    def layer(self, inner: Service[Authority, EstablishedConnection]) -> TlsConnector:
        """Connect with ``inner``, then TLS on top."""
        return TlsConnector(inner, self.config)
