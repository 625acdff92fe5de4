"""What a handler may return, turned into a :class:`Response`."""

from __future__ import annotations

import dataclasses
import mimetypes
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any

import anyio

from .._body import Body
from .._message import Response

__all__ = ["file_response", "into_response"]

_FILE_CHUNK = 256 * 1024


def into_response(value: Any) -> Response:
    """``str`` -> text, ``bytes`` -> octet-stream, ``dict``/``list``/dataclass -> JSON,
    ``None`` -> 204, ``(status, body)`` -> that status, an async iterator -> a streamed
    body, a :class:`pathlib.Path` -> the file (streamed), a Response as is."""
    if isinstance(value, Response):
        return value
    if isinstance(value, str):
        return Response.from_text(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return Response.from_bytes(bytes(value))
    if value is None:
        return Response.empty(204)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], int):
        status, body = value
        resp = into_response(body)
        resp.status = status
        return resp
    if isinstance(value, (dict, list)):
        return Response.from_json(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return Response.from_json(dataclasses.asdict(value))
    if isinstance(value, Path):
        return file_response(value)
    if isinstance(value, AsyncIterable):
        return Response(
            200,
            headers=[("Content-Type", "application/octet-stream")],
            body=Body.from_iter(_as_bytes(value)),
        )
    raise TypeError(f"a handler returned {type(value).__name__}, which is not a response")


async def _as_bytes(chunks: AsyncIterable[Any]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield chunk.encode() if isinstance(chunk, str) else bytes(chunk)


def file_response(path: Path) -> Response:
    """The file at ``path``, streamed, with a guessed Content-Type and its length."""
    size = path.stat().st_size
    ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return Response(
        200,
        headers=[("Content-Type", ctype)],
        body=Body.from_iter(_read_file(path), length=size),
    )


async def _read_file(path: Path) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as f:
        while chunk := await f.read(_FILE_CHUNK):
            yield chunk
