"""What the high-level client returns: status, headers and a streaming body, httpx-style."""

from __future__ import annotations

import json as _json
from typing import Any

from .._body import Body
from .._headers import Headers
from .._message import Request, Response
from .._status import reason_phrase
from ._errors import HTTPStatusError

__all__ = ["ClientResponse"]


class ClientResponse:
    """An HTTP response received by :class:`~rama_http.client.HttpClient`.

    ``body`` is the (decompressed) body as an async iterable of chunks; read it
    whole with :meth:`read`, :meth:`text` or :meth:`json`.
    """

    __slots__ = (
        "_content",
        "body",
        "headers",
        "history",
        "http_version",
        "raw",
        "reason_phrase",
        "request",
        "status",
        "url",
    )

    def __init__(
        self, raw: Response, request: Request, url: str, history: list[ClientResponse]
    ) -> None:
        self.raw = raw
        """The underlying :class:`~rama_http.Response`."""
        self.status: int = raw.status
        self.headers: Headers = raw.headers
        self.body: Body = raw.body
        self.reason_phrase: str = raw.reason or reason_phrase(raw.status)
        self.http_version: str = raw.version.value
        self.request = request
        self.url = url
        """The URL of this (last) response."""
        self.history = history
        """The redirect responses that led here, oldest first."""
        self._content: bytes | None = None

    @property
    def status_code(self) -> int:
        """Alias of :attr:`status` (httpx's name)."""
        return self.status

    @property
    def is_success(self) -> bool:
        """2xx."""
        return 200 <= self.status < 300

    @property
    def is_redirect(self) -> bool:
        """A redirect status with a Location header."""
        return self.status in (301, 302, 303, 307, 308) and "location" in self.headers

    @property
    def content(self) -> bytes:
        """The body bytes after :meth:`read`."""
        if self._content is None:
            raise RuntimeError("the body was not read yet: await response.read() first")
        return self._content

    @property
    def trailers(self) -> Headers | None:
        """Trailer fields of a chunked body, once it was read."""
        return self.body.trailers

    @property
    def encoding(self) -> str:
        """The charset of Content-Type, else utf-8."""
        ct = self.headers.get("content-type", "")
        for part in ct.split(";")[1:]:
            name, _, value = part.strip().partition("=")
            if name.lower() == "charset" and value:
                return value.strip('"')
        return "utf-8"

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body (cached)."""
        if self._content is None:
            self._content = await self.body.read(limit)
        return self._content

    async def text(self) -> str:
        """The body decoded with :attr:`encoding`."""
        data = await self.read()
        try:
            return data.decode(self.encoding, errors="replace")
        except LookupError:
            return data.decode("utf-8", errors="replace")

    async def json(self) -> Any:
        """The body parsed as JSON."""
        return _json.loads(await self.read())

    def raise_for_status(self) -> ClientResponse:
        """Raise :class:`HTTPStatusError` for a 4xx/5xx answer; return self otherwise."""
        if self.status >= 400:
            kind = "client error" if self.status < 500 else "server error"
            raise HTTPStatusError(
                f"{self.status} {self.reason_phrase} ({kind}) for {self.url}", response=self
            )
        return self

    async def aclose(self) -> None:
        """Release the connection (an unread body is dropped with it)."""
        await self.body.aclose()

    def __repr__(self) -> str:
        return f"<ClientResponse [{self.status} {self.reason_phrase}]>"
