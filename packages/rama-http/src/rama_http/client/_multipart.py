"""multipart/form-data bodies (RFC 7578) for ``files=`` uploads."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import TypeAlias

__all__ = ["FileInput", "encode_multipart"]

FileInput: TypeAlias = "bytes | str | tuple[str, bytes | str] | tuple[str, bytes | str, str]"
"""A file's content, ``(filename, content)`` or ``(filename, content, content_type)``."""


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def encode_multipart(
    data: Mapping[str, str | bytes] | None,
    files: Mapping[str, FileInput],
    boundary: str | None = None,
) -> tuple[bytes, str]:
    """``(body, content_type)`` of a form with fields ``data`` and uploads ``files``."""
    boundary = boundary or secrets.token_hex(16)
    b = boundary.encode("ascii")
    parts: list[bytes] = []
    for name, value in (data or {}).items():
        v = value.encode() if isinstance(value, str) else value
        parts.append(
            b"--"
            + b
            + b'\r\nContent-Disposition: form-data; name="'
            + _quote(name).encode()
            + b'"\r\n\r\n'
            + v
            + b"\r\n"
        )
    for name, spec in files.items():
        filename: str = name
        ctype = "application/octet-stream"
        content: bytes | str
        if isinstance(spec, tuple):
            filename, content = spec[0], spec[1]
            if len(spec) == 3:
                ctype = spec[2]
        else:
            content = spec
        c = content.encode() if isinstance(content, str) else content
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"; '
            f'filename="{_quote(str(filename))}"\r\nContent-Type: {ctype}\r\n\r\n'
        )
        parts.append(head.encode() + bytes(c) + b"\r\n")
    parts.append(b"--" + b + b"--\r\n")
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
