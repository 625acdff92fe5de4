"""Flow records: what one HTTP exchange, WebSocket message or raw tunnel did.

Plain data (no sockets, no clocks): the interception pipeline fills them in,
the :class:`~rama_proxy.flows.FlowStore` keeps them, and the exporters (JSON
lines, HAR, curl) read them. Every record converts to and from a JSON-ready
dict (:meth:`Flow.to_json` / :func:`flow_from_json`) with bodies in base64, and
``flow_from_json(f.to_json()) == f``.

Times: ``started_at`` and message ``time`` are wall-clock Unix seconds (what
HAR's ``startedDateTime`` needs); durations are seconds (``None``: did not
happen, such as no TLS handshake on a reused connection).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from rama_http import Request, Response, reason_phrase

__all__ = [
    "Address",
    "AnyFlow",
    "BodyCapture",
    "CapturedBody",
    "Flow",
    "FlowFormatError",
    "HttpRequestRecord",
    "HttpResponseRecord",
    "TimingRecord",
    "TlsRecord",
    "TunnelFlow",
    "WebSocketMessage",
    "flow_from_json",
]

Address: TypeAlias = tuple[str, int]
"""A ``(host, port)`` pair (host is an IP literal or a name)."""

HeaderList: TypeAlias = list[tuple[str, str]]


class FlowFormatError(ValueError):
    """A serialized flow (JSON line, HAR entry) is malformed."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise FlowFormatError(f"{what}: expected base64 text")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise FlowFormatError(f"{what}: invalid base64") from e


def _req(d: Any, key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise FlowFormatError(f"{what}: missing {key!r}")
    value = d[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise FlowFormatError(f"{what}: {key!r} has the wrong type")
    return value


def _opt(d: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if d.get(key) is None:
        return None
    return _req(d, key, kind, what)


MAX_TIME = 253402300799.0
"""The last second of year 9999: later (or negative, or non-finite) times are refused."""


def _finite(value: Any, what: str) -> float:
    try:
        x = float(value)
    except OverflowError:
        raise FlowFormatError(f"{what}: number out of range") from None
    if not 0.0 <= x <= MAX_TIME:  # also refuses inf and NaN (a duration is never longer)
        raise FlowFormatError(f"{what}: number out of range")
    return x


def _json_time(x: float | None) -> float | None:
    """What is written for a time: nonsense (inf, NaN, out of range) becomes None."""
    return x if x is None or 0.0 <= x <= MAX_TIME else None


def _num(d: dict[str, Any], key: str, what: str) -> float | None:
    value = _opt(d, key, (int, float), what)
    return None if value is None else _finite(value, f"{what} {key}")


def _wall(d: dict[str, Any], key: str, what: str) -> float:
    return _finite(_req(d, key, (int, float), what), f"{what} {key}")


def _headers_from(value: Any, what: str) -> HeaderList:
    if not isinstance(value, list):
        raise FlowFormatError(f"{what}: headers must be a list")
    out: HeaderList = []
    for item in value:
        if (
            not isinstance(item, list | tuple)
            or len(item) != 2
            or not all(isinstance(x, str) for x in item)
        ):
            raise FlowFormatError(f"{what}: a header must be a [name, value] pair")
        out.append((item[0], item[1]))
    return out


def _addr_from(value: Any, what: str) -> Address | None:
    if value is None:
        return None
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not isinstance(value[0], str)
        or not isinstance(value[1], int)
    ):
        raise FlowFormatError(f"{what}: an address must be [host, port]")
    return (value[0], value[1])


@dataclass(eq=True)
class CapturedBody:
    """A body as recorded: the first bytes (up to the capture limit) and the real size.

    ``size`` counts every byte that went through, ``data`` holds at most the
    capture limit of them, and ``truncated`` says whether ``data`` is all of it.
    """

    data: bytes = b""
    size: int = 0
    truncated: bool = False

    @classmethod
    def of(cls, data: bytes, limit: int | None = None) -> CapturedBody:
        """A capture of ``data`` keeping at most ``limit`` bytes (``None``: all)."""
        if limit is not None and len(data) > limit:
            return cls(bytes(data[:limit]), len(data), True)
        return cls(bytes(data), len(data), False)

    @property
    def complete(self) -> bool:
        """Whether ``data`` is the whole body."""
        return not self.truncated and len(self.data) == self.size

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (data in base64)."""
        return {"data": _b64(self.data), "size": self.size, "truncated": self.truncated}

    @classmethod
    def from_json(cls, d: Any, what: str = "body") -> CapturedBody:
        """Inverse of :meth:`to_json`."""
        data = _unb64(_req(d, "data", str, what), what)
        size = _req(d, "size", int, what)
        truncated = _req(d, "truncated", bool, what)
        if size < len(data):
            raise FlowFormatError(f"{what}: size is smaller than the captured data")
        return cls(data, size, truncated)


class BodyCapture:
    """Accumulates a streamed body: keeps the first ``limit`` bytes, counts them all.

    Feed it each chunk the relay forwards (``capture.feed(chunk)``) and call
    :meth:`result` at the end. Memory is bounded by ``limit`` whatever the
    body's size.
    """

    __slots__ = ("_chunks", "_kept", "limit", "size")

    def __init__(self, limit: int = 1 << 20) -> None:
        if limit < 0:
            raise ValueError("limit must be >= 0")
        self.limit = limit
        self.size = 0
        self._kept = 0
        self._chunks: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        """Record one chunk."""
        n = len(chunk)
        self.size += n
        room = self.limit - self._kept
        if room > 0 and n:
            part = bytes(chunk[:room]) if n > room else bytes(chunk)
            self._chunks.append(part)
            self._kept += len(part)

    def result(self) -> CapturedBody:
        """The :class:`CapturedBody` so far."""
        data = b"".join(self._chunks)
        self._chunks = [data] if data else []
        return CapturedBody(data, self.size, self.size > len(data))


@dataclass(eq=True)
class HttpRequestRecord:
    """The request as the client sent it (headers in order, original casing).

    ``url`` is absolute (``https://host/path?q``); ``http_version`` is the wire
    form (``HTTP/1.1``, ``HTTP/2``). HTTP/2 pseudo-headers are not in
    ``headers`` (they are ``method`` and ``url``).
    """

    method: str
    url: str
    http_version: str = "HTTP/1.1"
    headers: HeaderList = field(default_factory=list)
    body: CapturedBody = field(default_factory=CapturedBody)
    trailers: HeaderList | None = None

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), if any."""
        low = name.lower()
        return next((v for k, v in self.headers if k.lower() == low), None)

    @classmethod
    def from_request(
        cls, req: Request, *, scheme: str = "http", body: CapturedBody | None = None
    ) -> HttpRequestRecord:
        """A record of a :class:`rama_http.Request` as it is now.

        An origin-form target (``/path?q``) becomes ``scheme://authority/path?q``
        with the request's authority (Host header, or h2's ``:authority``).
        ``body`` is the capture to keep; without it an in-memory body is
        taken whole and a streaming one is left out (size 0).
        """
        target = req.target
        if target.startswith("/") or target == "*":
            url = f"{scheme}://{req.authority or ''}{target}"
        else:
            url = target
        if body is None:
            data = req.body.bytes_now()
            body = CapturedBody.of(data) if data is not None else CapturedBody()
        trailers = req.body.trailers
        return cls(
            req.method,
            url,
            req.version.value,
            req.headers.items(),
            body,
            None if trailers is None else trailers.items(),
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "method": self.method,
            "url": self.url,
            "http_version": self.http_version,
            "headers": [list(h) for h in self.headers],
            "body": self.body.to_json(),
            "trailers": None if self.trailers is None else [list(h) for h in self.trailers],
        }

    @classmethod
    def from_json(cls, d: Any) -> HttpRequestRecord:
        """Inverse of :meth:`to_json`."""
        w = "request"
        trailers = d.get("trailers") if isinstance(d, dict) else None
        return cls(
            method=_req(d, "method", str, w),
            url=_req(d, "url", str, w),
            http_version=_req(d, "http_version", str, w),
            headers=_headers_from(_req(d, "headers", list, w), w),
            body=CapturedBody.from_json(_req(d, "body", dict, w), "request body"),
            trailers=None if trailers is None else _headers_from(trailers, w),
        )


@dataclass(eq=True)
class HttpResponseRecord:
    """The response as the server sent it (before any hook changed it, unless noted)."""

    status: int
    reason: str = ""
    http_version: str = "HTTP/1.1"
    headers: HeaderList = field(default_factory=list)
    body: CapturedBody = field(default_factory=CapturedBody)
    trailers: HeaderList | None = None

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), if any."""
        low = name.lower()
        return next((v for k, v in self.headers if k.lower() == low), None)

    @classmethod
    def from_response(
        cls, resp: Response, *, body: CapturedBody | None = None
    ) -> HttpResponseRecord:
        """A record of a :class:`rama_http.Response` (``body`` as in
        :meth:`HttpRequestRecord.from_request`)."""
        if body is None:
            data = resp.body.bytes_now()
            body = CapturedBody.of(data) if data is not None else CapturedBody()
        trailers = resp.body.trailers
        return cls(
            resp.status,
            resp.reason or reason_phrase(resp.status),
            resp.version.value,
            resp.headers.items(),
            body,
            None if trailers is None else trailers.items(),
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "status": self.status,
            "reason": self.reason,
            "http_version": self.http_version,
            "headers": [list(h) for h in self.headers],
            "body": self.body.to_json(),
            "trailers": None if self.trailers is None else [list(h) for h in self.trailers],
        }

    @classmethod
    def from_json(cls, d: Any) -> HttpResponseRecord:
        """Inverse of :meth:`to_json`."""
        w = "response"
        trailers = d.get("trailers") if isinstance(d, dict) else None
        return cls(
            status=_req(d, "status", int, w),
            reason=_req(d, "reason", str, w),
            http_version=_req(d, "http_version", str, w),
            headers=_headers_from(_req(d, "headers", list, w), w),
            body=CapturedBody.from_json(_req(d, "body", dict, w), "response body"),
            trailers=None if trailers is None else _headers_from(trailers, w),
        )


_TIMING_FIELDS = ("blocked", "dns", "connect", "ssl", "send", "wait", "receive")


@dataclass(eq=True)
class TimingRecord:
    """Phases of one exchange in seconds (``None``: the phase did not happen).

    ``connect`` is the TCP connect alone and ``ssl`` the TLS handshake (HAR
    counts ``ssl`` inside ``connect``; the exporter adds them). ``send`` is
    writing the request, ``wait`` until the first response byte, ``receive``
    reading the rest.
    """

    blocked: float | None = None
    dns: float | None = None
    connect: float | None = None
    ssl: float | None = None
    send: float | None = None
    wait: float | None = None
    receive: float | None = None

    @property
    def total(self) -> float:
        """Sum of the phases that happened."""
        return sum(getattr(self, f) or 0.0 for f in _TIMING_FIELDS)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {f: _json_time(getattr(self, f)) for f in _TIMING_FIELDS}

    @classmethod
    def from_json(cls, d: Any) -> TimingRecord:
        """Inverse of :meth:`to_json`."""
        if not isinstance(d, dict):
            raise FlowFormatError("timings: expected an object")
        return cls(**{f: _num(d, f, "timings") for f in _TIMING_FIELDS})


@dataclass(eq=True)
class TlsRecord:
    """One side's TLS session: SNI, negotiated ALPN, protocol version and cipher."""

    sni: str | None = None
    alpn: str | None = None
    version: str | None = None
    cipher: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"sni": self.sni, "alpn": self.alpn, "version": self.version, "cipher": self.cipher}

    @classmethod
    def from_json(cls, d: Any) -> TlsRecord:
        """Inverse of :meth:`to_json`."""
        if not isinstance(d, dict):
            raise FlowFormatError("tls: expected an object")
        return cls(**{k: _opt(d, k, str, "tls") for k in ("sni", "alpn", "version", "cipher")})


Direction = Literal["send", "receive"]
"""``send``: client to server; ``receive``: server to client (Chromium's terms)."""


@dataclass(eq=True)
class WebSocketMessage:
    """One WebSocket data message (control frames are not recorded).

    ``direction`` is ``send`` (client to server) or ``receive``; ``time`` is
    wall-clock Unix seconds; ``payload`` is capped like bodies (``size`` is the
    real length, ``truncated`` whether ``payload`` is shorter).
    """

    direction: Direction
    is_text: bool
    payload: bytes
    time: float
    size: int = -1
    truncated: bool = False

    def __post_init__(self) -> None:
        if self.direction not in ("send", "receive"):
            raise ValueError("direction must be 'send' or 'receive'")
        if self.size < 0:
            self.size = len(self.payload)

    @property
    def opcode(self) -> int:
        """1 for text, 2 for binary."""
        return 1 if self.is_text else 2

    def text(self) -> str:
        """The payload decoded as UTF-8 (replacement characters for bad bytes)."""
        return self.payload.decode("utf-8", "replace")

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "direction": self.direction,
            "opcode": self.opcode,
            "payload": _b64(self.payload),
            "time": _json_time(self.time) or 0.0,
            "size": self.size,
            "truncated": self.truncated,
        }

    @classmethod
    def from_json(cls, d: Any) -> WebSocketMessage:
        """Inverse of :meth:`to_json`."""
        w = "websocket message"
        direction = _req(d, "direction", str, w)
        if direction not in ("send", "receive"):
            raise FlowFormatError(f"{w}: bad direction")
        opcode = _req(d, "opcode", int, w)
        if opcode not in (1, 2):
            raise FlowFormatError(f"{w}: opcode must be 1 or 2")
        return cls(
            direction=direction,
            is_text=opcode == 1,
            payload=_unb64(_req(d, "payload", str, w), w),
            time=_wall(d, "time", w),
            size=_req(d, "size", int, w),
            truncated=_req(d, "truncated", bool, w),
        )


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(eq=True)
class Flow:
    """One HTTP request and its response (or error), with WebSocket messages if upgraded.

    ``response`` is ``None`` while waiting or when the exchange failed
    (``error`` says why: ``"connection refused"``, ``"upstream certificate
    verify failed"``...). ``client_tls`` is the intercepted client's session,
    ``server_tls`` the upstream one. ``resource_type`` is Chromium's HAR
    ``_resourceType`` when known (``document``, ``script``, ``websocket``...).
    ``connection`` identifies the upstream connection (HAR ``connection``).
    ``websocket_dropped`` counts messages not kept because the flow already
    had the store's maximum (see :meth:`FlowStore.add_websocket_message`).
    """

    request: HttpRequestRecord
    response: HttpResponseRecord | None = None
    started_at: float = 0.0
    timings: TimingRecord = field(default_factory=TimingRecord)
    client_addr: Address | None = None
    server_addr: Address | None = None
    client_tls: TlsRecord | None = None
    server_tls: TlsRecord | None = None
    error: str | None = None
    websocket: list[WebSocketMessage] = field(default_factory=list)
    resource_type: str | None = None
    connection: str | None = None
    websocket_dropped: int = 0
    id: str = field(default_factory=_new_id)

    kind: Literal["http"] = field(default="http", init=False, repr=False)

    @property
    def body_bytes(self) -> int:
        """Captured bytes held by this flow (request, response, WebSocket payloads)."""
        n = len(self.request.body.data)
        if self.response is not None:
            n += len(self.response.body.data)
        return n + sum(len(m.payload) for m in self.websocket)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (``{"type": "http", ...}``)."""
        return {
            "type": "http",
            "id": self.id,
            "started_at": _json_time(self.started_at) or 0.0,
            "request": self.request.to_json(),
            "response": None if self.response is None else self.response.to_json(),
            "timings": self.timings.to_json(),
            "client_addr": None if self.client_addr is None else list(self.client_addr),
            "server_addr": None if self.server_addr is None else list(self.server_addr),
            "client_tls": None if self.client_tls is None else self.client_tls.to_json(),
            "server_tls": None if self.server_tls is None else self.server_tls.to_json(),
            "error": self.error,
            "websocket": [m.to_json() for m in self.websocket],
            "resource_type": self.resource_type,
            "connection": self.connection,
            "websocket_dropped": self.websocket_dropped,
        }

    @classmethod
    def from_json(cls, d: Any) -> Flow:
        """Inverse of :meth:`to_json`."""
        w = "flow"
        if not isinstance(d, dict):
            raise FlowFormatError("flow: expected an object")
        resp = d.get("response")
        ctls, stls = d.get("client_tls"), d.get("server_tls")
        ws = d.get("websocket") or []
        if not isinstance(ws, list):
            raise FlowFormatError("flow: websocket must be a list")
        return cls(
            id=_req(d, "id", str, w),
            started_at=_wall(d, "started_at", w),
            request=HttpRequestRecord.from_json(_req(d, "request", dict, w)),
            response=None if resp is None else HttpResponseRecord.from_json(resp),
            timings=TimingRecord.from_json(d.get("timings") or {}),
            client_addr=_addr_from(d.get("client_addr"), w),
            server_addr=_addr_from(d.get("server_addr"), w),
            client_tls=None if ctls is None else TlsRecord.from_json(ctls),
            server_tls=None if stls is None else TlsRecord.from_json(stls),
            error=_opt(d, "error", str, w),
            websocket=[WebSocketMessage.from_json(m) for m in ws],
            resource_type=_opt(d, "resource_type", str, w),
            connection=_opt(d, "connection", str, w),
            websocket_dropped=_opt(d, "websocket_dropped", int, w) or 0,
        )


@dataclass(eq=True)
class TunnelFlow:
    """A raw tunnel (pass-through TLS, non-HTTP bytes): who, where, how much, how long.

    ``bytes_up`` went client to server, ``bytes_down`` server to client;
    ``duration`` is seconds from open to close (``None`` while open). ``sni``
    is the ClientHello's server name when the tunnel carried TLS.
    """

    target: Address
    started_at: float = 0.0
    duration: float | None = None
    bytes_up: int = 0
    bytes_down: int = 0
    client_addr: Address | None = None
    server_addr: Address | None = None
    sni: str | None = None
    error: str | None = None
    id: str = field(default_factory=_new_id)

    kind: Literal["tunnel"] = field(default="tunnel", init=False, repr=False)

    @property
    def body_bytes(self) -> int:
        """Tunnels keep no payload: always 0."""
        return 0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (``{"type": "tunnel", ...}``)."""
        return {
            "type": "tunnel",
            "id": self.id,
            "target": list(self.target),
            "started_at": _json_time(self.started_at) or 0.0,
            "duration": _json_time(self.duration),
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "client_addr": None if self.client_addr is None else list(self.client_addr),
            "server_addr": None if self.server_addr is None else list(self.server_addr),
            "sni": self.sni,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, d: Any) -> TunnelFlow:
        """Inverse of :meth:`to_json`."""
        w = "tunnel"
        if not isinstance(d, dict):
            raise FlowFormatError("tunnel: expected an object")
        target = _addr_from(_req(d, "target", list, w), w)
        assert target is not None
        return cls(
            id=_req(d, "id", str, w),
            target=target,
            started_at=_wall(d, "started_at", w),
            duration=_num(d, "duration", w),
            bytes_up=_req(d, "bytes_up", int, w),
            bytes_down=_req(d, "bytes_down", int, w),
            client_addr=_addr_from(d.get("client_addr"), w),
            server_addr=_addr_from(d.get("server_addr"), w),
            sni=_opt(d, "sni", str, w),
            error=_opt(d, "error", str, w),
        )


AnyFlow: TypeAlias = Flow | TunnelFlow
"""What a :class:`~rama_proxy.flows.FlowStore` holds."""


def flow_from_json(d: Any) -> AnyFlow:
    """A :class:`Flow` or :class:`TunnelFlow` from its :meth:`to_json` dict.

    Raises :class:`FlowFormatError` for anything malformed.
    """
    if not isinstance(d, dict):
        raise FlowFormatError("expected a JSON object")
    kind = d.get("type")
    if kind == "http":
        return Flow.from_json(d)
    if kind == "tunnel":
        return TunnelFlow.from_json(d)
    raise FlowFormatError(f"unknown flow type {kind!r}")
