"""Content-Encoding for body hooks: decode to plain bytes, encode back (bounded output)."""

from __future__ import annotations

import gzip
import importlib.util
import zlib

from rama_http import Headers

__all__ = ["DecodedTooLarge", "content_codings", "decode_body", "encode_body"]


def _known() -> frozenset[str]:
    known = {"gzip", "x-gzip", "deflate", "identity"}
    # optional: without the module a body in that coding reaches the hook undecoded
    if importlib.util.find_spec("brotli") is not None:
        known.add("br")
    if importlib.util.find_spec("zstandard") is not None:
        known.add("zstd")
    return frozenset(known)


_KNOWN = _known()


class DecodedTooLarge(Exception):
    """The decoded body would exceed the limit (a compression bomb, or just big)."""


def content_codings(headers: Headers) -> list[str] | None:
    """The codings applied, in order; None when one of them is unknown (pass raw).

    gzip and deflate always decode; ``br`` and ``zstd`` when the ``brotli`` and
    ``zstandard`` modules are installed.
    """
    codings = [c.strip().lower() for v in headers.get_all("content-encoding") for c in v.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if any(c not in _KNOWN for c in codings):
        return None
    return codings


def _zlib_decode(data: bytes, wbits: int, limit: int) -> bytes:
    d = zlib.decompressobj(wbits)
    out = d.decompress(data, limit + 1)
    if len(out) > limit or d.unconsumed_tail:
        raise DecodedTooLarge(limit)
    return out + d.flush()


def decode_body(data: bytes, codings: list[str], limit: int) -> bytes:
    """Undo ``codings`` (last applied first); at most ``limit`` bytes out."""
    for coding in reversed(codings):
        if coding in ("gzip", "x-gzip"):
            data = _zlib_decode(data, 16 + zlib.MAX_WBITS, limit)
        elif coding == "deflate":
            try:
                data = _zlib_decode(data, zlib.MAX_WBITS, limit)
            except zlib.error:
                data = _zlib_decode(data, -zlib.MAX_WBITS, limit)  # raw deflate, as sent by some
        elif coding == "br":
            import brotli

            out = brotli.Decompressor().process(data)
            if len(out) > limit:
                raise DecodedTooLarge(limit)
            data = out
        elif coding == "zstd":
            import zstandard

            data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
            if len(data) > limit:
                raise DecodedTooLarge(limit)
    return data


def encode_body(data: bytes, codings: list[str]) -> bytes:
    """Apply ``codings`` in order (what :func:`decode_body` undid)."""
    for coding in codings:
        if coding in ("gzip", "x-gzip"):
            data = gzip.compress(data, compresslevel=6, mtime=0)
        elif coding == "deflate":
            data = zlib.compress(data, 6)
        elif coding == "br":
            import brotli

            data = brotli.compress(data, quality=5)
        elif coding == "zstd":
            import zstandard

            data = zstandard.ZstdCompressor(level=3).compress(data)
    return data
