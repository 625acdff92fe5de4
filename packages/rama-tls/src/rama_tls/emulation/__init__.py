"""ClientHello emulation: a TLS client whose ClientHello is any browser's, byte for byte.

* :class:`ClientHelloSpec` - a declarative hello (from a rama-ua profile or a
  captured :class:`rama_tls.ClientHello`); ``build`` makes a fresh record.
* :class:`TlsClient` - the sans-IO TLS 1.3/1.2 client state machine.
* :func:`emulated_tls_connect` - the anyio adapter, returning an
  :class:`EmulatedTlsStream`; :class:`EmulatedTlsConnector` - the same as a
  rama connector service.
"""

from ._connector import EmulatedTlsConnector, EmulatedTlsConnectorLayer
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
    "EmulatedTlsConnector",
    "EmulatedTlsConnectorLayer",
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
