"""ClientHello emulation: a TLS client whose ClientHello is any browser's, byte for byte."""

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

__all__ = [
    "AlertDescription",
    "ClientHelloSpec",
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
