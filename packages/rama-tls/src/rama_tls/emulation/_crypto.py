"""Cipher suites, record protection, key schedules and signatures (``cryptography`` only).

* :class:`RecordProtection`: one direction's AEAD state. TLS 1.3 (RFC 8446
  section 5.2: per-record nonce = iv XOR sequence number, the inner content
  type, the record header as additional data) and TLS 1.2 (RFC 5288 AES-GCM
  with an explicit 8-byte nonce, RFC 7905 ChaCha20-Poly1305).
* :func:`hkdf_expand_label`, :func:`derive_secret` and :func:`hkdf_extract`
  for the TLS 1.3 key schedule; :func:`prf12` for TLS 1.2.
* :func:`verify_signature`: RSA-PKCS1, RSA-PSS, ECDSA, Ed25519 and Ed448
  schemes over the server's certificate key.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ._errors import (
    AlertDescription,
    TlsBadRecordMac,
    TlsIllegalParameter,
    TlsProtocolError,
)

__all__ = [
    "CIPHER_SUITES",
    "CipherSuite",
    "RecordProtection",
    "derive_secret",
    "hkdf_expand_label",
    "hkdf_extract",
    "prf12",
    "verify_signature",
]

_AEAD = AESGCM | ChaCha20Poly1305


@dataclass(frozen=True, slots=True)
class CipherSuite:
    """What the engine needs to know of a cipher suite."""

    code: int
    name: str
    key_len: int
    hash: type[hashes.SHA256] | type[hashes.SHA384]
    chacha: bool
    tls13: bool
    signature: str = ""
    """TLS 1.2: the server key type of the suite (``RSA`` or ``ECDSA``)."""

    @property
    def hash_len(self) -> int:
        """Output length of the suite's hash."""
        return self.hash.digest_size

    def aead(self, key: bytes) -> _AEAD:
        """A fresh AEAD object for ``key``."""
        return ChaCha20Poly1305(key) if self.chacha else AESGCM(key)


_SHA256, _SHA384 = hashes.SHA256, hashes.SHA384
CIPHER_SUITES: dict[int, CipherSuite] = {
    s.code: s
    for s in (
        CipherSuite(0x1301, "TLS_AES_128_GCM_SHA256", 16, _SHA256, False, True),
        CipherSuite(0x1302, "TLS_AES_256_GCM_SHA384", 32, _SHA384, False, True),
        CipherSuite(0x1303, "TLS_CHACHA20_POLY1305_SHA256", 32, _SHA256, True, True),
        CipherSuite(0xC02B, "ECDHE-ECDSA-AES128-GCM-SHA256", 16, _SHA256, False, False, "ECDSA"),
        CipherSuite(0xC02C, "ECDHE-ECDSA-AES256-GCM-SHA384", 32, _SHA384, False, False, "ECDSA"),
        CipherSuite(0xC02F, "ECDHE-RSA-AES128-GCM-SHA256", 16, _SHA256, False, False, "RSA"),
        CipherSuite(0xC030, "ECDHE-RSA-AES256-GCM-SHA384", 32, _SHA384, False, False, "RSA"),
        CipherSuite(0xCCA8, "ECDHE-RSA-CHACHA20-POLY1305", 32, _SHA256, True, False, "RSA"),
        CipherSuite(0xCCA9, "ECDHE-ECDSA-CHACHA20-POLY1305", 32, _SHA256, True, False, "ECDSA"),
    )
}
"""Suites the engine can complete (others may be offered for the fingerprint)."""


# -- HMAC / HKDF / PRF ------------------------------------------------------------------
def _hmac(algorithm: hashes.HashAlgorithm, key: bytes, data: bytes) -> bytes:
    h = hmac.HMAC(key, algorithm)
    h.update(data)
    return h.finalize()


def hkdf_extract(algorithm: hashes.HashAlgorithm, salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract (RFC 5869): HMAC(salt, ikm)."""
    return _hmac(algorithm, salt or bytes(algorithm.digest_size), ikm)


def _hkdf_expand(algorithm: hashes.HashAlgorithm, prk: bytes, info: bytes, length: int) -> bytes:
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = _hmac(algorithm, prk, block + info + bytes((counter,)))
        out += block
        counter += 1
    return out[:length]


def hkdf_expand_label(
    algorithm: hashes.HashAlgorithm, secret: bytes, label: bytes, context: bytes, length: int
) -> bytes:
    """HKDF-Expand-Label (RFC 8446 section 7.1)."""
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes((len(full),)) + full + bytes((len(context),)) + context
    return _hkdf_expand(algorithm, secret, info, length)


def derive_secret(
    algorithm: hashes.HashAlgorithm, secret: bytes, label: bytes, transcript_hash: bytes
) -> bytes:
    """Derive-Secret (RFC 8446 section 7.1) given the transcript hash."""
    return hkdf_expand_label(algorithm, secret, label, transcript_hash, algorithm.digest_size)


def finished_mac(algorithm: hashes.HashAlgorithm, base_key: bytes, transcript_hash: bytes) -> bytes:
    """TLS 1.3 Finished verify_data."""
    key = hkdf_expand_label(algorithm, base_key, b"finished", b"", algorithm.digest_size)
    return _hmac(algorithm, key, transcript_hash)


def prf12(
    algorithm: hashes.HashAlgorithm, secret: bytes, label: bytes, seed: bytes, length: int
) -> bytes:
    """The TLS 1.2 PRF (RFC 5246 section 5): P_hash(secret, label + seed)."""
    full_seed = label + seed
    out = b""
    a = full_seed
    while len(out) < length:
        a = _hmac(algorithm, secret, a)
        out += _hmac(algorithm, secret, a + full_seed)
    return out[:length]


# -- record protection --------------------------------------------------------------------
class RecordProtection:
    """One direction's AEAD keys and sequence number.

    ``tls13`` selects the TLS 1.3 record format (inner content type, nonce =
    iv XOR seq); otherwise TLS 1.2 (GCM: fixed 4-byte iv and an explicit
    8-byte nonce in each record; ChaCha20-Poly1305: iv XOR seq).
    """

    __slots__ = ("_aead", "_explicit", "_iv", "_iv_int", "seq", "tls13")

    def __init__(self, suite: CipherSuite, key: bytes, iv: bytes, *, tls13: bool) -> None:
        self._aead = suite.aead(key)
        self.tls13 = tls13
        self._explicit = not tls13 and not suite.chacha
        self._iv = iv
        self._iv_int = int.from_bytes(iv, "big") if len(iv) == 12 else 0
        self.seq = 0

    def _nonce(self, seq: int) -> bytes:
        if self._explicit:
            return self._iv + seq.to_bytes(8, "big")
        return (self._iv_int ^ seq).to_bytes(12, "big")

    def seal(self, content_type: int, data: bytes) -> bytes:
        """A whole protected record (header included) carrying ``data``."""
        seq = self.seq
        self.seq = seq + 1
        nonce = self._nonce(seq)
        if self.tls13:
            length = len(data) + 17
            header = b"\x17\x03\x03" + length.to_bytes(2, "big")
            return header + self._aead.encrypt(nonce, data + bytes((content_type,)), header)
        aad = seq.to_bytes(8, "big") + bytes((content_type, 3, 3)) + len(data).to_bytes(2, "big")
        sealed = self._aead.encrypt(nonce, data, aad)
        if self._explicit:
            sealed = nonce[4:] + sealed
        return bytes((content_type, 3, 3)) + len(sealed).to_bytes(2, "big") + sealed

    def open(self, content_type: int, header: bytes, body: bytes) -> tuple[int, bytes]:
        """Decrypt one record; returns (content type, plaintext). Bad MAC raises."""
        seq = self.seq
        self.seq = seq + 1
        if self.tls13:
            if content_type != 23:
                raise TlsProtocolError(
                    f"record type {content_type} after encryption started",
                    alert=AlertDescription.UNEXPECTED_MESSAGE,
                )
            if len(body) < 17:
                raise TlsBadRecordMac("protected record too short")
            try:
                inner = self._aead.decrypt(self._nonce(seq), body, header)
            except InvalidTag as exc:
                raise TlsBadRecordMac("record authentication failed") from exc
            end = len(inner)
            while end and inner[end - 1] == 0:
                end -= 1
            if not end:
                raise TlsProtocolError(
                    "protected record without content type",
                    alert=AlertDescription.UNEXPECTED_MESSAGE,
                )
            return inner[end - 1], inner[: end - 1]
        if self._explicit:
            if len(body) < 24:
                raise TlsBadRecordMac("protected record too short")
            nonce = self._iv + body[:8]
            body = body[8:]
        else:
            if len(body) < 16:
                raise TlsBadRecordMac("protected record too short")
            nonce = self._nonce(seq)
        aad = seq.to_bytes(8, "big") + header[:3] + (len(body) - 16).to_bytes(2, "big")
        try:
            return content_type, self._aead.decrypt(nonce, body, aad)
        except InvalidTag as exc:
            raise TlsBadRecordMac("record authentication failed") from exc


# -- signatures ---------------------------------------------------------------------------
_HashType = type[hashes.SHA1] | type[hashes.SHA256] | type[hashes.SHA384] | type[hashes.SHA512]
_RSA_PKCS1: dict[int, _HashType] = {
    0x0401: hashes.SHA256,
    0x0501: hashes.SHA384,
    0x0601: hashes.SHA512,
    0x0201: hashes.SHA1,
}
_RSA_PSS: dict[int, _HashType] = {
    0x0804: hashes.SHA256,
    0x0805: hashes.SHA384,
    0x0806: hashes.SHA512,
    0x0809: hashes.SHA256,
    0x080A: hashes.SHA384,
    0x080B: hashes.SHA512,
}
_ECDSA: dict[int, _HashType] = {
    0x0403: hashes.SHA256,
    0x0503: hashes.SHA384,
    0x0603: hashes.SHA512,
    0x0203: hashes.SHA1,
}
_ECDSA_CURVE = {0x0403: "secp256r1", 0x0503: "secp384r1", 0x0603: "secp521r1"}


def verify_signature(
    public_key: object, scheme: int, signature: bytes, data: bytes, *, tls13: bool
) -> None:
    """Check ``signature`` over ``data`` with the certificate's key; raise on failure.

    TLS 1.3 forbids RSA-PKCS1 and SHA-1 in CertificateVerify and binds each
    ECDSA scheme to its curve.
    """
    try:
        if scheme in _RSA_PSS and isinstance(public_key, rsa.RSAPublicKey):
            algo = _RSA_PSS[scheme]()
            public_key.verify(
                signature,
                data,
                padding.PSS(mgf=padding.MGF1(algo), salt_length=algo.digest_size),
                algo,
            )
            return
        if scheme in _RSA_PKCS1 and not tls13 and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), _RSA_PKCS1[scheme]())
            return
        if scheme in _ECDSA and isinstance(public_key, ec.EllipticCurvePublicKey):
            if tls13 and _ECDSA_CURVE.get(scheme) != public_key.curve.name:
                raise TlsIllegalParameter("ECDSA scheme does not match the certificate's curve")
            public_key.verify(signature, data, ec.ECDSA(_ECDSA[scheme]()))
            return
        if scheme == 0x0807 and isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, data)
            return
        if scheme == 0x0808 and isinstance(public_key, ed448.Ed448PublicKey):
            public_key.verify(signature, data)
            return
    except InvalidSignature as exc:
        raise TlsProtocolError(
            "the server's signature does not verify", alert=AlertDescription.DECRYPT_ERROR
        ) from exc
    raise TlsIllegalParameter(
        f"signature scheme 0x{scheme:04x} does not fit the server certificate's key"
    )
