"""The sans-IO TLS client: bytes in, bytes out, events (like h11 for HTTP).

:class:`TlsClient` sends the ClientHello a :class:`ClientHelloSpec` describes
and completes TLS 1.3 (RFC 8446) or TLS 1.2 (RFC 5246 with ECDHE and AEAD
suites, RFC 7627 extended master secret, RFC 5746 renegotiation_info)::

    client = TlsClient(spec, "example.com", ca=None)   # None: the system store
    client.start()
    transport.send(client.data_to_send())
    for event in client.receive_data(transport.receive()):
        ...   # HandshakeComplete, ApplicationData, CloseNotify
    client.send(b"GET / HTTP/1.1 ...")

What it handles: HelloRetryRequest (with cookie; the second hello keeps the
first one's random, session id, GREASE and order), the middlebox-compatibility
change_cipher_spec (sent before the second flight, or before the second hello
after a HelloRetryRequest, when the session id is not empty; the server's are
skipped), compressed certificates (RFC 8879: zlib; brotli and zstd with
``rama-tls[compress]``), ALPN, ALPS (the server's settings are accepted and
an empty client ALPS is sent, as the protocol requires), record_size_limit,
a CertificateRequest (answered with an empty Certificate), KeyUpdate (both
directions), NewSessionTicket (ignored: no resumption, every connection is a
full handshake), alerts (a fatal one raises :class:`TlsAlertReceived`),
close_notify (the :class:`CloseNotify` event).

Every failure raises a :class:`~rama_tls.TlsError`; when the peer is at
fault the alert that tells it why is queued first (send ``data_to_send()``
before closing). The connection is then unusable.
"""

from __future__ import annotations

import contextlib
import hmac as _hmac
import importlib
import zlib
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.verification import Store

from .._errors import CertificateVerificationError, MissingServerNameError, TlsError
from .._extensions import ExtensionType
from ._crypto import (
    CIPHER_SUITES,
    CipherSuite,
    RecordProtection,
    derive_secret,
    finished_mac,
    hkdf_expand_label,
    hkdf_extract,
    prf12,
    verify_signature,
)
from ._errors import (
    AlertDescription,
    TlsAlertReceived,
    TlsDecodeError,
    TlsIllegalParameter,
    TlsProtocolError,
    TlsUnexpectedMessage,
    TlsUnsupported,
)
from ._kex import SUPPORTED_GROUPS, X25519MLKEM768, KeyExchange
from ._spec import ClientHelloSpec, PreparedHello
from ._verify import CaSource, load_store, verify_chain
from ._wire import Reader, u8, u16, u24, vec8, vec16, vec24

__all__ = [
    "ApplicationData",
    "CloseNotify",
    "Event",
    "HandshakeComplete",
    "TlsClient",
]

_T = ExtensionType
_A = AlertDescription
_HRR_RANDOM: Final = bytes.fromhex(
    "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
)
_DOWNGRADE: Final = (b"DOWNGRD\x01", b"DOWNGRD\x00")
_CCS_RECORD: Final = b"\x14\x03\x03\x00\x01\x01"
_MAX_HANDSHAKE: Final = 1 << 20
_RENEGOTIATION_SCSV = 0x00FF
"""TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746)."""
_MAX_PLAIN: Final = 1 << 14
_CV_PREFIX: Final = b" " * 64 + b"TLS 1.3, server CertificateVerify\x00"

# handshake message types
_HELLO_REQUEST, _SERVER_HELLO, _NEW_SESSION_TICKET = 0, 2, 4
_ENCRYPTED_EXTENSIONS, _CERTIFICATE, _SERVER_KEY_EXCHANGE = 8, 11, 12
_CERTIFICATE_REQUEST, _SERVER_HELLO_DONE, _CERTIFICATE_VERIFY = 13, 14, 15
_CLIENT_KEY_EXCHANGE, _FINISHED, _CERTIFICATE_STATUS = 16, 20, 22
_KEY_UPDATE, _COMPRESSED_CERTIFICATE = 24, 25

# states
_START, _WAIT_SH, _WAIT_EE, _WAIT_CERT_CR, _WAIT_CERT, _WAIT_CV, _WAIT_FIN = range(7)
_WAIT_CERT12, _WAIT_SKE, _WAIT_SHD, _WAIT_CCS12, _WAIT_FIN12 = range(7, 12)
_CONNECTED, _FAILED = 12, 14


@dataclass(frozen=True, slots=True)
class HandshakeComplete:
    """The handshake finished; what was negotiated."""

    version: str
    """``TLSv1.3`` or ``TLSv1.2``."""
    cipher_suite: str
    alpn_protocol: str | None
    group: int
    """The key exchange group (e.g. 0x11ec for X25519MLKEM768)."""


@dataclass(frozen=True, slots=True)
class ApplicationData:
    """Decrypted application bytes."""

    data: bytes


@dataclass(frozen=True, slots=True)
class CloseNotify:
    """The server sent close_notify: no more data will arrive."""


Event = HandshakeComplete | ApplicationData | CloseNotify


def _hash(algorithm: type[hashes.HashAlgorithm], data: bytes) -> bytes:
    h = hashes.Hash(algorithm())
    h.update(data)
    return h.finalize()


def _decompress(algorithm: int, data: bytes, size: int) -> bytes:
    try:
        if algorithm == 1:
            d = zlib.decompressobj()
            out = d.decompress(data, size + 1)
        elif algorithm == 2:
            brotli: Any = importlib.import_module("brotli")
            out = brotli.decompress(data)
        elif algorithm == 3:
            zstd: Any = importlib.import_module("zstandard")
            out = zstd.ZstdDecompressor().decompress(data, max_output_size=size + 1)
        else:
            raise TlsIllegalParameter(f"unknown certificate compression {algorithm}")
    except ImportError as exc:
        raise TlsUnsupported(
            "the server compressed its certificate with brotli/zstd: install rama-tls[compress]"
        ) from exc
    except TlsError:
        raise
    except Exception as exc:  # each library has its own error type
        raise TlsProtocolError(
            "compressed certificate does not decompress", alert=_A.BAD_CERTIFICATE
        ) from exc
    if len(out) != size:
        raise TlsProtocolError(
            "compressed certificate has the wrong length", alert=_A.BAD_CERTIFICATE
        )
    return bytes(out)


def _certificate_status(body: bytes) -> bytes:
    """The OCSP response of a CertificateStatus (RFC 6066 section 8)."""
    r = Reader(body, "CertificateStatus")
    if r.u8() != 1:
        raise TlsDecodeError("CertificateStatus is not an OCSP response")
    response = r.vec24()
    r.expect_end()
    return response


class TlsClient:
    """One client connection's TLS state machine (see the module docstring).

    ``verify`` (on by default) checks the server's chain against ``ca`` (a
    PEM path or bytes, certificates, a ``Store``; None: the system store) and
    ``server_name`` (a DNS name or an IP literal). ``verify=False`` skips the
    chain and name checks (the handshake signature is still checked), for
    tests and MITM upstreams.
    """

    def __init__(
        self,
        spec: ClientHelloSpec,
        server_name: str | None,
        *,
        verify: bool = True,
        ca: CaSource = None,
    ) -> None:
        if verify and not server_name:
            raise MissingServerNameError("verify=True needs the server_name to check")
        self.spec = spec
        self.server_name = server_name
        self._store: Store | None = load_store(ca) if verify else None
        self._state = _START
        self._out = bytearray()
        self._in = bytearray()
        self._hs = bytearray()
        self._transcript = bytearray()
        self._hello: PreparedHello | None = None
        self._read: RecordProtection | None = None
        self._write: RecordProtection | None = None
        self._pending_read: RecordProtection | None = None
        self._suite: CipherSuite | None = None
        self._tls13 = True
        self._hrr = False
        self._hrr_group = 0
        self._ccs_sent = False
        self._cert_requested = False
        self._cert_context = b""
        self._alps = 0
        self._max_plain = _MAX_PLAIN
        self._leaf: x509.Certificate | None = None
        self._server_random = b""
        self._ems = False
        self._ticket_expected = False
        self._ecdhe: KeyExchange | None = None
        self._pms = b""
        self._we_closed = False
        self._peer_closed = False
        self._pending_error: TlsError | None = None
        self._master = b""
        self._c_secret = b""
        self._s_secret = b""
        self._hs_secret = b""
        self.version: str | None = None
        """``TLSv1.3``/``TLSv1.2`` once the server hello arrived."""
        self.alpn_protocol: str | None = None
        """The ALPN protocol the server selected, if any."""
        self.group = 0
        """The key exchange group used."""
        self.peer_certificates: tuple[bytes, ...] = ()
        """The server's chain (DER, leaf first)."""
        self.ocsp_response: bytes | None = None
        """The OCSP response the server stapled (DER), if any; not checked."""
        self.certificate_compression: int | None = None
        """RFC 8879 algorithm the server compressed its certificate with (1 zlib, 2 brotli,
        3 zstd), None when it was not compressed."""

    # -- public API -----------------------------------------------------------------------
    @property
    def cipher_suite(self) -> str | None:
        """The negotiated cipher suite's name."""
        return self._suite.name if self._suite is not None else None

    @property
    def hello_retried(self) -> bool:
        """Whether the server answered the first hello with a HelloRetryRequest."""
        return self._hrr

    @property
    def extended_master_secret(self) -> bool:
        """TLS 1.2: whether the server agreed to the extended master secret (RFC 7627)."""
        return self._ems

    @property
    def handshake_complete(self) -> bool:
        """Whether application data can flow."""
        return self._state == _CONNECTED

    @property
    def max_plaintext(self) -> int:
        """The largest plaintext the engine puts in one record."""
        return self._max_plain

    def start(self) -> None:
        """Queue the ClientHello."""
        if self._state != _START:
            raise TlsUnexpectedMessage("the handshake was already started")
        self._hello = self.spec.prepare(self.server_name)
        self._transcript += self._hello.message
        self._out += self._hello.record
        self._state = _WAIT_SH

    @property
    def has_data_to_send(self) -> bool:
        """Whether :meth:`data_to_send` has bytes (e.g. an answer to a KeyUpdate)."""
        return bool(self._out)

    def data_to_send(self) -> bytes:
        """Bytes to write to the transport (empties the buffer)."""
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out.clear()
        return out

    def send(self, data: bytes) -> None:
        """Queue application data (split into records)."""
        if self._state != _CONNECTED or self._write is None or self._we_closed:
            raise TlsUnexpectedMessage("the connection is not open for sending")
        seal = self._write.seal
        step = self._max_plain
        if len(data) <= step:
            self._out += seal(23, data)
            return
        view = memoryview(data)
        self._out += b"".join(
            seal(23, bytes(view[i : i + step])) for i in range(0, len(data), step)
        )

    def close(self) -> None:
        """Queue close_notify; sending is over."""
        if self._we_closed or self._state == _FAILED:
            return
        self._we_closed = True
        self._send_alert(_A.CLOSE_NOTIFY, level=1)

    def key_update(self, *, request_peer: bool = True) -> None:
        """TLS 1.3: send a KeyUpdate and switch to the next sending key."""
        if self._state != _CONNECTED or not self._tls13 or self._we_closed:
            raise TlsUnexpectedMessage("KeyUpdate needs an open TLS 1.3 connection")
        self._send_key_update(request_peer)

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the transport; returns the events they complete.

        When bytes complete some events and then fail (application data
        followed by a fatal alert in one read), the events are returned and the
        error is raised by the next call (:attr:`has_pending_error` tells).
        """
        pending = self._pending_error
        if pending is not None:
            self._pending_error = None
            raise pending
        if self._state == _FAILED:
            raise TlsProtocolError("the connection already failed")
        events: list[Event] = []
        self._in += data
        try:
            self._process(events)
        except TlsError as exc:
            if isinstance(exc, TlsProtocolError):
                self._fail(exc.alert)
            elif isinstance(exc, CertificateVerificationError):
                self._fail(_A.BAD_CERTIFICATE)
            else:
                self._state = _FAILED
            if not events:
                raise
            self._pending_error = exc
        return events

    @property
    def has_pending_error(self) -> bool:
        """Whether the next :meth:`receive_data` raises an error already detected."""
        return self._pending_error is not None

    # -- records --------------------------------------------------------------------------
    def _fail(self, alert: int) -> None:
        if self._state not in (_FAILED, _START):
            with contextlib.suppress(TlsError):
                self._send_alert(alert, level=2)
        self._state = _FAILED

    def _send_alert(self, description: int, *, level: int) -> None:
        body = bytes((level, description))
        if self._write is not None:
            self._out += self._write.seal(21, body)
        else:
            self._out += b"\x15\x03\x03\x00\x02" + body

    def _process(self, events: list[Event]) -> None:
        buf = self._in
        pos = 0
        n = len(buf)
        try:
            while n - pos >= 5:
                ctype = buf[pos]
                if ctype not in (20, 21, 22, 23) or buf[pos + 1] != 3:
                    raise TlsUnexpectedMessage("the server's bytes are not TLS records")
                length = (buf[pos + 3] << 8) | buf[pos + 4]
                limit = _MAX_PLAIN + (256 if self._tls13 else 2048)
                if length > limit:
                    raise TlsProtocolError("record too large", alert=_A.RECORD_OVERFLOW)
                end = pos + 5 + length
                if end > n:
                    break
                header = bytes(buf[pos : pos + 5])
                body = bytes(buf[pos + 5 : end])
                pos = end
                self._record(ctype, header, body, events)
                if self._state in (_FAILED,):
                    break
        finally:
            del buf[:pos]

    def _record(self, ctype: int, header: bytes, body: bytes, events: list[Event]) -> None:
        if ctype == 20:
            self._change_cipher_spec(body)
            return
        read = self._read
        if read is not None:
            ctype, body = read.open(ctype, header, body)
            if len(body) > _MAX_PLAIN:
                raise TlsProtocolError("record plaintext too large", alert=_A.RECORD_OVERFLOW)
        elif ctype == 23:
            raise TlsUnexpectedMessage("application data before the keys were set")
        if ctype == 23:
            if self._state != _CONNECTED:
                raise TlsUnexpectedMessage("application data during the handshake")
            if self._peer_closed:
                raise TlsUnexpectedMessage("application data after close_notify")
            if body:
                events.append(ApplicationData(body))
        elif ctype == 22:
            if not body:
                raise TlsDecodeError("empty handshake record")
            self._hs += body
            self._handshake_messages(events)
        elif ctype == 21:
            self._alert(body, events)
        else:
            raise TlsUnexpectedMessage(f"record type {ctype} inside protected records")

    def _change_cipher_spec(self, body: bytes) -> None:
        if body != b"\x01":
            raise TlsDecodeError("malformed change_cipher_spec")
        if self._tls13:
            if self._state in (_WAIT_EE, _WAIT_CERT_CR, _WAIT_CERT, _WAIT_CV, _WAIT_FIN) or (
                self._state == _WAIT_SH and self._hrr
            ):
                return  # middlebox compatibility: skipped
            raise TlsUnexpectedMessage("change_cipher_spec out of place")
        if self._state != _WAIT_CCS12 or self._hs:
            raise TlsUnexpectedMessage("change_cipher_spec out of place")
        self._read = self._pending_read
        self._state = _WAIT_FIN12

    def _alert(self, body: bytes, events: list[Event]) -> None:
        if len(body) != 2:
            raise TlsDecodeError("malformed alert")
        level, description = body[0], body[1]
        if description == _A.CLOSE_NOTIFY:
            if self._state != _CONNECTED:
                raise TlsAlertReceived(description, level)
            self._peer_closed = True
            events.append(CloseNotify())
            return
        if description == _A.USER_CANCELED or (level == 1 and not self._tls13):
            return
        self._state = _FAILED
        raise TlsAlertReceived(description, level)

    # -- handshake ------------------------------------------------------------------------
    def _handshake_messages(self, events: list[Event]) -> None:
        hs = self._hs
        while len(hs) >= 4:
            mlen = int.from_bytes(hs[1:4], "big")
            if mlen > _MAX_HANDSHAKE:
                raise TlsDecodeError("handshake message too large")
            if len(hs) < 4 + mlen:
                return
            mtype = hs[0]
            msg = bytes(hs[: 4 + mlen])
            del hs[: 4 + mlen]
            self._message(mtype, msg, events)

    def _aligned(self) -> None:
        """A key change must fall on a record boundary (RFC 8446 section 5.1)."""
        if self._hs:
            raise TlsUnexpectedMessage("handshake data spans a key change")

    def _message(self, mtype: int, msg: bytes, events: list[Event]) -> None:
        state = self._state
        body = msg[4:]
        if state == _WAIT_SH and mtype == _SERVER_HELLO:
            self._server_hello(body, msg)
        elif state == _WAIT_EE and mtype == _ENCRYPTED_EXTENSIONS:
            self._encrypted_extensions(body)
            self._transcript += msg
            self._state = _WAIT_CERT_CR
        elif state == _WAIT_CERT_CR and mtype == _CERTIFICATE_REQUEST:
            r = Reader(body, "CertificateRequest")
            self._cert_context = r.vec8()
            r.extensions()
            r.expect_end()
            self._cert_requested = True
            self._transcript += msg
            self._state = _WAIT_CERT
        elif state in (_WAIT_CERT_CR, _WAIT_CERT) and mtype == _CERTIFICATE:
            self._certificate13(body)
            self._transcript += msg
            self._state = _WAIT_CV
        elif state in (_WAIT_CERT_CR, _WAIT_CERT) and mtype == _COMPRESSED_CERTIFICATE:
            self._certificate13(self._decompress_certificate(body))
            self._transcript += msg
            self._state = _WAIT_CV
        elif state == _WAIT_CV and mtype == _CERTIFICATE_VERIFY:
            self._certificate_verify(body)
            self._transcript += msg
            self._state = _WAIT_FIN
        elif state == _WAIT_FIN and mtype == _FINISHED:
            self._finished13(body, msg)
            events.append(self._complete())
        elif state == _WAIT_CERT12 and mtype == _CERTIFICATE:
            self._certificate12(body)
            self._transcript += msg
            self._state = _WAIT_SKE
        elif state == _WAIT_SKE and mtype == _CERTIFICATE_STATUS:
            self.ocsp_response = _certificate_status(body)
            self._transcript += msg
        elif state == _WAIT_SKE and mtype == _SERVER_KEY_EXCHANGE:
            self._server_key_exchange(body)
            self._transcript += msg
            self._state = _WAIT_SHD
        elif state == _WAIT_SHD and mtype == _CERTIFICATE_REQUEST:
            self._cert_requested = True
            self._transcript += msg
        elif state == _WAIT_SHD and mtype == _SERVER_HELLO_DONE:
            if body:
                raise TlsDecodeError("ServerHelloDone is not empty")
            self._transcript += msg
            self._client_flight12()
        elif state == _WAIT_CCS12 and mtype == _NEW_SESSION_TICKET and self._ticket_expected:
            self._transcript += msg  # session tickets are ignored
        elif state == _WAIT_FIN12 and mtype == _FINISHED:
            self._finished12(body)
            events.append(self._complete())
        elif state == _CONNECTED:
            self._post_handshake(mtype, body)
        else:
            raise TlsUnexpectedMessage(f"unexpected handshake message {mtype} (state {state})")

    def _complete(self) -> HandshakeComplete:
        self._state = _CONNECTED
        assert self._suite is not None
        return HandshakeComplete(
            self.version or "", self._suite.name, self.alpn_protocol, self.group
        )

    # -- ServerHello --------------------------------------------------------------------
    def _server_hello(self, body: bytes, msg: bytes) -> None:
        hello = self._hello
        assert hello is not None
        spec = self.spec
        r = Reader(body, "ServerHello")
        legacy_version = r.u16()
        random = r.take(32)
        session_id = r.vec8()
        suite_code = r.u16()
        compression = r.u8()
        exts = r.extensions()
        r.expect_end()
        offered = spec.supported_versions
        if _T.SUPPORTED_VERSIONS in exts:
            sv = Reader(exts[_T.SUPPORTED_VERSIONS], "supported_versions")
            version = sv.u16()
            sv.expect_end()
            if version != 0x0304 or version not in offered:
                raise TlsIllegalParameter(f"server selected version 0x{version:04x}")
        else:
            version = legacy_version
            if version != 0x0303 or 0x0303 not in offered or self._hrr:
                raise TlsProtocolError(
                    f"server selected version 0x{version:04x}", alert=_A.PROTOCOL_VERSION
                )
            if 0x0304 in offered and random[-8:] in _DOWNGRADE:
                raise TlsIllegalParameter("TLS 1.3 downgrade sentinel in the server random")
        if compression != 0:
            raise TlsIllegalParameter("server selected a compression method")
        if suite_code not in spec.cipher_suites:
            raise TlsIllegalParameter(
                f"server selected cipher suite 0x{suite_code:04x} we did not offer"
            )
        suite = CIPHER_SUITES.get(suite_code)
        if suite is None:
            raise TlsUnsupported(f"cipher suite 0x{suite_code:04x} is not supported by the engine")
        if suite.tls13 != (version == 0x0304):
            raise TlsIllegalParameter("cipher suite does not match the version")
        if self._suite is not None and self._suite is not suite:
            raise TlsIllegalParameter("cipher suite changed after HelloRetryRequest")
        self._suite = suite
        if version == 0x0303:
            self._server_hello12(random, exts, msg)
            return
        if session_id != hello.session_id:
            raise TlsIllegalParameter("server did not echo the session id")
        if random == _HRR_RANDOM:
            self._hello_retry(exts, msg)
            return
        self.version = "TLSv1.3"
        for ext in exts:
            if ext not in (_T.SUPPORTED_VERSIONS, _T.KEY_SHARE):
                raise TlsProtocolError(
                    f"ServerHello extension 0x{ext:04x} not allowed",
                    alert=_A.UNSUPPORTED_EXTENSION
                    if ext != _T.PRE_SHARED_KEY
                    else _A.ILLEGAL_PARAMETER,
                )
        if _T.KEY_SHARE not in exts:
            raise TlsProtocolError("ServerHello without key_share", alert=_A.MISSING_EXTENSION)
        ks = Reader(exts[_T.KEY_SHARE], "key_share")
        group = ks.u16()
        share = ks.vec16()
        ks.expect_end()
        key = hello.keys.get(group)
        if key is None and not self._hrr and group in self.spec.key_share_groups:
            # a share kept for the fingerprint only (e.g. the Kyber draft 0x6399)
            raise TlsUnsupported(f"group 0x{group:04x} is not supported by the engine")
        if key is None or (self._hrr and group != self._hrr_group):
            raise TlsIllegalParameter(f"server key share for group 0x{group:04x} we did not send")
        shared = key.shared_secret(share)
        self.group = group
        self._transcript += msg
        alg = suite.hash()
        zeros = bytes(suite.hash_len)
        early = hkdf_extract(alg, b"", zeros)
        empty_hash = _hash(suite.hash, b"")
        derived = derive_secret(alg, early, b"derived", empty_hash)
        self._hs_secret = hkdf_extract(alg, derived, shared)
        th = _hash(suite.hash, bytes(self._transcript))
        self._c_secret = derive_secret(alg, self._hs_secret, b"c hs traffic", th)
        self._s_secret = derive_secret(alg, self._hs_secret, b"s hs traffic", th)
        self._aligned()
        self._read = self._protection(self._s_secret)
        self._write = self._protection(self._c_secret)
        self._state = _WAIT_EE

    def _protection(self, secret: bytes) -> RecordProtection:
        suite = self._suite
        assert suite is not None
        alg = suite.hash()
        key = hkdf_expand_label(alg, secret, b"key", b"", suite.key_len)
        iv = hkdf_expand_label(alg, secret, b"iv", b"", 12)
        return RecordProtection(suite, key, iv, tls13=True)

    def _hello_retry(self, exts: dict[int, bytes], msg: bytes) -> None:
        hello = self._hello
        suite = self._suite
        assert hello is not None
        assert suite is not None
        if self._hrr:
            raise TlsUnexpectedMessage("a second HelloRetryRequest")
        self._hrr = True
        for ext in exts:
            if ext not in (_T.SUPPORTED_VERSIONS, _T.KEY_SHARE, _T.COOKIE):
                raise TlsProtocolError(
                    f"HelloRetryRequest extension 0x{ext:04x} not allowed",
                    alert=_A.UNSUPPORTED_EXTENSION,
                )
        cookie: bytes | None = None
        if _T.COOKIE in exts:
            cr = Reader(exts[_T.COOKIE], "cookie")
            cookie = cr.vec16()
            cr.expect_end()
            if not cookie:
                raise TlsDecodeError("empty cookie")
        group = 0
        if _T.KEY_SHARE in exts:
            kr = Reader(exts[_T.KEY_SHARE], "key_share")
            group = kr.u16()
            kr.expect_end()
            if group not in self.spec.supported_groups or group in hello.keys:
                raise TlsIllegalParameter(f"HelloRetryRequest selected group 0x{group:04x}")
            if group not in SUPPORTED_GROUPS:
                raise TlsUnsupported(f"group 0x{group:04x} is not supported by the engine")
        elif cookie is None:
            raise TlsIllegalParameter("HelloRetryRequest changes nothing")
        if not group:  # cookie only: resend the same shares
            group = next(iter(hello.keys), 0)
        self._hrr_group = group
        first_hash = _hash(suite.hash, bytes(self._transcript))
        self._transcript = bytearray(b"\xfe" + u24(len(first_hash)) + first_hash + msg)
        self._aligned()
        if hello.session_id and not self._ccs_sent:
            self._out += _CCS_RECORD
            self._ccs_sent = True
        second = hello.retry(group, cookie)
        self._transcript += second
        self._out += hello.record

    # -- TLS 1.3 server flight ------------------------------------------------------------
    def _encrypted_extensions(self, body: bytes) -> None:
        r = Reader(body, "EncryptedExtensions")
        exts = r.extensions()
        r.expect_end()
        self._negotiate_alpn(exts)
        for ext, data in exts.items():
            if ext == _T.RECORD_SIZE_LIMIT:
                lr = Reader(data, "record_size_limit")
                limit = lr.u16()
                lr.expect_end()
                if limit < 64:
                    raise TlsIllegalParameter("record_size_limit below 64")
                self._max_plain = min(_MAX_PLAIN, limit - 1)
            elif ext in (_T.APPLICATION_SETTINGS, _T.APPLICATION_SETTINGS_OLD):
                if self.alpn_protocol is None:
                    raise TlsIllegalParameter("ALPS without ALPN")
                self._alps = ext
            if not self.spec.has_extension(ext):
                raise TlsProtocolError(
                    f"server sent extension 0x{ext:04x} we did not offer",
                    alert=_A.UNSUPPORTED_EXTENSION,
                )

    def _negotiate_alpn(self, exts: dict[int, bytes]) -> None:
        data = exts.get(_T.APPLICATION_LAYER_PROTOCOL_NEGOTIATION)
        if data is None:
            return
        r = Reader(data, "ALPN")
        lst = Reader(r.vec16(), "ALPN")
        r.expect_end()
        proto = lst.vec8()
        lst.expect_end()
        if proto not in self.spec.alpn_protocols:
            raise TlsIllegalParameter("server selected an ALPN protocol we did not offer")
        self.alpn_protocol = proto.decode("latin-1")

    def _decompress_certificate(self, body: bytes) -> bytes:
        r = Reader(body, "CompressedCertificate")
        algorithm = r.u16()
        size = r.u24()
        data = r.vec24()
        r.expect_end()
        if algorithm not in self.spec.compress_certificate_algorithms:
            raise TlsIllegalParameter(f"certificate compressed with {algorithm}, not offered")
        if size == 0 or size > _MAX_HANDSHAKE:
            raise TlsProtocolError("bad uncompressed certificate length", alert=_A.BAD_CERTIFICATE)
        self.certificate_compression = algorithm
        return _decompress(algorithm, data, size)

    def _certificate13(self, body: bytes) -> None:
        r = Reader(body, "Certificate")
        if r.vec8():
            raise TlsIllegalParameter("server Certificate with a request context")
        lst = Reader(r.vec24(), "certificate_list")
        r.expect_end()
        chain: list[bytes] = []
        while not lst.at_end():
            chain.append(lst.vec24())
            exts = Reader(lst.vec16(), "CertificateEntry").extension_entries()
            if len(chain) == 1 and _T.STATUS_REQUEST in exts:
                self.ocsp_response = _certificate_status(exts[_T.STATUS_REQUEST])
        self._set_chain(chain)

    def _certificate12(self, body: bytes) -> None:
        r = Reader(body, "Certificate")
        lst = Reader(r.vec24(), "certificate_list")
        r.expect_end()
        chain: list[bytes] = []
        while not lst.at_end():
            chain.append(lst.vec24())
        self._set_chain(chain)

    def _set_chain(self, chain: list[bytes]) -> None:
        if not chain:
            raise TlsDecodeError("the server sent an empty certificate list")
        self.peer_certificates = tuple(chain)
        if self._store is not None:
            assert self.server_name is not None
            self._leaf = verify_chain(chain, self.server_name, self._store)
            return
        try:
            self._leaf = x509.load_der_x509_certificate(chain[0])
        except (ValueError, x509.InvalidVersion) as exc:
            raise TlsProtocolError(
                "the server's certificate cannot be parsed", alert=_A.BAD_CERTIFICATE
            ) from exc

    def _leaf_key(self) -> object:
        assert self._leaf is not None
        try:
            return self._leaf.public_key()
        except Exception as exc:  # unsupported key algorithm
            raise TlsProtocolError(
                "unsupported certificate key", alert=_A.UNSUPPORTED_CERTIFICATE
            ) from exc

    def _certificate_verify(self, body: bytes) -> None:
        suite = self._suite
        assert suite is not None
        r = Reader(body, "CertificateVerify")
        scheme = r.u16()
        signature = r.vec16()
        r.expect_end()
        if scheme not in self.spec.signature_algorithms:
            raise TlsIllegalParameter(f"signature scheme 0x{scheme:04x} was not offered")
        content = _CV_PREFIX + _hash(suite.hash, bytes(self._transcript))
        verify_signature(self._leaf_key(), scheme, signature, content, tls13=True)

    def _finished13(self, body: bytes, msg: bytes) -> None:
        suite = self._suite
        hello = self._hello
        assert suite is not None
        assert hello is not None
        alg = suite.hash()
        expected = finished_mac(alg, self._s_secret, _hash(suite.hash, bytes(self._transcript)))
        if not _hmac.compare_digest(expected, body):
            raise TlsProtocolError("the server's Finished is wrong", alert=_A.DECRYPT_ERROR)
        self._transcript += msg
        self._aligned()
        derived = derive_secret(alg, self._hs_secret, b"derived", _hash(suite.hash, b""))
        master = hkdf_extract(alg, derived, bytes(suite.hash_len))
        th = _hash(suite.hash, bytes(self._transcript))
        c_ap = derive_secret(alg, master, b"c ap traffic", th)
        s_ap = derive_secret(alg, master, b"s ap traffic", th)
        self._read = self._protection(s_ap)
        if hello.session_id and not self._ccs_sent:
            self._out += _CCS_RECORD
            self._ccs_sent = True
        write = self._write
        assert write is not None
        if self._alps:
            # ALPS: the client's settings (none) in its EncryptedExtensions
            alps = u16(self._alps) + vec16(b"")
            ee = b"\x08" + vec24(vec16(alps))
            self._transcript += ee
            self._out += write.seal(22, ee)
        if self._cert_requested:
            cert = b"\x0b" + vec24(vec8(self._cert_context) + vec24(b""))
            self._transcript += cert
            self._out += write.seal(22, cert)
        fin = finished_mac(alg, self._c_secret, _hash(suite.hash, bytes(self._transcript)))
        fin_msg = b"\x14" + vec24(fin)
        self._out += write.seal(22, fin_msg)
        self._transcript += fin_msg
        self._c_secret, self._s_secret = c_ap, s_ap
        self._write = self._protection(c_ap)
        self._hs_secret = b""

    def _post_handshake(self, mtype: int, body: bytes) -> None:
        if self._tls13 and mtype == _NEW_SESSION_TICKET:
            return  # no resumption: tickets are ignored
        if self._tls13 and mtype == _KEY_UPDATE:
            if len(body) != 1 or body[0] > 1:
                raise TlsDecodeError("malformed KeyUpdate")
            self._aligned()
            suite = self._suite
            assert suite is not None
            self._s_secret = hkdf_expand_label(
                suite.hash(), self._s_secret, b"traffic upd", b"", suite.hash_len
            )
            self._read = self._protection(self._s_secret)
            if body[0] == 1 and not self._we_closed:
                self._send_key_update(False)
            return
        if not self._tls13 and mtype == _HELLO_REQUEST:
            self._send_alert(_A.NO_RENEGOTIATION, level=1)  # renegotiation is declined
            return
        raise TlsUnexpectedMessage(f"unexpected post-handshake message {mtype}")

    def _send_key_update(self, request_peer: bool) -> None:
        suite = self._suite
        write = self._write
        assert suite is not None
        assert write is not None
        self._out += write.seal(22, b"\x18\x00\x00\x01" + u8(1 if request_peer else 0))
        self._c_secret = hkdf_expand_label(
            suite.hash(), self._c_secret, b"traffic upd", b"", suite.hash_len
        )
        self._write = self._protection(self._c_secret)

    # -- TLS 1.2 --------------------------------------------------------------------------
    def _server_hello12(self, random: bytes, exts: dict[int, bytes], msg: bytes) -> None:
        self._tls13 = False
        self.version = "TLSv1.2"
        self._server_random = random
        for ext, data in exts.items():
            if ext == _T.RENEGOTIATION_INFO:
                if data != b"\x00":
                    raise TlsProtocolError("bad renegotiation_info", alert=_A.HANDSHAKE_FAILURE)
            elif ext == _T.EXTENDED_MASTER_SECRET:
                if data:
                    raise TlsDecodeError("extended_master_secret is not empty")
                self._ems = True
            elif ext == _T.SESSION_TICKET:
                self._ticket_expected = True
            elif ext == _T.RECORD_SIZE_LIMIT:
                lr = Reader(data, "record_size_limit")
                limit = lr.u16()
                lr.expect_end()
                if limit < 64:
                    raise TlsIllegalParameter("record_size_limit below 64")
                self._max_plain = min(_MAX_PLAIN, limit)
            if not self.spec.has_extension(ext) and not (
                # RFC 5746 section 3.4: the SCSV offers renegotiation_info as well
                ext == _T.RENEGOTIATION_INFO and _RENEGOTIATION_SCSV in self.spec.cipher_suites
            ):
                raise TlsProtocolError(
                    f"server sent extension 0x{ext:04x} we did not offer",
                    alert=_A.UNSUPPORTED_EXTENSION,
                )
        self._negotiate_alpn(exts)
        self._transcript += msg
        self._state = _WAIT_CERT12

    def _server_key_exchange(self, body: bytes) -> None:
        suite = self._suite
        hello = self._hello
        assert suite is not None
        assert hello is not None
        r = Reader(body, "ServerKeyExchange")
        if r.u8() != 3:
            raise TlsIllegalParameter("ServerKeyExchange is not a named curve")
        group = r.u16()
        public = r.vec8()
        params = body[: 4 + len(public)]
        scheme = r.u16()
        signature = r.vec16()
        r.expect_end()
        if group not in self.spec.supported_groups or group == X25519MLKEM768:
            raise TlsIllegalParameter(f"server selected group 0x{group:04x}")
        if group not in SUPPORTED_GROUPS:
            raise TlsUnsupported(f"group 0x{group:04x} is not supported by the engine")
        if scheme not in self.spec.signature_algorithms:
            raise TlsIllegalParameter(f"signature scheme 0x{scheme:04x} was not offered")
        key = self._leaf_key()
        expected_type = rsa.RSAPublicKey if suite.signature == "RSA" else ec.EllipticCurvePublicKey
        if not isinstance(key, expected_type):
            raise TlsIllegalParameter("certificate key does not match the cipher suite")
        verify_signature(
            key, scheme, signature, hello.random + self._server_random + params, tls13=False
        )
        self._ecdhe = KeyExchange(group)
        self._pms = self._ecdhe.shared_secret(public)
        self.group = group

    def _client_flight12(self) -> None:
        suite = self._suite
        hello = self._hello
        ecdhe = self._ecdhe
        if ecdhe is None:
            raise TlsUnexpectedMessage("ServerHelloDone before ServerKeyExchange")
        assert suite is not None
        assert hello is not None
        alg = suite.hash()
        if self._cert_requested:
            cert = b"\x0b" + vec24(vec24(b""))
            self._transcript += cert
            self._out += b"\x16\x03\x03" + vec16(cert)
        cke = b"\x10" + vec24(vec8(ecdhe.public))
        self._transcript += cke
        if self._ems:
            session_hash = _hash(suite.hash, bytes(self._transcript))
            master = prf12(alg, self._pms, b"extended master secret", session_hash, 48)
        else:
            master = prf12(alg, self._pms, b"master secret", hello.random + self._server_random, 48)
        self._pms = b""
        self._master = master
        iv_len = 12 if suite.chacha else 4
        block = prf12(
            alg,
            master,
            b"key expansion",
            self._server_random + hello.random,
            2 * (suite.key_len + iv_len),
        )
        k = suite.key_len
        c_key, s_key = block[:k], block[k : 2 * k]
        c_iv, s_iv = block[2 * k : 2 * k + iv_len], block[2 * k + iv_len :]
        self._out += b"\x16\x03\x03" + vec16(cke) + _CCS_RECORD
        self._write = RecordProtection(suite, c_key, c_iv, tls13=False)
        self._pending_read = RecordProtection(suite, s_key, s_iv, tls13=False)
        verify = prf12(
            alg, master, b"client finished", _hash(suite.hash, bytes(self._transcript)), 12
        )
        fin = b"\x14" + vec24(verify)
        self._out += self._write.seal(22, fin)
        self._transcript += fin
        self._state = _WAIT_CCS12

    def _finished12(self, body: bytes) -> None:
        suite = self._suite
        assert suite is not None
        expected = prf12(
            suite.hash(),
            self._master,
            b"server finished",
            _hash(suite.hash, bytes(self._transcript)),
            12,
        )
        if not _hmac.compare_digest(expected, body):
            raise TlsProtocolError("the server's Finished is wrong", alert=_A.DECRYPT_ERROR)
        self._aligned()
