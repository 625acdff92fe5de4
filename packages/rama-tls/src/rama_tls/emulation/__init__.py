"""ClientHello emulation: a TLS client whose ClientHello is any browser's, byte for byte."""

from ._engine import ApplicationData, CloseNotify, Event, HandshakeComplete, TlsClient
from ._errors import (
    AlertDescription,
    TlsAlertReceived,
    TlsBadRecordMac,
    TlsDecodeError,
    TlsIllegalParameter,
    TlsProtocolError,
    TlsUnexpectedMessage,
    TlsUnsupported,
)
from ._spec import ClientHelloSpec, ExtensionSpec, PaddingRule, PreparedHello
from ._stream import EmulatedTlsStream, emulated_tls_connect
from ._verify import CaSource

__all__ = [
    "AlertDescription",
    "ApplicationData",
    "CaSource",
    "ClientHelloSpec",
    "CloseNotify",
    "EmulatedTlsStream",
    "Event",
    "HandshakeComplete",
    "TlsClient",
    "emulated_tls_connect",
    "ExtensionSpec",
    "PaddingRule",
    "PreparedHello",
    "TlsAlertReceived",
    "TlsBadRecordMac",
    "TlsDecodeError",
    "TlsIllegalParameter",
    "TlsProtocolError",
    "TlsUnexpectedMessage",
    "TlsUnsupported",
]
