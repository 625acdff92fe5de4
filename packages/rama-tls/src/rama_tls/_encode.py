"""Serialize a :class:`ClientHello` back to bytes (handshake message and records).

Extensions are written from their raw ``data``, so parse -> encode is the
identity on any valid hello; this is the base of ClientHello emulation and of
building test vectors (e.g. a hello split over many small records).
"""

from __future__ import annotations

from ._client_hello import HANDSHAKE_CLIENT_HELLO, ClientHello
from ._record import CONTENT_TYPE_HANDSHAKE, MAX_RECORD_PAYLOAD

__all__ = ["encode_client_hello_message", "encode_handshake_records"]


def _u16(v: int) -> bytes:
    return v.to_bytes(2, "big")


def encode_client_hello_message(hello: ClientHello) -> bytes:
    """The handshake message (type, 24-bit length, body) for ``hello``."""
    body = bytearray()
    body += _u16(hello.legacy_version)
    body += hello.random
    body += bytes([len(hello.session_id)]) + hello.session_id
    body += _u16(2 * len(hello.cipher_suites))
    for suite in hello.cipher_suites:
        body += _u16(suite)
    body += bytes([len(hello.compression_methods)]) + bytes(hello.compression_methods)
    if hello.extensions:
        block = b"".join(_u16(e.type) + _u16(len(e.data)) + e.data for e in hello.extensions)
        body += _u16(len(block)) + block
    return bytes([HANDSHAKE_CLIENT_HELLO]) + len(body).to_bytes(3, "big") + bytes(body)


def encode_handshake_records(
    message: bytes, *, record_version: int = 0x0301, max_fragment: int = MAX_RECORD_PAYLOAD
) -> bytes:
    """Wrap a handshake message into handshake records of at most ``max_fragment`` bytes."""
    if not 1 <= max_fragment <= MAX_RECORD_PAYLOAD:
        raise ValueError(f"max_fragment must be in 1..{MAX_RECORD_PAYLOAD}")
    out = bytearray()
    for i in range(0, len(message), max_fragment):
        chunk = message[i : i + max_fragment]
        out += bytes([CONTENT_TYPE_HANDSHAKE]) + _u16(record_version) + _u16(len(chunk)) + chunk
    return bytes(out)
