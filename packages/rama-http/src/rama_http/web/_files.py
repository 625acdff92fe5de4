"""Serving files from a directory: validators, ranges, precompressed siblings, safety.

:class:`ServeDir` maps the request path (or the ``{*path}`` wildcard of the
route it is mounted on) under a root directory:

- ``..``, ``.``, NUL and backslashes in a segment are refused (404), encoded
  or not; a path that resolves outside the root through a symlink is refused
  unless ``follow_symlinks=True``;
- ``ETag`` (size and mtime) with ``If-None-Match``, ``Last-Modified`` with
  ``If-Modified-Since`` -> 304; ``Range`` single (206) and multiple
  (``multipart/byteranges``), ``If-Range``, unsatisfiable -> 416;
- ``.br``, ``.zst`` and ``.gz`` siblings are sent with ``Content-Encoding``
  when the client accepts them (``Vary: Accept-Encoding`` always);
- a directory redirects to its slash form, then serves ``index.html`` or,
  with ``listing=True``, an HTML index.

:class:`ServeFile` serves one file with the same rules.
"""

from __future__ import annotations

import html
import mimetypes
import os
import secrets
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

import anyio

from rama_core import Context

from .._accept import accepted_encodings
from .._body import Body
from .._message import Request, Response
from ._extract import PathParams
from ._range import ByteRange, Unsatisfiable, etag_matches, http_date, parse_http_date, parse_range

__all__ = ["ServeDir", "ServeFile"]

_CHUNK = 256 * 1024
_ENCODINGS = (("br", ".br"), ("zstd", ".zst"), ("gzip", ".gz"))
"""Precompressed siblings, in the order the server prefers them."""


@dataclass(frozen=True, slots=True)
class _File:
    path: Path
    size: int
    mtime: float
    mtime_ns: int
    content_type: str
    encoding: str | None = None

    @property
    def etag(self) -> str:
        suffix = f"-{self.encoding}" if self.encoding else ""
        return f'"{self.mtime_ns:x}-{self.size:x}{suffix}"'


def _content_type(name: str) -> str:
    ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
        ctype += "; charset=utf-8"
    return ctype


async def _read_range(path: Path, first: int, length: int) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as f:
        await f.seek(first)
        remaining = length
        while remaining > 0:
            chunk = await f.read(min(_CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk


async def _multipart(
    path: Path, ranges: list[ByteRange], size: int, ctype: str, boundary: str
) -> AsyncIterator[bytes]:
    for r in ranges:
        yield (
            f"\r\n--{boundary}\r\nContent-Type: {ctype}\r\n"
            f"Content-Range: {r.content_range(size)}\r\n\r\n"
        ).encode()
        async for chunk in _read_range(path, r.first, r.length):
            yield chunk
    yield f"\r\n--{boundary}--\r\n".encode()


def _multipart_length(ranges: list[ByteRange], size: int, ctype: str, boundary: str) -> int:
    total = len(f"\r\n--{boundary}--\r\n")
    for r in ranges:
        total += len(
            f"\r\n--{boundary}\r\nContent-Type: {ctype}\r\n"
            f"Content-Range: {r.content_range(size)}\r\n\r\n"
        )
        total += r.length
    return total


def file_answer(req: Request, f: _File, *, extra: list[tuple[str, str]] | None = None) -> Response:
    """The response for ``req`` about file ``f``: 200, 206, 304 or 416."""
    headers: list[tuple[str, str]] = [
        ("Content-Type", f.content_type),
        ("ETag", f.etag),
        ("Last-Modified", http_date(f.mtime)),
        ("Accept-Ranges", "bytes"),
        *(extra or []),
    ]
    if f.encoding:
        headers.append(("Content-Encoding", f.encoding))
    inm = req.headers.get("if-none-match")
    if inm is not None:
        if etag_matches(inm, f.etag, weak=True):
            return Response(304, headers=[h for h in headers if h[0] != "Content-Type"])
    else:
        ims = req.headers.get("if-modified-since")
        since = parse_http_date(ims) if ims else None
        if since is not None and int(f.mtime) <= since:
            return Response(304, headers=[h for h in headers if h[0] != "Content-Type"])
    range_header = req.headers.get("range")
    if range_header is not None and req.method in ("GET", "HEAD") and f.encoding is None:
        if_range = req.headers.get("if-range")
        fresh = if_range is None or _if_range_holds(if_range, f)
        if fresh:
            try:
                ranges = parse_range(range_header, f.size)
            except Unsatisfiable:
                return Response(
                    416,
                    headers=[("Content-Range", f"bytes */{f.size}"), ("Accept-Ranges", "bytes")],
                )
            if ranges is not None:
                return _partial(f, ranges, headers)
    body = Body.from_iter(_read_range(f.path, 0, f.size), length=f.size)
    return Response(200, headers=headers, body=body)


def _if_range_holds(value: str, f: _File) -> bool:
    if value.startswith(('"', 'W/"')):
        return etag_matches(value, f.etag, weak=False)
    date = parse_http_date(value)
    return date is not None and int(f.mtime) == int(date)


def _partial(f: _File, ranges: list[ByteRange], headers: list[tuple[str, str]]) -> Response:
    if len(ranges) == 1:
        r = ranges[0]
        headers = [*headers, ("Content-Range", r.content_range(f.size))]
        return Response(
            206,
            headers=headers,
            body=Body.from_iter(_read_range(f.path, r.first, r.length), length=r.length),
        )
    boundary = secrets.token_hex(12)
    ctype = f.content_type
    headers = [
        (k, v) if k != "Content-Type" else (k, f"multipart/byteranges; boundary={boundary}")
        for k, v in headers
    ]
    length = _multipart_length(ranges, f.size, ctype, boundary)
    return Response(
        206,
        headers=headers,
        body=Body.from_iter(_multipart(f.path, ranges, f.size, ctype, boundary), length=length),
    )


def _not_found() -> Response:
    return Response.error(404)


def _stat_file(path: Path, encoding: str | None, ctype: str) -> _File | None:
    try:
        st = path.stat()
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return _File(path, st.st_size, st.st_mtime, st.st_mtime_ns, ctype, encoding)


def _pick_variant(req: Request, path: Path, precompressed: bool) -> _File | None:
    ctype = _content_type(path.name)
    if precompressed and "range" not in req.headers:
        accepted = {
            c for c, q in accepted_encodings(req.headers.get("accept-encoding")).items() if q > 0
        }
        for encoding, suffix in _ENCODINGS:
            if encoding in accepted:
                variant = _stat_file(path.with_name(path.name + suffix), encoding, ctype)
                if variant is not None:
                    return variant
    return _stat_file(path, None, ctype)


class ServeFile:
    """One file, with validators, ranges and precompressed siblings."""

    def __init__(self, path: str | os.PathLike[str], *, precompressed: bool = True) -> None:
        self.path = Path(path)
        self.precompressed = precompressed

    async def serve(self, ctx: Context, req: Request) -> Response:
        """GET/HEAD the file; 405 for other methods."""
        if req.method not in ("GET", "HEAD"):
            return Response(405, headers=[("Allow", "GET, HEAD")])
        f = await anyio.to_thread.run_sync(_pick_variant, req, self.path, self.precompressed)
        if f is None:
            return _not_found()
        extra = [("Vary", "Accept-Encoding")] if self.precompressed else []
        return file_answer(req, f, extra=extra)


class ServeDir:
    """Files under ``root`` (see module docs)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        index: str | None = "index.html",
        listing: bool = False,
        precompressed: bool = True,
        follow_symlinks: bool = False,
        cache_control: str | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.index = index
        self.listing = listing
        self.precompressed = precompressed
        self.follow_symlinks = follow_symlinks
        """Allow symlinks that point outside the root."""
        self.cache_control = cache_control

    def _relative(self, ctx: Context, req: Request) -> list[str] | None:
        params = ctx.get(PathParams)
        raw = params.get("path") if params is not None else None
        text = str(raw) if raw is not None else unquote(req.path)
        segments = [s for s in text.split("/") if s != ""]
        for s in segments:
            if s in (".", "..") or "\x00" in s or "\\" in s:
                return None
        return segments

    def _resolve(self, segments: list[str]) -> Path | None:
        candidate = self.root.joinpath(*segments)
        try:
            real = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not self.follow_symlinks and not real.is_relative_to(self.root):
            return None
        return candidate if self.follow_symlinks else real

    async def serve(self, ctx: Context, req: Request) -> Response:
        """GET/HEAD a file or directory under the root."""
        if req.method not in ("GET", "HEAD"):
            return Response(405, headers=[("Allow", "GET, HEAD")])
        segments = self._relative(ctx, req)
        if segments is None:
            return _not_found()
        path = await anyio.to_thread.run_sync(self._resolve, segments)
        if path is None:
            return _not_found()
        extra: list[tuple[str, str]] = []
        if self.precompressed:
            extra.append(("Vary", "Accept-Encoding"))
        if self.cache_control:
            extra.append(("Cache-Control", self.cache_control))
        if await anyio.to_thread.run_sync(path.is_dir):
            if not req.path.endswith("/"):
                location = req.path + "/" + (f"?{req.query}" if req.query else "")
                return Response(301, headers=[("Location", location)])
            if self.index:
                index = path / self.index
                f = await anyio.to_thread.run_sync(_pick_variant, req, index, self.precompressed)
                if f is not None:
                    return file_answer(req, f, extra=extra)
            if self.listing:
                return await anyio.to_thread.run_sync(self._listing, path, req.path)
            return _not_found()
        f = await anyio.to_thread.run_sync(_pick_variant, req, path, self.precompressed)
        if f is None:
            return _not_found()
        return file_answer(req, f, extra=extra)

    def _listing(self, path: Path, url_path: str) -> Response:
        rows = []
        for entry in sorted(path.iterdir(), key=lambda p: (not p.is_dir(), p.name)):
            name = entry.name + ("/" if entry.is_dir() else "")
            rows.append(f'<li><a href="{quote(name)}">{html.escape(name)}</a></li>')
        title = html.escape(unquote(url_path))
        page = (
            f"<!doctype html><html><head><meta charset=utf-8><title>Index of {title}</title>"
            f"</head><body><h1>Index of {title}</h1><ul>"
            + ('<li><a href="../">../</a></li>' if url_path != "/" else "")
            + "".join(rows)
            + "</ul></body></html>\n"
        )
        return Response.from_text(page, content_type="text/html; charset=utf-8")
