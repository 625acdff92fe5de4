"""Client layers, each a Service over ``Service[Request, Response]``.

- :class:`FollowRedirects`: 301/302/303/307/308 up to ``max_redirects``;
  Authorization, Cookie and Proxy-Authorization are dropped when the origin changes.
- :class:`Retry`: idempotent requests (with a replayable body) are retried on
  connection errors and on 429/502/503/504 answers, with exponential backoff,
  full jitter, and the server's Retry-After when it gives one.
- :class:`Decompress`: gzip, deflate, br (``brotli``) and zstd (``zstandard``) bodies.
- :class:`CookieLayer`: a :class:`CookieJar` filled from Set-Cookie, sent back as Cookie.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any, Final, Protocol

import anyio

from rama_core import Context, Service

from .._body import Body
from .._errors import ProtocolError
from .._headers import Headers
from .._message import Request, Response
from .._uri import Uri, default_port
from ._errors import NetworkError, TimeoutException, TooManyRedirects
from ._transport import IDEMPOTENT_METHODS, is_replayable

__all__ = [
    "CookieJar",
    "CookieLayer",
    "DecodingError",
    "Decompress",
    "FollowRedirects",
    "RedirectHistory",
    "Retry",
    "RetryPolicy",
]

_log = logging.getLogger("rama.http.client")

_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_ORIGIN_BOUND: Final = ("authorization", "cookie", "proxy-authorization")
_DRAIN_LIMIT: Final = 64 * 1024


class _Inner(Protocol):
    async def serve(self, ctx: Context, req: Request) -> Response: ...


def _origin(uri: Uri) -> tuple[str | None, str | None, int | None]:
    return (uri.scheme, (uri.host or "").lower(), uri.effective_port)


async def drain(response: Response) -> None:
    """Read and drop a small body so the connection is reused; close a large one."""
    body = response.body
    if body.length is not None and body.length > _DRAIN_LIMIT:
        await body.aclose()
        return
    try:
        with anyio.move_on_after(1.0):
            await body.discard(_DRAIN_LIMIT)
    except Exception:
        pass
    await body.aclose()


@dataclass
class RedirectHistory:
    """The redirect responses of one request (in the Context), oldest first."""

    responses: list[tuple[str, Response]] = field(default_factory=list)
    final_url: str | None = None
    """The URL of the final response."""


class FollowRedirects:
    """Follow redirects (RFC 9110 section 15.4) up to ``max_redirects`` hops."""

    def __init__(self, inner: Service[Request, Response], *, max_redirects: int = 20) -> None:
        self.inner = inner
        self.max_redirects = max_redirects

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Send ``req``; answer the final response of the redirect chain."""
        history = ctx.get_or_insert_with(RedirectHistory, RedirectHistory)
        for _ in range(self.max_redirects + 1):
            resp = await self.inner.serve(ctx, req)
            location = resp.headers.get("location")
            if resp.status not in _REDIRECTS or not location:
                return resp
            nxt = self._next(req, resp.status, location)
            if nxt is None:
                return resp
            await drain(resp)
            history.responses.append((req.target, resp))
            req = nxt
            history.final_url = nxt.target
        raise TooManyRedirects(f"more than {self.max_redirects} redirects")

    def _next(self, req: Request, status: int, location: str) -> Request | None:
        base = req.uri
        try:
            if "://" in location:
                uri = Uri.parse(location)
            elif location.startswith("//"):
                uri = Uri.parse(f"{base.scheme}:{location}")
            else:
                if not location.startswith("/"):
                    d = base.path.rsplit("/", 1)[0]
                    location = f"{d}/{location}"
                path, sep, query = location.partition("?")
                uri = base.with_(path=path or "/", query=query if sep else None)
        except ValueError:
            return None
        if uri.scheme not in ("http", "https"):
            return None
        method = req.method
        body = req.body
        headers = req.headers.copy()
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            method = "GET"
            body = Body.empty()
            for h in ("content-length", "transfer-encoding", "content-type"):
                headers.remove(h)
        elif not is_replayable(req):
            return None  # a streamed body cannot be sent again
        if _origin(uri) != _origin(base):
            for h in _ORIGIN_BOUND:
                headers.remove(h)
        if "host" in headers and (uri.host, uri.effective_port) != (base.host, base.effective_port):
            host = f"[{uri.host}]" if uri.host and ":" in uri.host else uri.host or ""
            if uri.port is not None and uri.port != default_port(uri.scheme):
                host = f"{host}:{uri.port}"
            headers.set("Host", host)
        return Request(method, uri, headers=headers, body=Body(body.bytes_now() or b""))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how :class:`Retry` tries again."""

    max_retries: int = 2
    backoff_factor: float = 0.2
    """Base of the exponential backoff: ``factor * 2**attempt`` seconds, full jitter."""
    max_backoff: float = 10.0
    retry_statuses: frozenset[int] = frozenset({429, 502, 503, 504})
    methods: frozenset[str] = IDEMPOTENT_METHODS
    respect_retry_after: bool = True
    max_retry_after: float = 30.0
    """A longer Retry-After is not waited for: the response is returned."""

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        if retry_after is not None and self.respect_retry_after:
            return retry_after
        cap = min(self.max_backoff, self.backoff_factor * (2**attempt))
        return random.uniform(0, cap)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Retry:
    """Retry idempotent requests on connection errors and retryable statuses."""

    def __init__(
        self, inner: Service[Request, Response], policy: RetryPolicy | None = None
    ) -> None:
        self.inner = inner
        self.policy = policy or RetryPolicy()

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Send ``req``, retrying as :attr:`policy` allows."""
        policy = self.policy
        can_retry = req.method in policy.methods and is_replayable(req)
        attempt = 0
        while True:
            try:
                resp = await self.inner.serve(ctx, req)
            except (NetworkError, TimeoutException, ProtocolError) as e:
                if not can_retry or attempt >= policy.max_retries:
                    raise
                delay = policy.delay(attempt, None)
                _log.debug("retrying %s %s in %.2fs after %s", req.method, req.target, delay, e)
                await anyio.sleep(delay)
                attempt += 1
                req = _again(req)
                continue
            if (
                not can_retry
                or attempt >= policy.max_retries
                or resp.status not in policy.retry_statuses
            ):
                return resp
            ra = _retry_after(resp.headers.get("retry-after"))
            if ra is not None and ra > policy.max_retry_after:
                return resp
            await drain(resp)
            delay = policy.delay(attempt, ra)
            _log.debug(
                "retrying %s %s in %.2fs after %d", req.method, req.target, delay, resp.status
            )
            await anyio.sleep(delay)
            attempt += 1
            req = _again(req)


def _again(req: Request) -> Request:
    data = req.body.bytes_now() or b""
    return Request(req.method, req.uri, headers=req.headers, body=Body(data), version=req.version)


class _Decoder(Protocol):
    def decompress(self, data: bytes) -> bytes: ...


def _decoder(coding: str) -> _Decoder | None:
    if coding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if coding == "deflate":
        return _Deflate()
    if coding == "br":
        try:
            import brotli  # type: ignore[import-not-found,import-untyped,unused-ignore]
        except ImportError:
            return None
        return _Brotli(brotli.Decompressor())
    if coding == "zstd":
        try:
            import zstandard  # type: ignore[import-not-found,import-untyped,unused-ignore]
        except ImportError:
            return None
        return zstandard.ZstdDecompressor().decompressobj()  # type: ignore[no-any-return,unused-ignore]
    return None


class _Brotli:
    def __init__(self, d: Any) -> None:
        self._d = d

    def decompress(self, data: bytes) -> bytes:
        return bytes(self._d.process(data))


class _Deflate:
    """``deflate`` is zlib-wrapped per RFC, but some servers send raw deflate."""

    def __init__(self) -> None:
        self._d: Any = None
        self._first = True

    def decompress(self, data: bytes) -> bytes:
        if self._d is None:
            self._d = zlib.decompressobj()
            try:
                return bytes(self._d.decompress(data))
            except zlib.error:
                self._d = zlib.decompressobj(-zlib.MAX_WBITS)
        return bytes(self._d.decompress(data))


class DecodingError(ProtocolError):
    """The body does not decode with its Content-Encoding."""

    status = 502


async def _decoded(body: Body, decoders: list[_Decoder]) -> AsyncIterator[bytes]:
    try:
        async for chunk in body:
            for d in decoders:
                try:
                    chunk = d.decompress(chunk)
                except Exception as e:
                    raise DecodingError(f"invalid compressed body: {e}") from e
            if chunk:
                yield chunk
    finally:
        await body.aclose()


class Decompress:
    """Decode ``Content-Encoding`` (gzip, deflate, br, zstd; nested codings too).

    The headers stay as received; only the body changes. Unknown codings are
    passed through undecoded. No Accept-Encoding is added: ask for what you want.
    """

    def __init__(self, inner: Service[Request, Response]) -> None:
        self.inner = inner

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Send ``req``; decode the response body."""
        resp = await self.inner.serve(ctx, req)
        if "content-encoding" not in resp.headers:
            return resp
        codings = [c.strip().lower() for c in resp.headers.get_list("content-encoding")]
        codings = [c for c in codings if c and c != "identity"]
        if not codings or req.method == "HEAD" or resp.body.is_empty:
            return resp
        decoders = [_decoder(c) for c in reversed(codings)]
        if any(d is None for d in decoders):
            return resp
        inner = resp.body
        resp.body = Body(
            stream=_decoded(inner, [d for d in decoders if d is not None]), trailers=None
        )
        return resp


@dataclass
class _Cookie:
    name: str
    value: str
    domain: str
    host_only: bool
    path: str
    secure: bool
    expires: float | None


class CookieJar:
    """Cookies received from servers (RFC 6265, the common subset)."""

    def __init__(self) -> None:
        self._cookies: dict[tuple[str, str, str], _Cookie] = {}

    def __len__(self) -> int:
        return len(self._cookies)

    def set(self, name: str, value: str, domain: str, path: str = "/") -> None:
        """Add a cookie for ``domain`` and its subdomains."""
        self._cookies[(domain.lower(), path, name)] = _Cookie(
            name, value, domain.lower(), False, path, False, None
        )

    def get(self, name: str) -> str | None:
        """The value of the first cookie called ``name``."""
        for c in self._cookies.values():
            if c.name == name:
                return c.value
        return None

    def clear(self) -> None:
        """Forget every cookie."""
        self._cookies.clear()

    def extract(self, uri: Uri, headers: Headers) -> None:
        """Store the Set-Cookie fields of a response to ``uri``."""
        host = (uri.host or "").lower()
        for line in headers.get_all("set-cookie"):
            parsed: SimpleCookie = SimpleCookie()
            try:
                parsed.load(line)
            except CookieError:
                continue
            for name, morsel in parsed.items():
                domain = (morsel["domain"] or "").lstrip(".").lower()
                host_only = not domain
                if host_only:
                    domain = host
                elif host != domain and not host.endswith("." + domain):
                    continue  # a cookie for someone else's domain
                path = morsel["path"] or (uri.path.rsplit("/", 1)[0] or "/")
                expires: float | None = None
                if morsel["max-age"]:
                    try:
                        expires = time.time() + int(morsel["max-age"])
                    except ValueError:
                        expires = None
                elif morsel["expires"]:
                    try:
                        expires = email.utils.parsedate_to_datetime(morsel["expires"]).timestamp()
                    except (TypeError, ValueError):
                        expires = None
                key = (domain, path, name)
                if expires is not None and expires <= time.time():
                    self._cookies.pop(key, None)
                    continue
                self._cookies[key] = _Cookie(
                    name, morsel.value, domain, host_only, path, bool(morsel["secure"]), expires
                )

    def header_for(self, uri: Uri) -> str | None:
        """The Cookie header value for a request to ``uri``, or None."""
        host = (uri.host or "").lower()
        now = time.time()
        out = []
        for key, c in list(self._cookies.items()):
            if c.expires is not None and c.expires <= now:
                del self._cookies[key]
                continue
            if c.host_only:
                if host != c.domain:
                    continue
            elif host != c.domain and not host.endswith("." + c.domain):
                continue
            p = uri.path
            if not (p == c.path or p.startswith(c.path.rstrip("/") + "/") or c.path == "/"):
                continue
            if c.secure and uri.scheme != "https":
                continue
            out.append(f"{c.name}={c.value}")
        return "; ".join(out) or None


class CookieLayer:
    """Send the jar's cookies (appended as one Cookie field) and store Set-Cookie."""

    def __init__(self, inner: Service[Request, Response], jar: CookieJar) -> None:
        self.inner = inner
        self.jar = jar

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Add Cookie (unless the caller set one), send, store Set-Cookie."""
        uri = req.uri
        if "cookie" not in req.headers:
            value = self.jar.header_for(uri)
            if value:
                headers = req.headers.copy()
                headers.add("Cookie", value)
                req = Request._trusted(req.method, req.target, headers, req.body, req.version)
                req.uri = uri
        resp = await self.inner.serve(ctx, req)
        if "set-cookie" in resp.headers:
            self.jar.extract(uri, resp.headers)
        return resp
