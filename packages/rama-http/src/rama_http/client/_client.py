"""The high-level client: :class:`HttpClient` (names follow httpx).

::

    async with HttpClient(base_url="https://api.example") as client:
        r = await client.get("/items", params={"q": "x"}, headers=[("X-B", "2"), ("x-a", "1")])
        r.raise_for_status()
        items = await r.json()

        async with client.stream("GET", "/big") as r:
            async for chunk in r.body:
                ...

The stack, outermost first: total timeout -> :class:`FollowRedirects` ->
:class:`CookieLayer` -> :class:`Retry` -> :class:`Decompress` ->
:class:`PoolTransport` (pool -> :class:`HttpConnector`). Headers go out in
the order and casing given; the client adds only Host and framing, plus what
an argument asks for (``json=``/``data=``/``files=`` a Content-Type,
``auth=`` an Authorization, the jar a Cookie) after the caller's headers.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json as _json
import os
from collections.abc import AsyncIterable, AsyncIterator, Hashable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeAlias
from urllib.parse import urlencode

import anyio

from rama_core import Context, Service
from rama_net import Authority, EstablishedConnection
from rama_tls import TlsClientConfig

from .._body import Body
from .._headers import HeaderInput, Headers
from .._message import Request, Response
from .._uri import Uri, UriForm
from .._version import Version
from ._connect import HttpConnector, PoolKey, ProxyConfig, ProxyConnector
from ._connection import ClientConnection
from ._env_proxy import EnvProxies
from ._errors import TotalTimeout
from ._h1_engine import ClientEngineLimits
from ._h2_connection import H2ClientLimits, H2ClientSettings
from ._layers import (
    CookieJar,
    CookieLayer,
    Decompress,
    FollowRedirects,
    RedirectHistory,
    Retry,
    RetryPolicy,
)
from ._multipart import FileInput, encode_multipart
from ._pool import ConnectionPool, PoolStats
from ._response import ClientResponse
from ._timeout import Timeout, TimeoutInput
from ._transport import PoolTransport, ProxyMode

__all__ = ["BasicAuth", "BearerAuth", "HttpClient", "Limits"]

ParamsInput: TypeAlias = (
    "Mapping[str, str | int | float] | Iterable[tuple[str, str | int | float]] | str | None"
)
AuthInput: TypeAlias = "BasicAuth | BearerAuth | tuple[str, str] | None"


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """``Authorization: Basic ...``."""

    username: str
    password: str

    def header(self) -> str:
        """The Authorization value."""
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
        return f"Basic {token}"


@dataclass(frozen=True, slots=True)
class BearerAuth:
    """``Authorization: Bearer <token>``."""

    token: str

    def header(self) -> str:
        """The Authorization value."""
        return f"Bearer {self.token}"


@dataclass(frozen=True, slots=True)
class Limits:
    """Pool limits."""

    max_connections: int = 100
    max_connections_per_host: int = 10
    keepalive_expiry: float | None = 90.0
    """Seconds an idle connection is kept."""


_URL_CACHE = 256
"""Parsed URLs (and their string forms) remembered per client: repeated requests skip parsing."""
_DEFAULT_TIMEOUT = Timeout()
_DEFAULT_LIMITS = Limits()


class _Unset:
    pass


_UNSET: Any = _Unset()


def _auth(auth: AuthInput) -> BasicAuth | BearerAuth | None:
    if isinstance(auth, tuple):
        return BasicAuth(*auth)
    return auth


class HttpClient:
    """An HTTP client with a connection pool; use ``async with`` (or call :meth:`aclose`).

    Proxies: ``proxy=`` sends every request through one proxy. Without it and
    with ``trust_env`` (the default, as in httpx and requests), ``HTTP_PROXY``,
    ``HTTPS_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` (lowercase too) pick the
    proxy per request URL (:class:`EnvProxies`). ``http://`` proxies are built
    in (a CONNECT tunnel); other schemes (``https://``, ``socks5://``,
    ``socks5h://``) need a ``proxy_connector=`` for them (rama-proxy has
    them). ``proxy_mode="forward"`` sends ``http://`` targets to an
    ``http://`` proxy as absolute-form requests on connections pooled per
    proxy, instead of tunnelling; ``https://`` always tunnels.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        headers: HeaderInput = None,
        params: ParamsInput = None,
        auth: AuthInput = None,
        cookies: CookieJar | bool = True,
        timeout: TimeoutInput = _DEFAULT_TIMEOUT,
        follow_redirects: bool = True,
        max_redirects: int = 20,
        retries: RetryPolicy | int = 0,
        decompress: bool = True,
        limits: Limits = _DEFAULT_LIMITS,
        tls: TlsClientConfig | None = None,
        verify: bool = True,
        proxy: str | ProxyConfig | None = None,
        proxy_connector: ProxyConnector | None = None,
        proxy_mode: ProxyMode = "tunnel",
        trust_env: bool = True,
        tcp: Service[Authority, EstablishedConnection] | None = None,
        connector: Service[PoolKey, ClientConnection] | None = None,
        http1_engine: str = "fast",
        engine_limits: ClientEngineLimits | None = None,
        emulation: Hashable | None = None,
        http2: bool = True,
        http2_prior_knowledge: bool = False,
        h2_settings: H2ClientSettings | None = None,
        h2_limits: H2ClientLimits | None = None,
    ) -> None:
        self.base_url = Uri.parse(base_url) if base_url else None
        self._parsed: dict[str, Uri] = {}
        self._targets: dict[Uri, str] = {}
        self.headers = Headers(headers)
        self.params = params
        self.auth = _auth(auth)
        self.timeout = Timeout.of(timeout)
        self.follow_redirects = follow_redirects
        if isinstance(cookies, CookieJar):
            self.cookies: CookieJar | None = cookies
        else:
            self.cookies = CookieJar() if cookies else None
        tls_cfg = tls or TlsClientConfig()
        if not verify:
            tls_cfg = dataclasses.replace(tls_cfg, verify=False)
        self.proxy = ProxyConfig(proxy) if isinstance(proxy, str) else proxy
        self.env_proxies: EnvProxies | None = None
        """With ``trust_env`` and no ``proxy=``: the proxies of HTTP_PROXY, HTTPS_PROXY,
        ALL_PROXY and NO_PROXY (read once, here), chosen per request URL."""
        if self.proxy is None and trust_env:
            env = EnvProxies.from_environ(os.environ)
            if env:
                self.env_proxies = env
        self.connector = connector or HttpConnector(
            tcp=tcp,
            proxy_connector=proxy_connector,
            tls=tls_cfg,
            http1_engine=http1_engine,
            limits=engine_limits,
            connect_timeout=self.timeout.connect,
            http2=http2,
            http2_prior_knowledge=http2_prior_knowledge,
            h2_settings=h2_settings,
            h2_limits=h2_limits,
        )
        self.pool = ConnectionPool(
            self.connector,
            max_connections=limits.max_connections,
            max_connections_per_host=limits.max_connections_per_host,
            idle_timeout=limits.keepalive_expiry,
        )
        tls_key: Hashable
        try:
            hash(tls_cfg)
            tls_key = tls_cfg
        except TypeError:  # an unhashable field (e.g. a client certificate): this client only
            tls_key = id(tls_cfg)
        self.transport = PoolTransport(
            self.pool,
            proxy=self.proxy,
            tls_key=tls_key,
            emulation=emulation,
            timeout=self.timeout,
            proxy_for=self.env_proxies.proxy_for if self.env_proxies is not None else None,
            proxy_mode=proxy_mode,
        )
        """The bottom of the stack (no redirects, cookies, decoding): for HttpxTransport."""
        transport: Service[Request, Response] = self.transport
        if decompress:
            transport = Decompress(transport)
        policy = retries if isinstance(retries, RetryPolicy) else RetryPolicy(max_retries=retries)
        if policy.max_retries > 0:
            transport = Retry(transport, policy)
        if self.cookies is not None:
            transport = CookieLayer(transport, self.cookies)
        self._no_redirects = transport
        self._redirects = FollowRedirects(transport, max_redirects=max_redirects)

    # -- lifecycle -----------------------------------------------------------------------
    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self.pool.aclose()

    async def serve(self, ctx: Context, req: Request) -> Response:
        """The client as a ``Service[Request, Response]`` (for proxies and other layers).

        ``req`` carries an absolute URI; it goes through the client's stack
        (redirects as configured, cookies, retries, decoding) and the response
        body streams. A :class:`Timeout` in ``ctx`` overrides the client's.
        """
        if ctx.get(Timeout) is None:
            ctx.insert(self.timeout)
        svc = self._redirects if self.follow_redirects else self._no_redirects
        return await svc.serve(ctx, req)

    def pool_stats(self) -> PoolStats:
        """Idle, active and connecting connections, in total and per host."""
        return self.pool.stats()

    # -- building requests ---------------------------------------------------------------
    def _url(self, url: str | Uri, params: ParamsInput) -> Uri:
        if isinstance(url, Uri):
            uri = url
        elif "://" in url:
            cached = self._parsed.get(url)
            if cached is None:
                cached = Uri.parse(url)
                if len(self._parsed) < _URL_CACHE:
                    self._parsed[url] = cached  # Uri is immutable: safe to share
            uri = cached
        elif self.base_url is not None:
            base = self.base_url
            rel = url
            path, sep, query = rel.partition("?")
            joined = base.path.rstrip("/") + "/" + path.lstrip("/") if path else base.path
            uri = base.with_(path=joined or "/", query=query if sep else None)
        else:
            raise ValueError(f"relative URL {url!r} without a base_url")
        if uri.form is not UriForm.ABSOLUTE:
            raise ValueError(f"not an absolute URL: {url!r}")
        q: list[str] = []
        for p in (self.params, params):
            if p:
                q.append(
                    p
                    if isinstance(p, str)
                    else urlencode(list(p.items()) if isinstance(p, Mapping) else list(p))
                )
        if q:
            query = "&".join(([uri.query] if uri.query else []) + q)
            uri = uri.with_(query=query)
        return uri

    def build_request(
        self,
        method: str,
        url: str | Uri,
        *,
        params: ParamsInput = None,
        headers: HeaderInput = None,
        content: bytes | str | AsyncIterable[bytes] | None = None,
        data: Mapping[str, Any] | bytes | str | None = None,
        files: Mapping[str, FileInput] | None = None,
        json: Any = None,
        auth: AuthInput = _UNSET,
    ) -> Request:
        """The :class:`~rama_http.Request` the client would send."""
        uri = self._url(url, params)
        hdrs = Headers(self.headers) if self.headers else Headers()
        if headers is not None:
            for name, value in Headers(headers):
                if self.headers and name.lower() in self.headers:
                    hdrs.set(name, value)
                else:
                    hdrs.add(name, value)
        body: Body
        ctype: str | None = None
        if files:
            raw, ctype = encode_multipart(data if isinstance(data, Mapping) else None, files)
            body = Body(raw)
        elif json is not None:
            body = Body(_json.dumps(json, separators=(",", ":")).encode())
            ctype = "application/json"
        elif isinstance(data, Mapping):
            body = Body(urlencode(list(data.items()), doseq=True).encode())
            ctype = "application/x-www-form-urlencoded"
        elif data is not None:
            body = Body.from_bytes(data)
        elif content is None:
            body = Body.empty()
        elif isinstance(content, bytes | str):
            body = Body.from_bytes(content)
        else:
            body = Body.from_iter(content)
        if ctype is not None and "content-type" not in hdrs:
            hdrs.add("Content-Type", ctype)
        a = self.auth if auth is _UNSET else _auth(auth)
        if a is not None and "authorization" not in hdrs:
            hdrs.add("Authorization", a.header())
        if uri.userinfo:
            if "authorization" not in hdrs:
                user, _, pw = uri.userinfo.partition(":")
                hdrs.add("Authorization", BasicAuth(user, pw).header())
            uri = uri.with_(userinfo=None)
        method = method.upper()
        target = self._targets.get(uri)
        if target is None:
            target = str(uri)
            if len(self._targets) < _URL_CACHE:
                self._targets[uri] = target
        req = Request._trusted(method, target, hdrs, body, Version.HTTP_11)
        req._uri = uri
        return req

    # -- sending -------------------------------------------------------------------------
    async def send(
        self,
        request: Request,
        *,
        timeout: TimeoutInput = _UNSET,
        follow_redirects: bool | None = None,
        stream: bool = False,
    ) -> ClientResponse:
        """Send a built request; read the body unless ``stream=True``."""
        t = self.timeout if timeout is _UNSET else Timeout.of(timeout)
        follow = self.follow_redirects if follow_redirects is None else follow_redirects
        ctx = Context()
        ctx.insert(t)
        svc = self._redirects if follow else self._no_redirects
        if t.total is None:
            return await self._send(svc, ctx, request, stream)
        with anyio.move_on_after(t.total) as scope:
            return await self._send(svc, ctx, request, stream)
        assert scope.cancelled_caught
        raise TotalTimeout(f"the request took over {t.total}s")

    async def _send(
        self, svc: Service[Request, Response], ctx: Context, request: Request, stream: bool
    ) -> ClientResponse:
        raw = await svc.serve(ctx, request)
        entries = ctx.get(RedirectHistory)
        history = [
            ClientResponse(r, request, url, []) for url, r in (entries.responses if entries else [])
        ]
        final = entries.final_url if entries is not None else None
        resp = ClientResponse(raw, request, final or request.target, history)
        if not stream:
            try:
                await resp.read()
            except BaseException:
                await resp.aclose()
                raise
        return resp

    async def request(
        self,
        method: str,
        url: str | Uri,
        *,
        params: ParamsInput = None,
        headers: HeaderInput = None,
        content: bytes | str | AsyncIterable[bytes] | None = None,
        data: Mapping[str, Any] | bytes | str | None = None,
        files: Mapping[str, FileInput] | None = None,
        json: Any = None,
        auth: AuthInput = _UNSET,
        timeout: TimeoutInput = _UNSET,
        follow_redirects: bool | None = None,
    ) -> ClientResponse:
        """Send a request and read the whole response body."""
        req = self.build_request(
            method,
            url,
            params=params,
            headers=headers,
            content=content,
            data=data,
            files=files,
            json=json,
            auth=auth,
        )
        return await self.send(req, timeout=timeout, follow_redirects=follow_redirects)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str | Uri,
        *,
        params: ParamsInput = None,
        headers: HeaderInput = None,
        content: bytes | str | AsyncIterable[bytes] | None = None,
        data: Mapping[str, Any] | bytes | str | None = None,
        files: Mapping[str, FileInput] | None = None,
        json: Any = None,
        auth: AuthInput = _UNSET,
        timeout: TimeoutInput = _UNSET,
        follow_redirects: bool | None = None,
    ) -> AsyncIterator[ClientResponse]:
        """``async with client.stream("GET", url) as r: async for chunk in r.body: ...``."""
        req = self.build_request(
            method,
            url,
            params=params,
            headers=headers,
            content=content,
            data=data,
            files=files,
            json=json,
            auth=auth,
        )
        resp = await self.send(req, timeout=timeout, follow_redirects=follow_redirects, stream=True)
        try:
            yield resp
        finally:
            with anyio.CancelScope(shield=True):
                await resp.aclose()

    async def get(self, url: str | Uri, **kw: Any) -> ClientResponse:
        """GET ``url`` (keywords as in :meth:`request`)."""
        return await self.request("GET", url, **kw)

    async def head(self, url: str | Uri, **kw: Any) -> ClientResponse:
        """HEAD ``url``."""
        return await self.request("HEAD", url, **kw)

    async def options(self, url: str | Uri, **kw: Any) -> ClientResponse:
        """OPTIONS ``url``."""
        return await self.request("OPTIONS", url, **kw)

    async def delete(self, url: str | Uri, **kw: Any) -> ClientResponse:
        """DELETE ``url``."""
        return await self.request("DELETE", url, **kw)

    async def post(self, url: str | Uri, **kw: Any) -> ClientResponse:
        """POST ``url``."""
        return await self.request("POST", url, **kw)

    async def put(self, url: str | Uri, **kw: Any) -> ClientResponse:
        """PUT ``url``."""
        return await self.request("PUT", url, **kw)

    async def patch(self, url: str | Uri, **kw: Any) -> ClientResponse:
        """PATCH ``url``."""
        return await self.request("PATCH", url, **kw)
