"""What a finished TLS handshake negotiated, as stored in the Context."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Literal

from anyio.streams.tls import TLSAttribute, TLSStream
from cryptography import x509

__all__ = ["NegotiatedTls", "TlsSide"]

TlsSide = Literal["server", "client"]


@dataclass(frozen=True, slots=True)
class NegotiatedTls:
    """The outcome of a handshake: version, cipher, ALPN, SNI and the peer certificate.

    The acceptor inserts one (``side="server"``) into each connection's
    Context; the connector inserts one (``side="client"``) for each
    connection it opens.
    """

    side: TlsSide
    version: str
    """``TLSv1.3``, ``TLSv1.2`` ..."""
    cipher: str
    """OpenSSL cipher suite name, e.g. ``TLS_AES_256_GCM_SHA384``."""
    alpn: str | None
    """The negotiated application protocol, if ALPN was agreed."""
    server_name: str | None
    """SNI: what the client asked for (server side) or sent (client side)."""
    peer_certificate_der: bytes | None = field(default=None, repr=False)
    """The peer's leaf certificate (DER): the server's, or the client's under mTLS."""
    session_reused: bool = False
    """Whether the handshake resumed an earlier session."""

    @property
    def peer_certificate(self) -> x509.Certificate | None:
        """The peer's leaf certificate, decoded."""
        if self.peer_certificate_der is None:
            return None
        return x509.load_der_x509_certificate(self.peer_certificate_der)

    @classmethod
    def from_stream(
        cls, stream: TLSStream, side: TlsSide, server_name: str | None
    ) -> NegotiatedTls:
        """Read the negotiated parameters of an established anyio TLSStream."""
        ssl_object: ssl.SSLObject = stream.extra(TLSAttribute.ssl_object)
        cipher = ssl_object.cipher()
        return cls(
            side=side,
            version=ssl_object.version() or "",
            cipher=cipher[0] if cipher else "",
            alpn=ssl_object.selected_alpn_protocol(),
            server_name=server_name,
            peer_certificate_der=ssl_object.getpeercert(binary_form=True),
            session_reused=ssl_object.session_reused,
        )
