"""curl export: a command line that sends the recorded request again, byte for byte.

curl adds headers of its own (Host, User-Agent, Accept, Content-Type and
Content-Length for bodies, Expect for large ones) and would reorder, rewrite
or glob the URL; the exported command turns all of that off so the request
line, the header lines (order and casing) and the body are the recorded ones:

* every recorded header is a ``-H``, in order (``-H 'Name;'`` for an empty value);
* a header curl adds by itself but the request did not have is removed
  with ``-H 'Name:'``;
* ``-g`` (no globbing of ``[]{}``) and ``--path-as-is`` (no ``..`` squashing);
* ``--http1.0``/``--http1.1``/``--http2``/``--http2-prior-knowledge``/``--http3``
  from the recorded version; ``--compressed`` is never added (it would add
  an Accept-Encoding and decode the answer);
* the body: ``--data-binary 'text'`` for printable UTF-8 text, otherwise
  base64 decoded into curl's stdin (``binary_body="base64"``) or a file
  written next to the command (``binary_body="file"``).

Header values are what rama holds (latin-1 text for the wire bytes): bytes
that are valid UTF-8 are written as that text, other bytes (posix) as
``$(printf '\\ooo')`` so any POSIX shell (dash, bash, zsh) sends them unchanged.
The PowerShell variant targets PowerShell 7.3+ (which passes arguments to
native programs verbatim) and calls ``curl.exe``.
"""

from __future__ import annotations

import base64
import os
import tempfile
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from rama_http import Request

from ._flow import Flow, HttpRequestRecord

__all__ = ["to_curl"]

Shell = Literal["posix", "powershell"]
BinaryBody = Literal["base64", "file"]

_MAX_INLINE_TEXT = 64 * 1024  # a single argv string may not exceed 128 KiB on Linux
_CURL_ADDS = ("Host", "User-Agent", "Accept")
_CURL_ADDS_FOR_BODY = ("Content-Type", "Content-Length", "Expect")


def _wire(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def _posix_word(data: bytes) -> str:
    """A POSIX shell word whose value is exactly ``data`` (no NUL bytes)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\r" not in text:
        return "'" + text.replace("'", "'\"'\"'") + "'"
    parts: list[str] = []
    run = bytearray()

    def flush() -> None:
        if run:
            parts.append("'" + run.decode("utf-8").replace("'", "'\"'\"'") + "'")
            run.clear()

    i = 0
    while i < len(data):
        # the next valid UTF-8 character at i, else one raw byte
        if data[i] == 0x0D:  # CR: command-line friendly only through printf
            flush()
            parts.append("\"$(printf '\\r')\"")
            i += 1
            continue
        for n in (1, 2, 3, 4):
            chunk = data[i : i + n]
            try:
                chunk.decode("utf-8")
            except UnicodeDecodeError:
                continue
            run.extend(chunk)
            i += n
            break
        else:
            flush()
            parts.append(f"\"$(printf '\\{data[i]:03o}')\"")
            i += 1
    flush()
    return "".join(parts) or "''"


def _ps_word(data: bytes) -> str:
    text = data.decode("utf-8", errors="strict") if _is_utf8(data) else data.decode("latin-1")
    pieces = ["'" + p.replace("'", "''") + "'" for p in text.split("\r\n")]
    if len(pieces) == 1:
        return pieces[0]
    return "(" + ' + "`r`n" + '.join(pieces) + ")"


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _is_text(data: bytes) -> bool:
    """Printable UTF-8 (tabs and newlines allowed), safe to inline in a command."""
    if len(data) > _MAX_INLINE_TEXT:
        return False
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\n" for c in text)


def _version_flag(version: str, url: str) -> str | None:
    v = version.upper().removeprefix("HTTP/")
    if v == "1.0":
        return "--http1.0"
    if v == "1.1":
        return "--http1.1"
    if v in ("2", "2.0"):
        return "--http2" if url.lower().startswith("https:") else "--http2-prior-knowledge"
    if v in ("3", "3.0"):
        return "--http3"
    return None


def _args(req: HttpRequestRecord, body_ref: str | None) -> tuple[list[bytes | str], bool]:
    """curl arguments (bytes: to quote; str: literal flag) and whether the body is stdin."""
    args: list[bytes | str] = []
    flag = _version_flag(req.http_version, req.url)
    if flag:
        args.append(flag)
    args += ["-g", "--path-as-is"]
    body = req.body.data
    has_body = bool(body) or req.body.size > 0 or req.method.upper() in ("POST", "PUT", "PATCH")
    method = req.method
    if method == "HEAD" and not has_body:
        args.append("--head")
    elif not (method == "GET" and not has_body) and not (method == "POST" and has_body):
        args += ["-X", _wire(method)]
    args.append(_wire(_without_userinfo(req.url)))
    present = {name.lower() for name, _ in req.headers}
    is_h1 = req.http_version.upper().startswith("HTTP/1")
    lines: list[str] = []
    host_seen = False
    for name, value in req.headers:
        if name.startswith(":"):
            continue  # an h2 pseudo-header: curl derives it from the URL and method
        if is_h1 and name.lower() == "host" and (lines or host_seen):
            # curl moves a Host header to the top (as "Host"): glue it to the
            # previous line instead, and drop curl's own Host (below)
            prev = lines.pop()
            if prev.endswith(";") and ":" not in prev:
                prev = prev[:-1] + ":"
            lines.append(f"{prev}\r\n{name}: {value}")
            host_seen = True
            continue
        host_seen = host_seen or name.lower() == "host"
        lines.append(f"{name};" if value == "" else f"{name}: {value}")
    for line in lines:
        args += ["-H", _wire(line)]
    glued_host = any("\r\n" in line for line in lines)
    suppress = [h for h in _CURL_ADDS if h.lower() not in present or (h == "Host" and glued_host)]
    if not is_h1 and "Host" in suppress:
        suppress.remove("Host")  # h2/h3 take :authority from the URL
    if has_body:
        suppress += [h for h in _CURL_ADDS_FOR_BODY if h.lower() not in present]
        if "transfer-encoding" in present and "Content-Length" in suppress:
            suppress.remove("Content-Length")
    for h in suppress:
        args += ["-H", f"{h}:".encode()]
    stdin = False
    if has_body:
        if body_ref is None:
            if body[:1] == b"@":
                args += ["--data-raw", body]
            else:
                args += ["--data-binary", body]
        elif body_ref == "-":
            args += ["--data-binary", "@-"]
            stdin = True
        else:
            args += ["--data-binary", _wire("@" + body_ref)]
    return args, stdin


def _without_userinfo(url: str) -> str:
    """Drop ``user:pass@`` (curl would turn it into an Authorization header of its own)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return url.replace(parts.netloc, netloc, 1)


def _write_body_file(data: bytes, path: str | os.PathLike[str] | None) -> str:
    if path is None:
        fd, name = tempfile.mkstemp(prefix="rama-curl-body-", suffix=".bin")
    else:
        name = os.fspath(path)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return str(Path(name))


def to_curl(
    flow_or_request: Flow | HttpRequestRecord | Request,
    *,
    shell: Shell = "posix",
    binary_body: BinaryBody = "base64",
    body_file: str | os.PathLike[str] | None = None,
    allow_truncated: bool = False,
) -> str:
    """A curl command line (for ``shell``) that sends the recorded request exactly.

    Takes a :class:`Flow`, its :class:`HttpRequestRecord`, or a
    :class:`rama_http.Request` with an in-memory body (an origin-form target
    is taken as ``http://`` + its Host).

    Text bodies are inlined; other bodies are decoded from base64 into
    curl's stdin (``binary_body="base64"``: a self-contained command) or
    written to ``body_file`` (``binary_body="file"``; a new temporary file
    when ``None``, mode 0600) that the command reads. A body cut short by the
    capture limit cannot be reproduced: that raises :class:`ValueError`
    unless ``allow_truncated`` (the captured part is sent).
    """
    if isinstance(flow_or_request, Request):
        if flow_or_request.body.bytes_now() is None and not flow_or_request.body.is_empty:
            raise ValueError("the request body is streaming: read it or record it first")
        req = HttpRequestRecord.from_request(flow_or_request)
    elif isinstance(flow_or_request, Flow):
        req = flow_or_request.request
    else:
        req = flow_or_request
    if shell not in ("posix", "powershell"):
        raise ValueError("shell must be 'posix' or 'powershell'")
    if binary_body not in ("base64", "file"):
        raise ValueError("binary_body must be 'base64' or 'file'")
    if not req.body.complete and not allow_truncated:
        raise ValueError(
            f"the recorded body is truncated ({len(req.body.data)} of {req.body.size} bytes)"
        )
    if urlsplit(req.url).scheme == "" or any(c in req.url for c in "\r\n\x00"):
        raise ValueError("the request URL must be absolute")
    body = req.body.data
    inline = not body or _is_text(body)
    ref: str | None = None
    b64 = base64.b64encode(body).decode("ascii")
    if not inline:
        ref = _write_body_file(body, body_file) if binary_body == "file" else "-"
    if shell == "posix":
        args, stdin = _args(req, ref)
        words = ["curl", *(a if isinstance(a, str) else _posix_word(a) for a in args)]
        cmd = " ".join(words)
        if stdin:
            cmd = f"printf '%s' '{b64}' | base64 -d | {cmd}"
        return cmd
    # PowerShell: no byte pipes into native programs before 7.4, so the base64
    # variant decodes into a temporary file that the command removes after.
    ps_ref = ref
    if ref == "-":
        ps_ref = "$rama_body"
    args, _ = _args(req, ps_ref)
    words = ["curl.exe"]
    for a in args:
        if isinstance(a, str):
            words.append(a)
        elif ps_ref == "$rama_body" and a == b"@$rama_body":
            words.append('"@$rama_body"')
        else:
            words.append(_ps_word(a))
    cmd = "& " + " ".join(words)
    if ref == "-":
        cmd = (
            "$rama_body = New-TemporaryFile; "
            f"[IO.File]::WriteAllBytes($rama_body, [Convert]::FromBase64String('{b64}')); "
            f"{cmd}; Remove-Item $rama_body"
        )
    return cmd
