"""Response compression (gzip, deflate, br, zstd) and request decompression.

:class:`CompressionLayer` negotiates the encoding from ``Accept-Encoding``
(q-values; ties go to the server's order: zstd, br, gzip, deflate) and
compresses the body as it streams, flushing after each chunk so streamed
responses (server-sent events) are not held back. It leaves alone bodies that
are small (``min_size``), already encoded, not a compressible type, partial
(206), bodiless (HEAD, 204, 304) or marked ``Cache-Control: no-transform``.
A strong ETag becomes weak (the bytes differ from the identity ones).

:class:`RequestDecompressionLayer` undoes a request's ``Content-Encoding``
with a bound on the decompressed size (a zip bomb answers 413) and answers 415
for an encoding it does not know.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol

from rama_core import Context, Service

from .._accept import accepted_encodings
from .._body import Body
from .._errors import BodyTooLarge, RemoteProtocolError
from .._message import Request, Response

__all__ = [
    "Compression",
    "CompressionLayer",
    "RequestDecompression",
    "RequestDecompressionLayer",
    "available_encodings",
]

HttpService = Service[Request, Response]


class _Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...
    def finish(self) -> bytes: ...


class _Zlib:
    __slots__ = ("_c",)

    def __init__(self, wbits: int, level: int) -> None:
        self._c = zlib.compressobj(level, zlib.DEFLATED, wbits)

    def compress(self, data: bytes) -> bytes:
        return self._c.compress(data)

    def flush(self) -> bytes:
        return self._c.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._c.flush(zlib.Z_FINISH)


class _Brotli:
    __slots__ = ("_c",)

    def __init__(self, quality: int) -> None:
        import brotli

        self._c = brotli.Compressor(quality=quality)

    def compress(self, data: bytes) -> bytes:
        return bytes(self._c.process(data))

    def flush(self) -> bytes:
        return bytes(self._c.flush())

    def finish(self) -> bytes:
        return bytes(self._c.finish())


class _Zstd:
    __slots__ = ("_c",)

    def __init__(self, level: int) -> None:
        import zstandard

        self._c = zstandard.ZstdCompressor(level=level).compressobj()

    def compress(self, data: bytes) -> bytes:
        return bytes(self._c.compress(data))

    def flush(self) -> bytes:
        import zstandard

        return bytes(self._c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))

    def finish(self) -> bytes:
        return bytes(self._c.flush())


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


_FACTORIES: dict[str, Callable[[], _Compressor]] = {
    "gzip": lambda: _Zlib(16 + zlib.MAX_WBITS, 6),
    "deflate": lambda: _Zlib(zlib.MAX_WBITS, 6),
}
if _has("brotli"):
    _FACTORIES["br"] = lambda: _Brotli(4)
if _has("zstandard"):
    _FACTORIES["zstd"] = lambda: _Zstd(3)

_SERVER_ORDER = ("zstd", "br", "gzip", "deflate")


def available_encodings() -> tuple[str, ...]:
    """The encodings this installation can produce (br and zstd need their extras)."""
    return tuple(e for e in _SERVER_ORDER if e in _FACTORIES)


def negotiate(header: str | None, offered: Sequence[str]) -> str | None:
    """The best of ``offered`` for ``Accept-Encoding: header`` (None: send identity)."""
    if not header:
        return None
    accept = accepted_encodings(header)
    star = accept.get("*")
    best: str | None = None
    best_q = 0.0
    for enc in offered:
        q = accept.get(enc, star if star is not None else 0.0)
        if enc == "gzip" and "gzip" not in accept and "x-gzip" in accept:
            q = accept["x-gzip"]
        if q > best_q:
            best, best_q = enc, q
    return best


_COMPRESSIBLE_PREFIXES = ("text/",)
_COMPRESSIBLE = frozenset(
    {
        "application/json",
        "application/javascript",
        "application/xml",
        "application/xhtml+xml",
        "application/wasm",
        "application/manifest+json",
        "application/x-ndjson",
        "image/svg+xml",
    }
)


def compressible(content_type: str | None) -> bool:
    """Text-like media types worth compressing."""
    if not content_type:
        return False
    ctype = content_type.split(";", 1)[0].strip().lower()
    return (
        ctype.startswith(_COMPRESSIBLE_PREFIXES)
        or ctype in _COMPRESSIBLE
        or ctype.endswith(("+json", "+xml"))
    )


async def _compressed(body: Body, compressor: _Compressor) -> AsyncIterator[bytes]:
    try:
        async for chunk in body:
            out = compressor.compress(chunk) + compressor.flush()
            if out:
                yield out
        tail = compressor.finish()
        if tail:
            yield tail
    finally:
        await body.aclose()


class Compression:
    """Compresses responses of ``inner`` (see module docs)."""

    __slots__ = ("encodings", "inner", "min_size", "predicate")

    def __init__(
        self,
        inner: HttpService,
        *,
        encodings: Sequence[str] | None = None,
        min_size: int = 1024,
        predicate: Callable[[Response], bool] | None = None,
    ) -> None:
        self.inner = inner
        self.encodings = tuple(e for e in (encodings or _SERVER_ORDER) if e in _FACTORIES)
        self.min_size = min_size
        self.predicate = predicate

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Serve, then compress the response when it qualifies."""
        accept = req.headers.get("accept-encoding")
        resp = await self.inner.serve(ctx, req)
        if (
            not accept
            or req.method == "HEAD"
            or resp.status in (204, 206, 304)
            or resp.status < 200
        ):
            return resp
        encoding = negotiate(accept, self.encodings)
        h = resp.headers
        if "content-encoding" in h or resp.on_upgrade is not None:
            return resp
        if not compressible(h.get("content-type")) and self.predicate is None:
            _vary(resp)
            return resp
        if self.predicate is not None and not self.predicate(resp):
            return resp
        length = resp.body.length
        if length is not None and length < self.min_size:
            return resp
        if "no-transform" in (h.get("cache-control") or "").lower():
            return resp
        _vary(resp)
        if encoding is None:
            return resp
        h.remove("content-length")
        h.set("Content-Encoding", encoding)
        etag = h.get("etag")
        if etag is not None and not etag.startswith("W/"):
            h.set("ETag", "W/" + etag)
        trailers = resp.body.trailers
        resp.body = Body.from_iter(
            _compressed(resp.body, _FACTORIES[encoding]()), trailers=trailers
        )
        return resp


def _vary(resp: Response) -> None:
    vary = resp.headers.get_list("vary")
    if not any(v.lower() in ("accept-encoding", "*") for v in vary):
        resp.headers.add("Vary", "Accept-Encoding")


class CompressionLayer:
    """Layer producing :class:`Compression`."""

    __slots__ = ("encodings", "min_size", "predicate")

    def __init__(
        self,
        *,
        encodings: Sequence[str] | None = None,
        min_size: int = 1024,
        predicate: Callable[[Response], bool] | None = None,
    ) -> None:
        self.encodings = encodings
        self.min_size = min_size
        self.predicate = predicate
        """Decides per response instead of the content-type rule (True: compress)."""

    def layer(self, inner: HttpService) -> Compression:
        """Wrap ``inner``."""
        return Compression(
            inner, encodings=self.encodings, min_size=self.min_size, predicate=self.predicate
        )


def _decoder(encoding: str) -> Callable[[bytes], bytes] | None:
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress
    if encoding == "deflate":
        return zlib.decompressobj().decompress
    if encoding == "br" and "br" in _FACTORIES:
        import brotli

        d = brotli.Decompressor()
        return lambda data: bytes(d.process(data))
    if encoding == "zstd" and "zstd" in _FACTORIES:
        import zstandard

        z = zstandard.ZstdDecompressor().decompressobj()
        return lambda data: bytes(z.decompress(data))
    return None


def _decode_errors() -> tuple[type[Exception], ...]:
    errors: list[type[Exception]] = [zlib.error]
    if "br" in _FACTORIES:
        import brotli

        errors.append(brotli.error)
    if "zstd" in _FACTORIES:
        import zstandard

        errors.append(zstandard.ZstdError)
    return tuple(errors)


_DECODE_ERRORS = _decode_errors()


async def _decompressed(
    body: Body, decoders: list[Callable[[bytes], bytes]], limit: int
) -> AsyncIterator[bytes]:
    total = 0
    try:
        async for chunk in body:
            data = chunk
            for decode in decoders:
                data = decode(data)
            total += len(data)
            if total > limit:
                raise BodyTooLarge(limit)
            if data:
                yield data
    except _DECODE_ERRORS as e:
        raise RemoteProtocolError(f"undecodable request body: {e}", status=400) from e
    finally:
        await body.aclose()


class RequestDecompression:
    """Decodes request bodies of ``inner`` (see module docs)."""

    __slots__ = ("inner", "max_size")

    def __init__(self, inner: HttpService, *, max_size: int = 16 * 1024 * 1024) -> None:
        self.inner = inner
        self.max_size = max_size

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Decode the body lazily as the handler reads it."""
        codings = [c.strip().lower() for c in req.headers.get_list("content-encoding")]
        codings = [c for c in codings if c and c != "identity"]
        if not codings:
            return await self.inner.serve(ctx, req)
        decoders = [_decoder(c) for c in reversed(codings)]
        if any(d is None for d in decoders):
            return Response.error(415, "unsupported Content-Encoding")
        req.headers.remove("content-encoding")
        req.headers.remove("content-length")
        req.body = Body.from_iter(
            _decompressed(req.body, [d for d in decoders if d is not None], self.max_size)
        )
        return await self.inner.serve(ctx, req)


class RequestDecompressionLayer:
    """Layer producing :class:`RequestDecompression`."""

    __slots__ = ("max_size",)

    def __init__(self, *, max_size: int = 16 * 1024 * 1024) -> None:
        self.max_size = max_size
        """Decoded bytes allowed before the request is answered 413."""

    def layer(self, inner: HttpService) -> RequestDecompression:
        """Wrap ``inner``."""
        return RequestDecompression(inner, max_size=self.max_size)
