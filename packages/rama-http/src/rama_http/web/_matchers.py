"""HTTP matchers and a router built from them (first match wins).

The matchers extend :class:`rama_core.Matcher` and compose with ``&``, ``|``
and ``~`` with every other matcher (rama-net's peer-address CIDR matcher
among them)::

    router = MatchRouter(
        [
            (MethodMatcher("GET") & PathMatcher("/api/{*rest}") & HostMatcher("*.example.com"),
             api),
            (HeaderMatcher("x-admin", "1") & PeerAddressMatcher(["10.0.0.0/8"]), admin),
        ],
        fallback=not_found,
    )

:class:`PathMatcher` takes the same patterns as :class:`Router` and puts the
captured parameters into the Context as :class:`PathParams`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from rama_core import Context, Matcher, Service
from rama_tls import NegotiatedTls

from .._message import Request, Response
from .._version import Version
from ._extract import PathParams
from ._problem import problem_response
from ._tree import RouteTree

__all__ = [
    "HeaderMatcher",
    "HostMatcher",
    "MatchRouter",
    "MethodMatcher",
    "PathMatcher",
    "QueryMatcher",
    "TlsMatcher",
    "VersionMatcher",
]


class MethodMatcher(Matcher[Request]):
    """The method is one of ``methods`` (``GET`` also matches ``HEAD`` unless ``strict``)."""

    __slots__ = ("methods",)

    def __init__(self, *methods: str, strict: bool = False) -> None:
        names = {m.upper() for m in methods}
        if "GET" in names and not strict:
            names.add("HEAD")
        self.methods = frozenset(names)

    def matches(self, ctx: Context, req: Request) -> bool:
        """Compare the method."""
        return req.method in self.methods

    def __repr__(self) -> str:
        return f"MethodMatcher({sorted(self.methods)})"


class PathMatcher(Matcher[Request]):
    """The path matches a :class:`Router` pattern; captures go into :class:`PathParams`."""

    __slots__ = ("_tree", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._tree: RouteTree[bool] = RouteTree()
        self._tree.insert(pattern, True)

    def matches(self, ctx: Context, req: Request) -> bool:
        """Match the path; insert the parameters on success."""
        found = self._tree.match(req.path)
        if found is None:
            return False
        if found[1]:
            ctx.insert(PathParams(found[1]))
        return True

    def __repr__(self) -> str:
        return f"PathMatcher({self.pattern!r})"


class HostMatcher(Matcher[Request]):
    """The request's host is one of ``hosts``; ``*.example.com`` matches subdomains only."""

    __slots__ = ("exact", "suffixes")

    def __init__(self, *hosts: str) -> None:
        self.exact = frozenset(h.lower() for h in hosts if not h.startswith("*."))
        self.suffixes = tuple(h[1:].lower() for h in hosts if h.startswith("*."))

    def matches(self, ctx: Context, req: Request) -> bool:
        """Compare the host (case-insensitively, without port)."""
        host = (req.host or "").lower().rstrip(".")
        return host in self.exact or (bool(host) and host.endswith(self.suffixes))


class HeaderMatcher(Matcher[Request]):
    """The header is present; with ``value``, equal to it; with ``pattern``, matching it."""

    __slots__ = ("name", "pattern", "value")

    def __init__(self, name: str, value: str | None = None, *, pattern: str | None = None) -> None:
        self.name = name
        self.value = value
        self.pattern = re.compile(pattern) if pattern is not None else None

    def matches(self, ctx: Context, req: Request) -> bool:
        """Check every value of the header; one hit is enough."""
        values = req.headers.get_all(self.name)
        if not values:
            return False
        if self.value is None and self.pattern is None:
            return True
        return any(
            (self.value is None or v == self.value)
            and (self.pattern is None or self.pattern.search(v) is not None)
            for v in values
        )


class QueryMatcher(Matcher[Request]):
    """The query has ``key`` (and, with ``value``, one occurrence equal to it)."""

    __slots__ = ("key", "value")

    def __init__(self, key: str, value: str | None = None) -> None:
        self.key = key
        self.value = value

    def matches(self, ctx: Context, req: Request) -> bool:
        """Parse the query string and look."""
        from urllib.parse import parse_qsl

        pairs = parse_qsl(req.query or "", keep_blank_values=True)
        return any(k == self.key and (self.value is None or v == self.value) for k, v in pairs)


class VersionMatcher(Matcher[Request]):
    """The HTTP version is one of ``versions``."""

    __slots__ = ("versions",)

    def __init__(self, *versions: Version) -> None:
        self.versions = frozenset(versions)

    def matches(self, ctx: Context, req: Request) -> bool:
        """Compare the version."""
        return req.version in self.versions


class TlsMatcher(Matcher[object]):
    """The connection is TLS (``tls=True``) or not; optionally with an ALPN or SNI."""

    __slots__ = ("alpn", "server_names", "tls")

    def __init__(
        self,
        *,
        tls: bool = True,
        alpn: Iterable[str] | None = None,
        server_names: Iterable[str] | None = None,
    ) -> None:
        self.tls = tls
        self.alpn = frozenset(alpn) if alpn is not None else None
        self.server_names = frozenset(s.lower() for s in server_names) if server_names else None

    def matches(self, ctx: Context, req: object) -> bool:
        """Read the Context's NegotiatedTls."""
        info = ctx.get(NegotiatedTls)
        if info is None:
            return not self.tls
        if not self.tls:
            return False
        if self.alpn is not None and info.alpn not in self.alpn:
            return False
        return self.server_names is None or (info.server_name or "").lower() in self.server_names


class MatchRouter:
    """Services chosen by matchers, in order; the first that matches serves."""

    __slots__ = ("fallback", "routes")

    def __init__(
        self,
        routes: Sequence[tuple[Matcher[Request], Service[Request, Response]]] = (),
        *,
        fallback: Service[Request, Response] | None = None,
    ) -> None:
        self.routes = list(routes)
        self.fallback = fallback

    def add(self, matcher: Matcher[Request], service: Service[Request, Response]) -> None:
        """Append a route (checked after the existing ones)."""
        self.routes.append((matcher, service))

    async def serve(self, ctx: Context, req: Request) -> Response:
        """The first matching route's answer, else the fallback's (default: 404)."""
        for matcher, service in self.routes:
            if matcher.matches(ctx, req):
                return await service.serve(ctx, req)
        if self.fallback is not None:
            return await self.fallback.serve(ctx, req)
        return problem_response(404, "no route for this request")
