"""rama-tls: TLS for rama services.

* sans-IO ClientHello parsing (:mod:`rama_tls._record`, :mod:`rama_tls._client_hello`,
  :mod:`rama_tls._extensions`) and fingerprints (:mod:`rama_tls._ja3`, :mod:`rama_tls._ja4`);
* certificates (:mod:`rama_tls._certs`): CA, on-the-fly leaves, PEM I/O;
* the acceptor and connector layers (:mod:`rama_tls._acceptor`,
  :mod:`rama_tls._connector`) over any anyio ByteStream.
"""

from ._acceptor import (
    ClientAuth,
    TlsAcceptorConfig,
    TlsAcceptorLayer,
    TlsAcceptorService,
    peek_client_hello,
)
from ._certs import (
    CertificateAuthority,
    CertifiedKey,
    KeyType,
    LeafCertificateCache,
    PrivateKey,
    generate_key,
    self_signed,
)
from ._client_hello import ClientHello, parse_client_hello_body, parse_client_hello_message
from ._connector import TlsClientConfig, TlsConnector, TlsConnectorLayer, tls_connect
from ._encode import encode_client_hello_message, encode_handshake_records
from ._errors import (
    CertificateError,
    CertificateVerificationError,
    ClientHelloError,
    ClientHelloTooLarge,
    HandshakeError,
    HandshakeTimeout,
    MalformedClientHello,
    MissingServerNameError,
    NoCertificate,
    NotTlsError,
    PeerClosed,
    TlsError,
)
from ._extensions import Extension, ExtensionType
from ._fingerprint import Fingerprint
from ._grease import GREASE_VALUES, is_grease
from ._info import NegotiatedTls, TlsSide
from ._ja3 import Ja3, ja3
from ._ja4 import Ja4, Ja4Transport, ja4
from ._metrics import TlsMetrics, tls_metrics
from ._record import (
    ClientHelloComplete,
    ClientHelloReader,
    NeedMore,
    parse_client_hello_records,
)
from ._resolver import CertResolver, IssuingCertResolver, StaticCertResolver
from ._stream import TlsStream, wrap_tls

__version__ = "0.1.0"

__all__ = [
    "GREASE_VALUES",
    "CertResolver",
    "CertificateAuthority",
    "CertificateError",
    "CertificateVerificationError",
    "CertifiedKey",
    "ClientAuth",
    "ClientHello",
    "ClientHelloComplete",
    "ClientHelloError",
    "ClientHelloReader",
    "ClientHelloTooLarge",
    "Extension",
    "Fingerprint",
    "ExtensionType",
    "HandshakeError",
    "HandshakeTimeout",
    "IssuingCertResolver",
    "Ja3",
    "Ja4",
    "Ja4Transport",
    "KeyType",
    "LeafCertificateCache",
    "MalformedClientHello",
    "MissingServerNameError",
    "NeedMore",
    "NegotiatedTls",
    "NoCertificate",
    "NotTlsError",
    "PeerClosed",
    "PrivateKey",
    "StaticCertResolver",
    "TlsAcceptorConfig",
    "TlsAcceptorLayer",
    "TlsAcceptorService",
    "TlsClientConfig",
    "TlsConnector",
    "TlsConnectorLayer",
    "TlsError",
    "TlsMetrics",
    "TlsSide",
    "TlsStream",
    "encode_client_hello_message",
    "encode_handshake_records",
    "generate_key",
    "is_grease",
    "ja3",
    "ja4",
    "parse_client_hello_body",
    "parse_client_hello_message",
    "parse_client_hello_records",
    "peek_client_hello",
    "self_signed",
    "tls_connect",
    "tls_metrics",
    "wrap_tls",
]
