"""rama-tls: TLS for rama services.

* sans-IO ClientHello parsing (:mod:`rama_tls.record`, :mod:`rama_tls.client_hello`,
  :mod:`rama_tls.extensions`) and fingerprints (:mod:`rama_tls.ja3`, :mod:`rama_tls.ja4`);
* certificates (:mod:`rama_tls.certs`): CA, on-the-fly leaves, PEM I/O;
* the acceptor and connector layers (:mod:`rama_tls.acceptor`,
  :mod:`rama_tls.connector`) over any anyio ByteStream.
"""

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
from .encode import encode_client_hello_message, encode_handshake_records
from .errors import (
    CertificateError,
    ClientHelloError,
    ClientHelloTooLarge,
    HandshakeError,
    HandshakeTimeout,
    MalformedClientHello,
    NotTlsError,
    TlsError,
)
from .extensions import Extension, ExtensionType
from .grease import GREASE_VALUES, is_grease
from .ja3 import Ja3, ja3
from .ja4 import Ja4, Ja4Transport, ja4
from .record import (
    ClientHelloComplete,
    ClientHelloReader,
    NeedMore,
    parse_client_hello_records,
)

__version__ = "0.1.0"

__all__ = [
    "GREASE_VALUES",
    "CertificateAuthority",
    "CertificateError",
    "CertifiedKey",
    "ClientHello",
    "ClientHelloComplete",
    "ClientHelloError",
    "ClientHelloReader",
    "ClientHelloTooLarge",
    "Extension",
    "ExtensionType",
    "HandshakeError",
    "HandshakeTimeout",
    "Ja3",
    "Ja4",
    "Ja4Transport",
    "KeyType",
    "LeafCertificateCache",
    "MalformedClientHello",
    "NeedMore",
    "NotTlsError",
    "PrivateKey",
    "TlsError",
    "encode_client_hello_message",
    "encode_handshake_records",
    "generate_key",
    "is_grease",
    "ja3",
    "ja4",
    "parse_client_hello_body",
    "parse_client_hello_message",
    "parse_client_hello_records",
    "self_signed",
]
