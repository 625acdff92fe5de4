"""Typed errors of rama-tls.

Parsing errors derive from both :class:`~rama_core.RamaError` and
:class:`ValueError`, so callers may catch either; I/O-side errors (handshake
failures, timeouts, certificate resolution) derive from :class:`TlsError`.
"""

from __future__ import annotations

from rama_core import RamaError

__all__ = [
    "CertificateError",
    "CertificateVerificationError",
    "ClientHelloError",
    "ClientHelloTooLarge",
    "HandshakeError",
    "HandshakeTimeout",
    "MalformedClientHello",
    "MissingServerNameError",
    "NoCertificate",
    "NotTlsError",
    "PeerClosed",
    "TlsError",
]


class TlsError(RamaError):
    """Base class of every rama-tls error."""


class ClientHelloError(TlsError, ValueError):
    """The bytes are not a ClientHello rama-tls can parse."""

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        super().__init__(message if offset is None else f"{message} (at byte {offset})")
        self.offset = offset


class NotTlsError(ClientHelloError):
    """The stream does not start with a TLS handshake record carrying a ClientHello.

    Protocol detection uses this to fall back to plain text (HTTP, SOCKS...).
    """


class MalformedClientHello(ClientHelloError):
    """A length, vector or value inside the records or the ClientHello is invalid."""


class ClientHelloTooLarge(ClientHelloError):
    """The ClientHello exceeds the configured size limit."""


class HandshakeError(TlsError):
    """A TLS handshake failed (bad certificate, protocol mismatch, peer reset...)."""


class HandshakeTimeout(HandshakeError, TimeoutError):
    """The TLS handshake did not complete within its deadline."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"TLS handshake timed out after {seconds:g}s")
        self.seconds = seconds


class PeerClosed(HandshakeError):
    """The peer closed or reset the connection before the handshake finished."""


class NoCertificate(HandshakeError):
    """The acceptor's resolver has no certificate for the ClientHello (its SNI name)."""


class CertificateVerificationError(HandshakeError):
    """The peer's certificate was rejected (unknown CA, wrong host name, expired...).

    Raised by the connector for a bad server certificate and by the acceptor
    for a bad client certificate under mTLS.
    """

    def __init__(self, message: str, *, verify_code: int = 0, verify_message: str = "") -> None:
        super().__init__(message)
        self.verify_code = verify_code
        """OpenSSL's X509_V_ERR_* code (0 when unknown)."""
        self.verify_message = verify_message
        """OpenSSL's text for the code, e.g. ``unable to get local issuer certificate``."""


class MissingServerNameError(TlsError, ValueError):
    """A client handshake with verification on was asked for without a server name.

    Without a name the certificate could only be checked against the trusted
    CAs, so any certificate they issued, for any host, would be accepted. Pass
    the host name (or IP address) being connected to, set
    ``TlsClientConfig.server_name``, or opt out of the name check explicitly
    with ``TlsClientConfig(verify_hostname=False)`` (the chain is still
    verified). Raised before any byte is sent.
    """


class CertificateError(TlsError):
    """A certificate or key could not be created, loaded or resolved."""
