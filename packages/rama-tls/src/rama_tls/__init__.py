"""rama-tls: TLS for rama services.

* sans-IO ClientHello parsing (:mod:`rama_tls.record`, :mod:`rama_tls.client_hello`,
  :mod:`rama_tls.extensions`) and fingerprints (:mod:`rama_tls.ja3`, :mod:`rama_tls.ja4`);
* certificates (:mod:`rama_tls.certs`): CA, on-the-fly leaves, PEM I/O;
* the acceptor and connector layers (:mod:`rama_tls.acceptor`,
  :mod:`rama_tls.connector`) over any anyio ByteStream.
"""

from .acceptor import (
    ClientAuth,
    TlsAcceptorConfig,
    TlsAcceptorLayer,
    TlsAcceptorService,
    peek_client_hello,
)
from .certs import (
    CertificateAuthority,
    CertifiedKey,
    KeyType,
    LeafCertificateCache,
    PrivateKey,
    generate_key,
    self_signed,
)
from .client_hello import ClientHello, parse_client_hello_body, parse_client_hello_message
from .connector import TlsClientConfig, TlsConnector, TlsConnectorLayer, tls_connect
from .encode import encode_client_hello_message, encode_handshake_records
from .errors import (
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
from .extensions import Extension, ExtensionType
from .fingerprint import Fingerprint
from .grease import GREASE_VALUES, is_grease
from .info import NegotiatedTls, TlsSide
from .ja3 import Ja3, ja3
from .ja4 import Ja4, Ja4Transport, ja4
from .metrics import TlsMetrics, tls_metrics
from .record import (
    ClientHelloComplete,
    ClientHelloReader,
    NeedMore,
    parse_client_hello_records,
)
from .resolver import CertResolver, IssuingCertResolver, StaticCertResolver
from .stream import TlsStream, wrap_tls

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
