"""Key exchange for the key_share extension and TLS 1.2 ECDHE (``cryptography`` only).

X25519, P-256, P-384, P-521 and the hybrid X25519MLKEM768 (0x11ec:
ML-KEM-768 encapsulation key followed by the X25519 share; the shared
secret is the ML-KEM secret followed by the X25519 secret,
draft-ietf-tls-ecdhe-mlkem).
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ._errors import TlsIllegalParameter

__all__ = [
    "SECP256R1",
    "SECP384R1",
    "SECP521R1",
    "SUPPORTED_GROUPS",
    "X25519",
    "X25519MLKEM768",
    "KeyExchange",
    "generate_key_exchange",
    "placeholder_share",
]

X25519 = 0x001D
SECP256R1 = 0x0017
SECP384R1 = 0x0018
SECP521R1 = 0x0019
X25519MLKEM768 = 0x11EC
X25519KYBER768_DRAFT = 0x6399

_CURVES: dict[int, ec.EllipticCurve] = {
    SECP256R1: ec.SECP256R1(),
    SECP384R1: ec.SECP384R1(),
    SECP521R1: ec.SECP521R1(),
}
SUPPORTED_GROUPS = frozenset({X25519, X25519MLKEM768, *_CURVES})
"""Groups whose key shares the engine can complete a handshake with."""

_PLACEHOLDER_SIZES = {X25519KYBER768_DRAFT: 1216, 0x0100: 256, 0x0101: 384}


class KeyExchange:
    """One fresh private key of a group; ``public`` goes into the key share."""

    __slots__ = ("_ec", "_mlkem", "_x", "group", "public")

    def __init__(self, group: int) -> None:
        self.group = group
        self._x: x25519.X25519PrivateKey | None = None
        self._ec: ec.EllipticCurvePrivateKey | None = None
        self._mlkem: mlkem.MLKEM768PrivateKey | None = None
        if group == X25519:
            self._x = x25519.X25519PrivateKey.generate()
            self.public = self._x.public_key().public_bytes_raw()
        elif group == X25519MLKEM768:
            self._mlkem = mlkem.MLKEM768PrivateKey.generate()
            self._x = x25519.X25519PrivateKey.generate()
            self.public = (
                self._mlkem.public_key().public_bytes_raw()
                + self._x.public_key().public_bytes_raw()
            )
        elif group in _CURVES:
            self._ec = ec.generate_private_key(_CURVES[group])
            self.public = self._ec.public_key().public_bytes(
                Encoding.X962, PublicFormat.UncompressedPoint
            )
        else:
            raise ValueError(f"group 0x{group:04x} is not supported for key exchange")

    def shared_secret(self, peer: bytes) -> bytes:
        """The shared secret for the server's share; a bad share is illegal_parameter."""
        try:
            if self.group == X25519:
                assert self._x is not None
                return _x25519(self._x, peer)
            if self.group == X25519MLKEM768:
                assert self._mlkem is not None
                assert self._x is not None
                if len(peer) != 1088 + 32:
                    raise TlsIllegalParameter("X25519MLKEM768 server share has a wrong length")
                kem = self._mlkem.decapsulate(peer[:1088])
                return kem + _x25519(self._x, peer[1088:])
            assert self._ec is not None
            curve = _CURVES[self.group]
            point = ec.EllipticCurvePublicKey.from_encoded_point(curve, peer)
            return self._ec.exchange(ec.ECDH(), point)
        except TlsIllegalParameter:
            raise
        except (ValueError, TypeError) as exc:
            raise TlsIllegalParameter(f"invalid key share for group 0x{self.group:04x}") from exc


def _x25519(key: x25519.X25519PrivateKey, peer: bytes) -> bytes:
    if len(peer) != 32:
        raise TlsIllegalParameter("X25519 share has a wrong length")
    secret = key.exchange(x25519.X25519PublicKey.from_public_bytes(peer))
    if secret == bytes(32):  # low-order point (RFC 7748 section 6.1)
        raise TlsIllegalParameter("X25519 share is a low-order point")
    return secret


def generate_key_exchange(group: int) -> KeyExchange:
    """A fresh key for ``group`` (ValueError for a group the engine cannot do)."""
    return KeyExchange(group)


def placeholder_share(group: int, length: int) -> bytes:
    """Random bytes of a share the engine cannot complete (kept for the fingerprint)."""
    return os.urandom(_PLACEHOLDER_SIZES.get(group, length))
