"""Request and Response: the messages every HTTP version maps to.

Handlers are ``rama_core`` services ``Service[Request, Response]``; the same
types serve HTTP/1.x, h2 and h3, with the negotiated :class:`Version` on the
message.
"""

from __future__ import annotations

import json as _json
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

from anyio.abc import ByteStream

from ._body import Body, BodyInput
from ._errors import InvalidHeader
from ._headers import HeaderInput, Headers
from ._method import Method
from ._status import reason_phrase
from ._uri import Uri, UriForm
from ._version import Version

__all__ = ["Request", "Response", "UpgradeHandler"]

UpgradeHandler: TypeAlias = Callable[[ByteStream], Awaitable[None]]
"""Takes over the raw connection after a 101 (Upgrade) or 2xx (CONNECT) answer."""


class Request:
    """An HTTP request.

    ``target`` is the request target exactly as received (HTTP/1.x) or the
    ``:path`` (h2/h3); :attr:`uri` is its parsed form, computed on first use.
    """

    __slots__ = ("_uri", "body", "headers", "method", "target", "version")

    def __init__(
        self,
        method: str = "GET",
        uri: str | Uri = "/",
        *,
        headers: HeaderInput = None,
        body: BodyInput = None,
        version: Version = Version.HTTP_11,
    ) -> None:
        self.method: str = method
        if isinstance(uri, Uri):
            self._uri: Uri | None = uri
            self.target: str = str(uri)
        else:
            self._uri = None
            self.target = uri
        self.headers: Headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body: Body = Body.coerce(body)
        self.version: Version = version

    @classmethod
    def _trusted(
        cls, method: str, target: str, headers: Headers, body: Body, version: Version
    ) -> Request:
        """Hot-path constructor for servers: no coercion or copying."""
        r = cls.__new__(cls)
        r.method = method
        r.target = target
        r._uri = None
        r.headers = headers
        r.body = body
        r.version = version
        return r

    @property
    def uri(self) -> Uri:
        """The parsed request target (raises :class:`~rama_http.InvalidUri`)."""
        if self._uri is None:
            self._uri = Uri.parse(self.target, method=self.method)
        return self._uri

    @uri.setter
    def uri(self, value: Uri) -> None:
        self._uri = value
        self.target = str(value)

    @property
    def path(self) -> str:
        """The path of the target (without the query)."""
        t = self.target
        if t.startswith("/"):
            q = t.find("?")
            return t if q < 0 else t[:q]
        return self.uri.path

    @property
    def query(self) -> str | None:
        """The raw query string (without ``?``), or None."""
        return self.uri.query

    @property
    def host(self) -> str | None:
        """The host the request is for: from an absolute/authority target, else Host.

        Without port; IPv6 literals are returned unbracketed.
        """
        u = self.uri
        if u.host is not None:
            return u.host
        h = self.headers.get("host")
        if not h:
            return None
        try:
            return Uri.parse(h, method="CONNECT").host if ":" in h else h
        except ValueError:
            return h.strip("[]") if h.startswith("[") else h

    @property
    def authority(self) -> str | None:
        """``host[:port]`` from the target, else the Host header as sent."""
        u = self.uri
        if u.form in (UriForm.ABSOLUTE, UriForm.AUTHORITY):
            return u.authority
        return self.headers.get("host")

    @property
    def is_connect(self) -> bool:
        """Whether this is a CONNECT request."""
        return self.method == Method.CONNECT

    async def read(self, limit: int | None = None) -> bytes:
        """Read the whole body (see :meth:`Body.read`)."""
        return await self.body.read(limit)

    async def text(self, limit: int | None = None) -> str:
        """Read the body as text."""
        return await self.body.text(limit)

    async def json(self, limit: int | None = None) -> Any:
        """Read the body as JSON."""
        return await self.body.json(limit)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target} {self.version}>"


_BAD_REASON = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _checked_reason(reason: str) -> str:
    # RFC 9112: reason-phrase = 1*( HTAB / SP / VCHAR / obs-text )
    if _BAD_REASON.search(reason):
        raise InvalidHeader(f"invalid characters in reason phrase {reason[:40]!r}")
    return reason


class Response:
    """An HTTP response.

    ``reason`` overrides the reason phrase on HTTP/1.x. ``on_upgrade``, set on
    a 101 answer to an Upgrade request or a 2xx answer to CONNECT, takes over
    the raw connection once the head is sent.
    """

    __slots__ = ("_reason", "body", "headers", "on_upgrade", "status", "version")

    def __init__(
        self,
        status: int = 200,
        *,
        headers: HeaderInput = None,
        body: BodyInput = None,
        reason: str | None = None,
        version: Version = Version.HTTP_11,
        on_upgrade: UpgradeHandler | None = None,
    ) -> None:
        self.status: int = status
        self.headers: Headers = headers if isinstance(headers, Headers) else Headers(headers)
        # bytes are immutable: no copy needed (the common case of a handler's answer)
        self.body: Body = Body(body) if type(body) is bytes else Body.coerce(body)
        self._reason: str | None = None if reason is None else _checked_reason(reason)
        self.version: Version = version
        self.on_upgrade: UpgradeHandler | None = on_upgrade

    @property
    def reason(self) -> str | None:
        """The reason phrase sent on HTTP/1.x instead of the standard one (None: standard).

        Checked when set: CR, LF and other control characters would let a
        phrase smuggle header lines, so they raise :class:`InvalidHeader`.
        """
        return self._reason

    @reason.setter
    def reason(self, value: str | None) -> None:
        self._reason = None if value is None else _checked_reason(value)

    # -- constructors ----------------------------------------------------------------
    @classmethod
    def from_text(
        cls,
        text: str,
        status: int = 200,
        *,
        content_type: str = "text/plain; charset=utf-8",
        headers: HeaderInput = None,
    ) -> Response:
        """A text response with Content-Type set."""
        h = Headers(headers)
        h.setdefault("Content-Type", content_type)
        return cls(status, headers=h, body=Body(text.encode()))

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        status: int = 200,
        *,
        content_type: str = "application/octet-stream",
        headers: HeaderInput = None,
    ) -> Response:
        """A bytes response with Content-Type set."""
        h = Headers(headers)
        h.setdefault("Content-Type", content_type)
        return cls(status, headers=h, body=Body(bytes(data)))

    @classmethod
    def from_json(cls, value: Any, status: int = 200, *, headers: HeaderInput = None) -> Response:
        """A JSON response (compact encoding, UTF-8)."""
        h = Headers(headers)
        h.setdefault("Content-Type", "application/json")
        data = _json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        return cls(status, headers=h, body=Body(data))

    @classmethod
    def empty(cls, status: int = 204, *, headers: HeaderInput = None) -> Response:
        """A response without body."""
        return cls(status, headers=headers)

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Response:
        """A redirect to ``location``."""
        return cls(status, headers=[("Location", location)])

    @classmethod
    def error(cls, status: int, message: str | None = None) -> Response:
        """A short plain-text error answer, closing nothing by itself."""
        text = message if message is not None else reason_phrase(status)
        return cls.from_text(text + "\n", status)

    @property
    def reason_phrase(self) -> str:
        """``reason`` if set, else the standard phrase of :attr:`status`."""
        return self.reason if self.reason is not None else reason_phrase(self.status)

    async def read(self, limit: int | None = None) -> bytes:
        """Read the whole body (see :meth:`Body.read`)."""
        return await self.body.read(limit)

    async def text(self, limit: int | None = None) -> str:
        """Read the body as text."""
        return await self.body.text(limit)

    async def json(self, limit: int | None = None) -> Any:
        """Read the body as JSON."""
        return await self.body.json(limit)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.version}>"
