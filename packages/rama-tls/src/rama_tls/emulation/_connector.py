"""The emulated client as a rama connector: ``Authority -> EstablishedConnection``.

:class:`EmulatedTlsConnector` is :class:`rama_tls.TlsConnector`'s twin: it
connects with an inner connector (a plain :class:`rama_net.TcpConnector` by
default, or a proxy connector to tunnel) and runs the emulated handshake on
top, so proxies and MITM upstreams can send a browser's ClientHello where
they would use the stdlib connector. The negotiated parameters go into the
Context as a :class:`~rama_tls.NegotiatedTls` (``side="client"``).
"""

from __future__ import annotations

import contextlib

import anyio
from anyio.abc import ByteStream

from rama_core import Context, Service
from rama_net import Authority, EstablishedConnection, TcpConnector

from ._spec import ClientHelloSpec
from ._stream import EmulatedTlsStream, emulated_tls_connect
from ._verify import CaSource, load_store

__all__ = ["EmulatedTlsConnector", "EmulatedTlsConnectorLayer"]


class EmulatedTlsConnector:
    """Connect with ``inner``, then TLS with ``spec``'s ClientHello.

    ``verify``/``ca`` as in :func:`~rama_tls.emulation.emulated_tls_connect`
    (the trust store is loaded once, here); ``server_name`` overrides the
    host being connected to (SNI and the verified name).
    """

    def __init__(
        self,
        spec: ClientHelloSpec,
        inner: Service[Authority, EstablishedConnection] | None = None,
        *,
        verify: bool = True,
        ca: CaSource = None,
        server_name: str | None = None,
        handshake_timeout: float = 10.0,
    ) -> None:
        self.spec = spec
        self.inner: Service[Authority, EstablishedConnection] = inner or TcpConnector()
        self.verify = verify
        self.server_name = server_name
        self.handshake_timeout = handshake_timeout
        self._store = load_store(ca) if verify else None

    async def handshake(
        self, ctx: Context, stream: ByteStream, server_name: str | None
    ) -> EmulatedTlsStream:
        """Upgrade an open ``stream``; inserts :class:`~rama_tls.NegotiatedTls` into ``ctx``."""
        name = self.server_name or server_name
        if name and name.startswith("[") and name.endswith("]"):
            name = name[1:-1]
        tls = await emulated_tls_connect(
            stream,
            server_name=name,
            spec=self.spec,
            verify=self.verify,
            ca=self._store,
            handshake_timeout=self.handshake_timeout,
        )
        ctx.insert(tls.negotiated())
        return tls

    async def serve(self, ctx: Context, req: Authority) -> EstablishedConnection:
        """Connect to ``req`` through ``inner`` and complete the emulated handshake."""
        conn = await self.inner.serve(ctx, req)
        try:
            tls = await self.handshake(ctx, conn.stream, str(req.host))
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await conn.stream.aclose()
            raise
        return EstablishedConnection(tls, conn.authority, conn.info)


class EmulatedTlsConnectorLayer:
    """Layer form of :class:`EmulatedTlsConnector`."""

    def __init__(
        self,
        spec: ClientHelloSpec,
        *,
        verify: bool = True,
        ca: CaSource = None,
        server_name: str | None = None,
        handshake_timeout: float = 10.0,
    ) -> None:
        self.spec = spec
        self.verify = verify
        self.ca = ca
        self.server_name = server_name
        self.handshake_timeout = handshake_timeout

    def layer(self, inner: Service[Authority, EstablishedConnection]) -> EmulatedTlsConnector:
        """Connect with ``inner``, then the emulated TLS on top."""
        return EmulatedTlsConnector(
            self.spec,
            inner,
            verify=self.verify,
            ca=self.ca,
            server_name=self.server_name,
            handshake_timeout=self.handshake_timeout,
        )
