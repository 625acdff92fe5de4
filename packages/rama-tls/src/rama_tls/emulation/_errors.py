"""Typed errors of the emulated TLS client.

Everything the engine raises is a :class:`~rama_tls.TlsError`:
:class:`TlsProtocolError` (and its subclasses) when the peer sent something a
TLS client must reject, :class:`TlsAlertReceived` when the peer sent a fatal
alert, :class:`~rama_tls.CertificateVerificationError` for a rejected
certificate chain. Each protocol error carries the alert the engine sends
back (``alert``), so the peer learns why.
"""

from __future__ import annotations

from .._errors import HandshakeError

__all__ = [
    "AlertDescription",
    "TlsAlertReceived",
    "TlsBadRecordMac",
    "TlsDecodeError",
    "TlsIllegalParameter",
    "TlsProtocolError",
    "TlsUnexpectedMessage",
    "TlsUnsupported",
]


class AlertDescription:
    """TLS alert description codes (RFC 8446 section 6) used by the engine."""

    CLOSE_NOTIFY = 0
    UNEXPECTED_MESSAGE = 10
    BAD_RECORD_MAC = 20
    RECORD_OVERFLOW = 22
    HANDSHAKE_FAILURE = 40
    BAD_CERTIFICATE = 42
    UNSUPPORTED_CERTIFICATE = 43
    CERTIFICATE_UNKNOWN = 46
    ILLEGAL_PARAMETER = 47
    UNKNOWN_CA = 48
    DECODE_ERROR = 50
    DECRYPT_ERROR = 51
    PROTOCOL_VERSION = 70
    INTERNAL_ERROR = 80
    USER_CANCELED = 90
    NO_RENEGOTIATION = 100
    MISSING_EXTENSION = 109
    UNSUPPORTED_EXTENSION = 110
    NO_APPLICATION_PROTOCOL = 120


class TlsProtocolError(HandshakeError):
    """The server broke the TLS protocol; ``alert`` is the alert sent back to it."""

    alert: int = AlertDescription.HANDSHAKE_FAILURE

    def __init__(self, message: str, *, alert: int | None = None) -> None:
        super().__init__(message)
        if alert is not None:
            self.alert = alert


class TlsDecodeError(TlsProtocolError):
    """A record or handshake message is malformed (lengths, vectors, values)."""

    alert = AlertDescription.DECODE_ERROR


class TlsUnexpectedMessage(TlsProtocolError):
    """A record or handshake message arrived where the state machine does not allow it."""

    alert = AlertDescription.UNEXPECTED_MESSAGE


class TlsBadRecordMac(TlsProtocolError):
    """A protected record failed authentication (tampered, or keys out of sync)."""

    alert = AlertDescription.BAD_RECORD_MAC


class TlsIllegalParameter(TlsProtocolError):
    """The server chose something the client did not offer, or a check failed
    (wrong Finished, bad signature, downgrade sentinel...)."""

    alert = AlertDescription.ILLEGAL_PARAMETER


class TlsUnsupported(TlsProtocolError):
    """The server chose a parameter this engine cannot do (e.g. a CBC cipher suite)."""

    alert = AlertDescription.HANDSHAKE_FAILURE


class TlsAlertReceived(HandshakeError):
    """The server sent a fatal alert (``description`` is its code)."""

    def __init__(self, description: int, level: int = 2) -> None:
        super().__init__(f"TLS alert from the server: {_alert_name(description)}")
        self.description = description
        self.level = level


def _alert_name(code: int) -> str:
    for name, value in vars(AlertDescription).items():
        if value == code and not name.startswith("_"):
            return f"{name.lower()} ({code})"
    return f"alert {code}"
