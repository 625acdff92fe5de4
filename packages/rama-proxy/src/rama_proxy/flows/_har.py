"""HAR 1.2 export and import of flows, and replay of a HAR against a server.

:func:`to_har` writes what HAR viewers (Chromium DevTools, Firefox, HAR
analyzers) read: entries with timings, ``serverIPAddress``, cookies, query
strings, bodies (text, or base64 with ``encoding``), Chromium's
``_resourceType`` and ``_webSocketMessages``. Credentials (Authorization,
Proxy-Authorization, Cookie, Set-Cookie and the cookies arrays) are redacted
unless ``redact=False``. What HAR cannot express (flow id, client address,
TLS details, exact timings in seconds, capture truncation, trailers) goes in a
``_rama`` object per entry, so :func:`from_har` gives back equal flows.
:func:`har_schema` is the HAR 1.2 JSON schema the tests validate against.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import ipaddress
import json
import math
import time
import zlib
from collections.abc import Iterable, Sequence
from email.utils import parsedate_to_datetime
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import anyio

from rama_http import HttpError, Version
from rama_http.client import HttpClient

from ._flow import (
    Address,
    CapturedBody,
    Flow,
    FlowFormatError,
    HttpRequestRecord,
    HttpResponseRecord,
    TimingRecord,
    TlsRecord,
    WebSocketMessage,
    _finite,
)

__all__ = [
    "REDACTED",
    "SENSITIVE_HEADERS",
    "decode_content",
    "from_har",
    "har_schema",
    "replay_har",
    "to_har",
]

REDACTED = "[redacted]"
"""What redacted header and cookie values are replaced with."""

SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
"""Headers whose values :func:`to_har` redacts by default (lower case)."""

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te"}
)

_SEC_FETCH_DEST = {
    "document": "document",
    "iframe": "document",
    "frame": "document",
    "style": "stylesheet",
    "script": "script",
    "worker": "script",
    "sharedworker": "script",
    "serviceworker": "script",
    "image": "image",
    "font": "font",
    "audio": "media",
    "video": "media",
    "track": "texttrack",
    "manifest": "manifest",
    "websocket": "websocket",
}


@cache
def _schema_text() -> str:
    return resources.files(__package__).joinpath("_har_schema.json").read_text("utf-8")


def har_schema() -> dict[str, Any]:
    """The HAR 1.2 JSON schema (draft-07) written from the spec; validate with ``jsonschema``."""
    doc: dict[str, Any] = json.loads(_schema_text())
    return doc


# -- export ---------------------------------------------------------------------------------
class _TooLarge(Exception):
    pass


def _zlib(data: bytes, wbits: int, limit: int) -> bytes:
    d = zlib.decompressobj(wbits)
    out = d.decompress(data, limit + 1)
    if len(out) > limit:
        raise _TooLarge
    if not d.eof:
        raise ValueError("truncated stream")
    return out


def _brotli(data: bytes, limit: int) -> bytes:
    import brotli  # type: ignore[import-not-found,import-untyped,unused-ignore]

    d = brotli.Decompressor()
    try:
        out = bytes(d.process(data, output_buffer_limit=limit + 1))
    except TypeError:  # brotli < 1.2 cannot bound its output: do not risk a bomb
        raise ValueError("brotli too old") from None
    if len(out) > limit or not d.is_finished():
        raise _TooLarge if len(out) > limit else ValueError("truncated stream")
    return out


def _zstd(data: bytes, limit: int) -> bytes:
    import io

    import zstandard  # type: ignore[import-not-found,import-untyped,unused-ignore]

    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data))
    out = bytes(reader.read(limit + 1))
    chunks = [out]
    while len(out) <= limit:
        more = bytes(reader.read(limit + 1 - len(out)))
        if not more:
            break
        chunks.append(more)
        out = b"".join(chunks)
    if len(out) > limit:
        raise _TooLarge
    return out


def decode_content(data: bytes, content_encoding: str, limit: int = 64 << 20) -> bytes | None:
    """``data`` decoded per ``content_encoding`` (gzip, deflate, br, zstd, stacked), or None.

    None when a coding is unknown or unavailable, the data does not decode, or
    the result would exceed ``limit`` bytes (decompression bombs stay bounded).
    """
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    try:
        for coding in reversed(codings):
            if coding == "identity":
                continue
            if coding in ("gzip", "x-gzip"):
                data = _zlib(data, 16 + zlib.MAX_WBITS, limit)
            elif coding == "deflate":
                try:
                    data = _zlib(data, zlib.MAX_WBITS, limit)
                except zlib.error:
                    data = _zlib(data, -zlib.MAX_WBITS, limit)  # raw deflate, as some send
            elif coding == "br":
                data = _brotli(data, limit)
            elif coding == "zstd":
                data = _zstd(data, limit)
            else:
                return None
    except (_TooLarge, ImportError, ValueError, zlib.error):
        return None
    except Exception:  # brotli.error / zstandard.ZstdError: the body does not decode
        return None
    return data


def _iso(ts: float) -> str:
    try:
        when = dt.datetime.fromtimestamp(ts, dt.UTC)
    except (OverflowError, ValueError, OSError):
        when = dt.datetime.fromtimestamp(0, dt.UTC)  # a nonsense time must not fail the export
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(seconds: float | None) -> float:
    if seconds is None or not math.isfinite(seconds):
        return -1.0
    return round(seconds * 1000.0, 3)


def _nv(items: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": n, "value": v} for n, v in items]


def _redact_headers(headers: list[tuple[str, str]], redact: bool) -> list[tuple[str, str]]:
    if not redact:
        return headers
    return [(n, REDACTED if n.lower() in SENSITIVE_HEADERS else v) for n, v in headers]


def _redact_url(url: str) -> str:
    """``scheme://user:[redacted]@host/...``: a password in the URL is a credential too."""
    netloc = urlsplit(url).netloc
    userinfo, at, _ = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return url.replace(netloc, f"{user}:{quote(REDACTED)}@{netloc.rpartition('@')[2]}", 1)


def _request_cookies(headers: list[tuple[str, str]], redact: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, value in headers:
        if name.lower() != "cookie":
            continue
        for part in value.split(";"):
            k, eq, v = part.strip().partition("=")
            if k or eq:
                out.append({"name": k, "value": REDACTED if redact else v})
    return out


def _set_cookie(value: str, redact: bool) -> dict[str, Any] | None:
    first, *attrs = value.split(";")
    name, eq, val = first.strip().partition("=")
    if not eq:
        return None
    cookie: dict[str, Any] = {"name": name.strip(), "value": REDACTED if redact else val.strip()}
    for attr in attrs:
        k, _, v = attr.strip().partition("=")
        key = k.strip().lower()
        if key == "path":
            cookie["path"] = v.strip()
        elif key == "domain":
            cookie["domain"] = v.strip()
        elif key == "expires":
            with contextlib.suppress(TypeError, ValueError, IndexError):
                cookie["expires"] = parsedate_to_datetime(v.strip()).isoformat()
        elif key == "httponly":
            cookie["httpOnly"] = True
        elif key == "secure":
            cookie["secure"] = True
        elif key == "samesite":
            cookie["_sameSite"] = v.strip()
    return cookie


def _response_cookies(headers: list[tuple[str, str]], redact: bool) -> list[dict[str, Any]]:
    out = []
    for name, value in headers:
        if name.lower() == "set-cookie":
            c = _set_cookie(value, redact)
            if c is not None:
                out.append(c)
    return out


def _text_or_b64(data: bytes) -> tuple[str, bool]:
    """``(text, is_base64)``: UTF-8 text when it decodes, base64 otherwise."""
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), True


def _origin_target(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _head_size(first_line: str, headers: list[tuple[str, str]], version: str) -> int:
    if not version.upper().startswith("HTTP/1"):
        return -1  # h2/h3 compress headers: HAR says -1 when not available
    n = len(first_line.encode("utf-8")) + 2
    for k, v in headers:
        n += len(k.encode("utf-8")) + 2 + len(v.encode("utf-8")) + 2
    return n + 2


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    low = name.lower()
    return next((v for k, v in headers if k.lower() == low), None)


def _resource_type(flow: Flow) -> str | None:
    if flow.resource_type is not None:
        return flow.resource_type
    if flow.websocket or (_header(flow.request.headers, "upgrade") or "").lower() == "websocket":
        return "websocket"
    dest = _header(flow.request.headers, "sec-fetch-dest")
    return None if dest is None else _SEC_FETCH_DEST.get(dest.strip().lower())


def _rama_extra(flow: Flow) -> dict[str, Any]:
    extra: dict[str, Any] = {
        "id": flow.id,
        "started_at": flow.started_at if math.isfinite(flow.started_at) else 0.0,
        "timings": {
            k: v if v is None or math.isfinite(v) else None
            for k, v in flow.timings.to_json().items()
        },
        "request_body": {"size": flow.request.body.size, "truncated": flow.request.body.truncated},
    }
    if flow.client_addr is not None:
        extra["client_addr"] = list(flow.client_addr)
    if flow.server_addr is not None:
        extra["server_addr"] = list(flow.server_addr)
    if flow.client_tls is not None:
        extra["client_tls"] = flow.client_tls.to_json()
    if flow.server_tls is not None:
        extra["server_tls"] = flow.server_tls.to_json()
    if flow.request.trailers is not None:
        extra["request_trailers"] = [list(h) for h in flow.request.trailers]
    if flow.response is not None:
        extra["response_body"] = {
            "size": flow.response.body.size,
            "truncated": flow.response.body.truncated,
        }
        if flow.response.trailers is not None:
            extra["response_trailers"] = [list(h) for h in flow.response.trailers]
    if flow.resource_type is None:
        extra["resource_type_guessed"] = True
    if flow.websocket_dropped:
        extra["websocket_dropped"] = flow.websocket_dropped
    if flow.websocket:
        ws = []
        for m in flow.websocket:
            w: dict[str, Any] = {"size": m.size, "truncated": m.truncated}
            if m.is_text:
                try:
                    m.payload.decode("utf-8")
                except UnicodeDecodeError:
                    w["payload"] = base64.b64encode(m.payload).decode("ascii")
            ws.append(w)
        extra["websocket"] = ws
    return extra


def _entry(flow: Flow, redact: bool, decode: bool, max_decoded: int) -> dict[str, Any]:
    req = flow.request
    req_headers = _redact_headers(req.headers, redact)
    query = urlsplit(req.url).query
    request: dict[str, Any] = {
        "method": req.method,
        "url": _redact_url(req.url) if redact else req.url,
        "httpVersion": req.http_version,
        "cookies": _request_cookies(req.headers, redact),
        "headers": _nv(req_headers),
        "queryString": _nv(parse_qsl(query, keep_blank_values=True)),
        "headersSize": _head_size(
            f"{req.method} {_origin_target(req.url)} {req.http_version}",
            req.headers,
            req.http_version,
        ),
        "bodySize": req.body.size,
    }
    if req.body.size or req.body.data:
        text, b64 = _text_or_b64(req.body.data)
        post: dict[str, Any] = {
            "mimeType": _header(req.headers, "content-type") or "",
            "text": text,
        }
        if b64:
            post["encoding"] = "base64"
        request["postData"] = post

    resp = flow.response
    response: dict[str, Any]
    decoded: bytes | None = None
    if resp is None:
        response = {
            "status": 0,
            "statusText": "",
            "httpVersion": "",
            "cookies": [],
            "headers": [],
            "content": {"size": 0, "mimeType": "x-unknown"},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": -1,
        }
    else:
        shown = resp.body.data
        coding = _header(resp.headers, "content-encoding")
        if decode and coding and resp.body.complete and resp.body.data:
            decoded = decode_content(resp.body.data, coding, max_decoded)
            if decoded is not None:
                shown = decoded
        text, b64 = _text_or_b64(shown)
        content: dict[str, Any] = {
            "size": resp.body.size if decoded is None else len(decoded),
            "compression": 0 if decoded is None else len(decoded) - resp.body.size,
            "mimeType": _header(resp.headers, "content-type") or "x-unknown",
        }
        if shown or resp.body.size == 0:
            content["text"] = text
            if b64:
                content["encoding"] = "base64"
        response = {
            "status": resp.status,
            "statusText": resp.reason,
            "httpVersion": resp.http_version,
            "cookies": _response_cookies(resp.headers, redact),
            "headers": _nv(_redact_headers(resp.headers, redact)),
            "content": content,
            "redirectURL": _header(resp.headers, "location") or "",
            "headersSize": _head_size(
                f"{resp.http_version} {resp.status} {resp.reason}", resp.headers, resp.http_version
            ),
            "bodySize": resp.body.size,
        }

    t = flow.timings
    connect = None if t.connect is None and t.ssl is None else (t.connect or 0.0) + (t.ssl or 0.0)
    timings = {
        "blocked": _ms(t.blocked),
        "dns": _ms(t.dns),
        "connect": _ms(connect),
        "send": max(_ms(t.send), 0.0),
        "wait": max(_ms(t.wait), 0.0),
        "receive": max(_ms(t.receive), 0.0),
        "ssl": _ms(t.ssl),
    }
    entry: dict[str, Any] = {
        "startedDateTime": _iso(flow.started_at),
        "time": max(_ms(t.total), 0.0),
        "request": request,
        "response": response,
        "cache": {},
        "timings": timings,
    }
    if flow.server_addr is not None:
        with contextlib.suppress(ValueError):
            entry["serverIPAddress"] = str(ipaddress.ip_address(flow.server_addr[0].strip("[]")))
    if flow.connection is not None:
        entry["connection"] = flow.connection
    rtype = _resource_type(flow)
    if rtype is not None:
        entry["_resourceType"] = rtype
    if flow.error is not None:
        entry["_error"] = flow.error
    if flow.websocket:
        entry["_webSocketMessages"] = [
            {
                "type": m.direction,
                "time": m.time if math.isfinite(m.time) else 0.0,
                "opcode": m.opcode,
                "data": m.text() if m.is_text else base64.b64encode(m.payload).decode("ascii"),
            }
            for m in flow.websocket
        ]
    extra = _rama_extra(flow)
    if resp is not None and decoded is not None:
        # viewers get the decoded text; the exact bytes on the wire stay here
        extra["response_raw"] = base64.b64encode(resp.body.data).decode("ascii")
    entry["_rama"] = extra
    return entry


def to_har(
    flows: Iterable[Flow],
    *,
    redact: bool = True,
    creator: tuple[str, str] | None = None,
    pages: Sequence[dict[str, Any]] | None = None,
    comment: str | None = None,
    decode: bool = True,
    max_decoded: int = 64 << 20,
) -> dict[str, Any]:
    """A HAR 1.2 document (a JSON-ready dict) of ``flows``, in the given order.

    ``redact`` replaces the values of Authorization, Proxy-Authorization,
    Cookie and Set-Cookie (and the values in the ``cookies`` arrays, and a
    password in the URL) with :data:`REDACTED`; pass ``redact=False`` to keep them (a HAR then holds
    live credentials: treat it like a password file). ``pages`` are written
    as given (entries can carry a ``pageref`` only if you add it). Bodies are
    UTF-8 text when they decode, else base64 with ``"encoding": "base64"``;
    a capture cut at the limit has ``content.size`` (the real size) larger than
    its text. With ``decode`` (the default) a complete response body with a
    Content-Encoding (gzip, deflate, br, zstd) is shown decoded, as browsers
    export it (``content.size`` decoded, ``bodySize`` on the wire,
    ``compression`` the difference), when it decodes to at most
    ``max_decoded`` bytes. Failed exchanges get status 0 and Chromium's ``_error``.
    """
    from .. import __version__

    name, version = creator or ("rama", __version__)
    log: dict[str, Any] = {
        "version": "1.2",
        "creator": {"name": name, "version": version},
    }
    if pages is not None:
        log["pages"] = list(pages)
    log["entries"] = [_entry(f, redact, decode, max_decoded) for f in flows]
    if comment is not None:
        log["comment"] = comment
    return {"log": log}


# -- import ---------------------------------------------------------------------------------
def _get(d: Any, key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise FlowFormatError(f"HAR {what}: missing {key!r}")
    v = d[key]
    if not isinstance(v, kind) or (isinstance(v, bool) and kind is not bool):
        raise FlowFormatError(f"HAR {what}: {key!r} has the wrong type")
    return v


def _pairs(items: Any, what: str) -> list[tuple[str, str]]:
    if not isinstance(items, list):
        raise FlowFormatError(f"HAR {what}: headers must be a list")
    return [(_get(h, "name", str, what), _get(h, "value", str, what)) for h in items]


def _decode(text: str, encoding: Any, what: str) -> bytes:
    if encoding is None:
        return text.encode("utf-8")
    if encoding != "base64":
        raise FlowFormatError(f"HAR {what}: unsupported encoding {encoding!r}")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise FlowFormatError(f"HAR {what}: invalid base64") from e


def _version(text: str) -> str:
    try:
        return Version.parse(text).value
    except ValueError:
        return text


def _secs(value: Any) -> float | None:
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        return None
    try:
        x = float(value) / 1000.0
    except OverflowError:
        return None
    return x if math.isfinite(x) else None


def _started(text: Any) -> float:
    if not isinstance(text, str):
        raise FlowFormatError("HAR entry: startedDateTime must be a string")
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError as e:
        raise FlowFormatError("HAR entry: bad startedDateTime") from e
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return _finite(when.timestamp(), "HAR entry startedDateTime")


def _addr(value: Any) -> Address | None:
    if isinstance(value, list) and len(value) == 2:
        host, port = value
        if isinstance(host, str) and isinstance(port, int):
            return (host, port)
    return None


def _body(data: bytes, extra: Any) -> CapturedBody:
    if isinstance(extra, dict):
        size, truncated = extra.get("size"), extra.get("truncated")
        if isinstance(size, int) and isinstance(truncated, bool) and size >= len(data):
            return CapturedBody(data, size, truncated)
    return CapturedBody(data, len(data), False)


def _trailers(value: Any) -> list[tuple[str, str]] | None:
    if not isinstance(value, list):
        return None
    out = []
    for h in value:
        if isinstance(h, list) and len(h) == 2 and all(isinstance(x, str) for x in h):
            out.append((h[0], h[1]))
    return out


def _flow_from_entry(e: Any) -> Flow:
    extra = e.get("_rama") if isinstance(e, dict) else None
    extra = extra if isinstance(extra, dict) else {}
    r = _get(e, "request", dict, "entry")
    post = r.get("postData")
    req_data = b""
    if isinstance(post, dict) and isinstance(post.get("text"), str):
        req_data = _decode(post["text"], post.get("encoding", post.get("_encoding")), "postData")
    request = HttpRequestRecord(
        method=_get(r, "method", str, "request"),
        url=_get(r, "url", str, "request"),
        http_version=_version(_get(r, "httpVersion", str, "request")),
        headers=_pairs(_get(r, "headers", list, "request"), "request"),
        body=_body(req_data, extra.get("request_body")),
        trailers=_trailers(extra.get("request_trailers")),
    )
    s = _get(e, "response", dict, "entry")
    status = _get(s, "status", int, "response")
    response: HttpResponseRecord | None = None
    if status > 0:
        content = _get(s, "content", dict, "response")
        data = b""
        if isinstance(extra.get("response_raw"), str):
            data = _decode(extra["response_raw"], "base64", "_rama.response_raw")
        elif isinstance(content.get("text"), str):
            data = _decode(content["text"], content.get("encoding"), "content")
        rb = extra.get("response_body")
        if rb is None and isinstance(content.get("size"), int) and content["size"] > len(data):
            rb = {"size": content["size"], "truncated": True}
        response = HttpResponseRecord(
            status=status,
            reason=_get(s, "statusText", str, "response"),
            http_version=_version(_get(s, "httpVersion", str, "response")),
            headers=_pairs(_get(s, "headers", list, "response"), "response"),
            body=_body(data, rb),
            trailers=_trailers(extra.get("response_trailers")),
        )
    timings_extra = extra.get("timings")
    if isinstance(timings_extra, dict):
        timings = TimingRecord.from_json(timings_extra)
    else:
        t = _get(e, "timings", dict, "entry")
        ssl, connect = _secs(t.get("ssl")), _secs(t.get("connect"))
        if connect is not None and ssl is not None:
            connect = max(connect - ssl, 0.0)  # HAR's connect includes ssl
        timings = TimingRecord(
            blocked=_secs(t.get("blocked")),
            dns=_secs(t.get("dns")),
            connect=connect,
            ssl=ssl,
            send=_secs(t.get("send")),
            wait=_secs(t.get("wait")),
            receive=_secs(t.get("receive")),
        )
    started = extra.get("started_at")
    if not isinstance(started, int | float) or isinstance(started, bool):
        started = _started(e.get("startedDateTime"))
    else:
        started = _finite(started, "HAR _rama.started_at")
    server_addr = _addr(extra.get("server_addr"))
    if server_addr is None and isinstance(e.get("serverIPAddress"), str):
        port = urlsplit(request.url).port or (443 if request.url.startswith("https") else 80)
        server_addr = (e["serverIPAddress"], port)
    ws_extra = extra.get("websocket")
    messages = []
    raw_msgs = e.get("_webSocketMessages") or []
    if not isinstance(raw_msgs, list):
        raise FlowFormatError("HAR entry: _webSocketMessages must be a list")
    for i, m in enumerate(raw_msgs):
        opcode = _get(m, "opcode", int, "websocket message")
        data_text = _get(m, "data", str, "websocket message")
        wx = ws_extra[i] if isinstance(ws_extra, list) and i < len(ws_extra) else {}
        wx = wx if isinstance(wx, dict) else {}
        if isinstance(wx.get("payload"), str):
            payload = _decode(wx["payload"], "base64", "websocket message")
        else:
            payload = _decode(data_text, None if opcode == 1 else "base64", "websocket message")
        direction = _get(m, "type", str, "websocket message")
        if direction not in ("send", "receive") or opcode not in (1, 2):
            raise FlowFormatError("HAR websocket message: bad type or opcode")
        size, truncated = wx.get("size"), wx.get("truncated")
        messages.append(
            WebSocketMessage(
                direction,
                opcode == 1,
                payload,
                _finite(_get(m, "time", (int, float), "ws"), "HAR websocket time"),
                size if isinstance(size, int) else -1,
                truncated if isinstance(truncated, bool) else False,
            )
        )
    rtype = e.get("_resourceType")
    if extra.get("resource_type_guessed") is True:
        rtype = None
    ctls, stls = extra.get("client_tls"), extra.get("server_tls")
    error = e.get("_error")
    flow = Flow(
        request=request,
        response=response,
        started_at=float(started),
        timings=timings,
        client_addr=_addr(extra.get("client_addr")),
        server_addr=server_addr,
        client_tls=TlsRecord.from_json(ctls) if isinstance(ctls, dict) else None,
        server_tls=TlsRecord.from_json(stls) if isinstance(stls, dict) else None,
        error=error if isinstance(error, str) else None,
        websocket=messages,
        resource_type=rtype if isinstance(rtype, str) else None,
        connection=e["connection"] if isinstance(e.get("connection"), str) else None,
    )
    if isinstance(extra.get("id"), str):
        flow.id = extra["id"]
    dropped = extra.get("websocket_dropped")
    if isinstance(dropped, int) and not isinstance(dropped, bool) and dropped > 0:
        flow.websocket_dropped = dropped
    return flow


def from_har(doc: dict[str, Any] | str | bytes) -> list[Flow]:
    """The flows of a HAR document (a dict, or its JSON text), in entry order.

    Reads HARs from rama (exactly: ``from_har(to_har(fs, redact=False)) ==
    fs``) and from browsers and other tools (Chromium's ``_webSocketMessages``
    included). Malformed documents raise
    :class:`~rama_proxy.flows.FlowFormatError`.
    """
    if isinstance(doc, str | bytes):
        try:
            doc = json.loads(doc)
        except ValueError as e:
            raise FlowFormatError("HAR: invalid JSON") from e
    log = _get(doc, "log", dict, "document")
    entries = _get(log, "entries", list, "log")
    out = []
    for i, entry in enumerate(entries):
        try:
            out.append(_flow_from_entry(entry))
        except FlowFormatError as err:
            raise FlowFormatError(f"entry {i}: {err}") from None
    return out


# -- replay ---------------------------------------------------------------------------------
def _rebase(url: str, base: str | None) -> tuple[str, str | None]:
    """``(url to send, new Host value or None)``."""
    if base is None:
        return url, None
    b, u = urlsplit(base), urlsplit(url)
    if not b.scheme or not b.netloc:
        raise ValueError("base_url must be absolute (scheme://host[:port][/prefix])")
    path = b.path.rstrip("/") + (u.path or "/")
    return urlunsplit((b.scheme, b.netloc, path, u.query, "")), b.netloc


def _replay_headers(flow: Flow, host: str | None) -> list[tuple[str, str]]:
    body = flow.request.body
    out = []
    for name, value in flow.request.headers:
        low = name.lower()
        if name.startswith(":") or low in _HOP_BY_HOP or value == REDACTED:
            continue
        if low == "content-length" and (not body.complete or value.strip() != str(body.size)):
            continue  # the client frames the body it really has
        if low == "host" and host is not None:
            value = host
        out.append((name, value))
    return out


async def replay_har(
    doc: dict[str, Any] | str | bytes | Sequence[Flow],
    client: HttpClient,
    *,
    base_url: str | None = None,
    timeout: float | None = None,
) -> list[Flow]:
    """Send each request of a HAR (or of flows) again, in order; returns the new flows.

    Each request goes out with its method, path and query, headers in their
    order and casing, and body. ``base_url`` (``http://127.0.0.1:8080`` or
    with a path prefix) replaces the scheme and authority (and the Host
    header's value); without it the recorded URL is used. Hop-by-hop headers,
    HTTP/2 pseudo-headers and redacted values are not sent; a stale
    Content-Length is left to the client. Redirects are not followed. For a
    faithful replay give a client built with ``cookies=False`` and
    ``decompress=False``.

    A request that fails yields a flow with ``error`` set and no response;
    the others still run.
    """
    flows = list(doc) if isinstance(doc, Sequence) and not isinstance(doc, str | bytes) else None
    originals: list[Flow] = flows if flows is not None else from_har(doc)  # type: ignore[arg-type]
    results: list[Flow] = []
    for orig in originals:
        url, host = _rebase(orig.request.url, base_url)
        headers = _replay_headers(orig, host)
        body = orig.request.body.data
        started = time.time()
        sent = HttpRequestRecord(
            orig.request.method,
            url,
            orig.request.http_version,
            list(headers),
            CapturedBody.of(body),
        )
        flow = Flow(sent, started_at=started, resource_type=orig.resource_type)
        t0 = anyio.current_time()
        try:
            req = client.build_request(
                orig.request.method, url, headers=headers, content=body or None
            )
            sent.headers = req.headers.items()
            if timeout is None:
                resp = await client.send(req, follow_redirects=False)
            else:
                resp = await client.send(req, follow_redirects=False, timeout=timeout)
            data = await resp.read()
        except (HttpError, OSError) as e:
            flow.error = f"{type(e).__name__}: {e}"
        else:
            flow.response = HttpResponseRecord(
                resp.status,
                resp.reason_phrase,
                resp.http_version,
                resp.headers.items(),
                CapturedBody.of(data),
            )
        flow.timings = TimingRecord(wait=anyio.current_time() - t0, send=0.0, receive=0.0)
        results.append(flow)
    return results
