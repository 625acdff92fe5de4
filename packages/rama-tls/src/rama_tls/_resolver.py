"""Certificate selection for the acceptor: async, per ClientHello.

A :class:`CertResolver` is asked once per connection, after the ClientHello
was read and before the handshake starts, so it may do I/O (a database, an
ACME client) or issue a certificate on the fly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from rama_core import Context
from rama_net import AddressError, Host, SocketInfo

from ._certs import CertifiedKey, LeafCertificateCache
from ._client_hello import ClientHello
from ._errors import HandshakeError

__all__ = ["CertResolver", "IssuingCertResolver", "StaticCertResolver"]


@runtime_checkable
class CertResolver(Protocol):
    """Picks the certificate to present for a connection (``None`` refuses it)."""

    async def resolve(self, ctx: Context, hello: ClientHello) -> CertifiedKey | None:
        """The certificate for this hello; ``ctx`` holds the connection's facts."""
        ...


class StaticCertResolver:
    """Fixed certificates by SNI name (``*.example.com`` wildcards allowed) plus a default."""

    def __init__(
        self,
        default: CertifiedKey | None = None,
        by_name: Mapping[str, CertifiedKey] | None = None,
    ) -> None:
        self.default = default
        self.by_name = {k.lower().rstrip("."): v for k, v in (by_name or {}).items()}

    def lookup(self, server_name: str | None) -> CertifiedKey | None:
        """Exact name, then the wildcard one label up, then the default."""
        if server_name:
            name = server_name.lower().rstrip(".")
            exact = self.by_name.get(name)
            if exact is not None:
                return exact
            _, dot, parent = name.partition(".")
            if dot:
                wildcard = self.by_name.get(f"*.{parent}")
                if wildcard is not None:
                    return wildcard
        return self.default

    async def resolve(self, ctx: Context, hello: ClientHello) -> CertifiedKey | None:
        """See :meth:`lookup`."""
        return self.lookup(hello.server_name)


class IssuingCertResolver:
    """Issues (and caches) a leaf for the SNI name, for MITM proxies and demos.

    Issuance runs in a worker thread (:meth:`LeafCertificateCache.aget`), one
    per new name however many handshakes ask for it at once.

    Without SNI the certificate is issued for the local IP address the
    client connected to (from the Context's :class:`rama_net.SocketInfo`),
    else for ``fallback_host``. An SNI value that is not a valid host name
    (spaces, wildcards, over-long) is refused with a
    :class:`~rama_tls.HandshakeError` instead of being signed.
    """

    def __init__(self, cache: LeafCertificateCache, *, fallback_host: str = "localhost") -> None:
        self.cache = cache
        self.fallback_host = fallback_host

    async def resolve(self, ctx: Context, hello: ClientHello) -> CertifiedKey | None:
        """The cached or freshly issued leaf for the requested host."""
        host = hello.server_name
        if host is None:
            info = ctx.get(SocketInfo)
            host = str(info.local_addr.ip) if info is not None else self.fallback_host
        try:
            checked = Host.parse(host)
        except AddressError as exc:
            raise HandshakeError(f"refusing to issue a certificate for {host!r}: {exc}") from exc
        return await self.cache.aget(str(checked))
