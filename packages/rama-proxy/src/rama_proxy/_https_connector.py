"""``https://`` upstream proxies: TLS to the proxy itself, then HTTP CONNECT inside it.

:class:`HttpsProxyConnector` fills the HTTP client's proxy slot (and
:class:`~rama_proxy.Egress`'s, where :func:`~rama_proxy.default_proxy_connectors`
registers it for the ``https`` scheme): it runs a TLS handshake with the proxy
(SNI and verification against the proxy URL's host, ALPN ``http/1.1``), then
sends ``CONNECT`` with Basic credentials from the URL over that TLS stream.
The returned stream is TLS-to-the-proxy carrying the tunnel, so a TLS
connection to an ``https://`` target nests inside it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ssl

from anyio.abc import ByteStream

from rama_core import Context
from rama_http.client import HttpConnectProxyConnector, ProxyConnector, ProxyError, ProxyRequest
from rama_tls import TlsClientConfig, TlsError, tls_connect

from ._errors import UpstreamFailure

__all__ = ["HttpsProxyConnector"]


class HttpsProxyConnector:
    """``ProxyRequest -> ByteStream`` through an HTTPS proxy (TLS, then CONNECT).

    ``tls`` is how the proxy's certificate is checked (``ca_pem=`` for a
    private CA; ``verify=False`` only for tests); ``connect`` speaks CONNECT
    over the TLS stream (default :class:`~rama_http.client.HttpConnectProxyConnector`).
    """

    def __init__(
        self,
        *,
        tls: TlsClientConfig | None = None,
        connect: ProxyConnector | None = None,
    ) -> None:
        cfg = tls or TlsClientConfig()
        self.tls = dataclasses.replace(cfg, alpn_protocols=("http/1.1",))
        self.connect: ProxyConnector = connect or HttpConnectProxyConnector()
        self._ssl_context: ssl.SSLContext | None = None

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The client SSLContext (built once, on first use)."""
        if self._ssl_context is None:
            self._ssl_context = self.tls.build_ssl_context()
        return self._ssl_context

    async def serve(self, ctx: Context, req: ProxyRequest) -> ByteStream:
        """TLS handshake with the proxy, then CONNECT to ``req.target`` inside it."""
        host = req.proxy.uri.host
        try:
            # no ctx: the NegotiatedTls of the client's own connection stays in place
            stream: ByteStream = await tls_connect(
                req.stream, host, self.tls, ssl_context=self.ssl_context
            )
        except (TlsError, ssl.SSLError) as e:
            err = ProxyError(f"TLS handshake with the proxy {host} failed: {e}")
            err.failure = UpstreamFailure.TLS  # type: ignore[attr-defined]
            raise err from e
        try:
            return await self.connect.serve(ctx, ProxyRequest(stream, req.target, req.proxy))
        except BaseException:
            with contextlib.suppress(Exception):
                await stream.aclose()
            raise
