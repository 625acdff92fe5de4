"""A dynamic router: path patterns and methods to services, in a tree.

::

    router = Router()

    @router.get("/users/{id:int}")
    async def user(id: int) -> dict[str, int]:
        return {"id": id}

    router.nest("/api", api_router)
    await serve("127.0.0.1:8080", router)

- methods: 405 with ``Allow`` when the path exists but the method does not;
  HEAD is answered by the GET route when there is no HEAD route (the server
  sends no body); OPTIONS is answered ``204`` with ``Allow`` unless routed;
- nesting copies another router's routes under a prefix (nest it once built);
  its fallback serves the unmatched paths under that prefix;
- a fallback service answers what matches no route (default: 404);
- the matched parameters are a :class:`PathParams` Context extension and the
  pattern a :class:`MatchedRoute` one (for logs and ``http.route`` metrics).

Dispatch walks the tree one segment at a time, so its cost depends on the
path's depth, not on the number of routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from rama_core import Context, Service

from .._message import Request, Response
from ._extract import AppState, Handler, PathParams
from ._problem import problem_response
from ._tree import RouteTree

__all__ = ["MatchedRoute", "Router"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
RouteTarget = Service[Request, Response] | Callable[..., Awaitable[Any]]

_ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@dataclass(frozen=True, slots=True)
class MatchedRoute:
    """The pattern that matched the request (a Context extension)."""

    pattern: str


class _Endpoint:
    __slots__ = ("any", "methods", "pattern", "state")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.methods: dict[str, Service[Request, Response]] = {}
        self.any: Service[Request, Response] | None = None
        self.state: AppState | None = None

    def allow(self) -> str:
        names = set(self.methods) if self.any is None else set(_ALL_METHODS)
        if "GET" in names:
            names.add("HEAD")
        names.add("OPTIONS")
        return ", ".join(m for m in _ALL_METHODS if m in names) + "".join(
            f", {m}" for m in sorted(names - set(_ALL_METHODS))
        )

    def service_for(self, method: str) -> Service[Request, Response] | None:
        svc = self.methods.get(method)
        if svc is not None:
            return svc
        if method == "HEAD":
            svc = self.methods.get("GET")
            if svc is not None:
                return svc
        return self.any


def _as_service(target: RouteTarget) -> Service[Request, Response]:
    if hasattr(target, "serve"):
        return target
    return Handler(target)


class Router:
    """``Request -> Response`` by path pattern and method (see module docs)."""

    def __init__(
        self,
        *,
        state: object | None = None,
        fallback: Service[Request, Response] | None = None,
    ) -> None:
        self._tree: RouteTree[_Endpoint] = RouteTree()
        self._endpoints: dict[str, _Endpoint] = {}
        self._state = AppState(state) if state is not None else None
        self._fallback = fallback

    # -- building -----------------------------------------------------------------------------
    def route(
        self, pattern: str, target: RouteTarget, *, methods: Iterable[str] | None = None
    ) -> None:
        """Route ``pattern`` to ``target`` (a Service, or an async function -> :class:`Handler`).

        ``methods=None`` routes every method not routed separately.
        """
        self._add(pattern, _as_service(target), methods, self._state)

    def _add(
        self,
        pattern: str,
        service: Service[Request, Response],
        methods: Iterable[str] | None,
        state: AppState | None,
    ) -> None:
        endpoint = self._endpoints.get(pattern)
        if endpoint is None:
            endpoint = _Endpoint(pattern)
            self._tree.insert(pattern, endpoint)
            self._endpoints[pattern] = endpoint
            endpoint.state = state
        if methods is None:
            if endpoint.any is not None:
                raise ValueError(f"route {pattern!r} already has a catch-all service")
            endpoint.any = service
            return
        for method in methods:
            m = method.upper()
            if m in endpoint.methods:
                raise ValueError(f"route {m} {pattern!r} is already registered")
            endpoint.methods[m] = service

    def _decorator(self, method: str, pattern: str) -> Callable[[F], F]:
        def register(fn: F) -> F:
            self.route(pattern, fn, methods=(method,))
            return fn

        return register

    def get(self, pattern: str) -> Callable[[F], F]:
        """Decorator: route GET (and so HEAD) ``pattern`` to the function."""
        return self._decorator("GET", pattern)

    def post(self, pattern: str) -> Callable[[F], F]:
        """Decorator: route POST ``pattern`` to the function."""
        return self._decorator("POST", pattern)

    def put(self, pattern: str) -> Callable[[F], F]:
        """Decorator: route PUT ``pattern`` to the function."""
        return self._decorator("PUT", pattern)

    def patch(self, pattern: str) -> Callable[[F], F]:
        """Decorator: route PATCH ``pattern`` to the function."""
        return self._decorator("PATCH", pattern)

    def delete(self, pattern: str) -> Callable[[F], F]:
        """Decorator: route DELETE ``pattern`` to the function."""
        return self._decorator("DELETE", pattern)

    def options(self, pattern: str) -> Callable[[F], F]:
        """Decorator: route OPTIONS ``pattern`` (instead of the automatic answer)."""
        return self._decorator("OPTIONS", pattern)

    def nest(self, prefix: str, other: Router) -> None:
        """Serve ``other``'s routes under ``prefix`` (``/api`` + ``/users`` = ``/api/users``)."""
        if not prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError(f"nest prefix must start and not end with '/': {prefix!r}")
        for pattern, endpoint in other._endpoints.items():
            full = prefix if pattern == "/" else prefix + pattern
            state = endpoint.state or other._state
            for method, svc in endpoint.methods.items():
                self._add(full, svc, (method,), state)
            if endpoint.any is not None:
                self._add(full, endpoint.any, None, state)
        if other._fallback is not None:
            self._add(prefix + "/{*__rest}", other._fallback, None, other._state)

    def fallback(self, service: RouteTarget) -> None:
        """What answers a request that matches no route (default: 404 problem)."""
        self._fallback = _as_service(service)

    @property
    def patterns(self) -> list[str]:
        """Registered patterns, in registration order."""
        return list(self._endpoints)

    # -- serving -------------------------------------------------------------------------------
    async def serve(self, ctx: Context, req: Request) -> Response:
        """Dispatch ``req`` to its route."""
        found = self._tree.match(req.path)
        if found is None:
            if self._fallback is not None:
                return await self._fallback.serve(ctx, req)
            return problem_response(404, "no route for this path")
        endpoint, params = found
        method = req.method
        svc = endpoint.service_for(method)
        if svc is None:
            allow = endpoint.allow()
            if method == "OPTIONS":
                return Response(204, headers=[("Allow", allow)])
            return problem_response(
                405, f"{method} is not allowed here", headers=[("Allow", allow)]
            )
        ctx.insert(PathParams(params))
        ctx.insert(MatchedRoute(endpoint.pattern))
        if endpoint.state is not None:
            ctx.insert(endpoint.state)
        return await svc.serve(ctx, req)

    def __repr__(self) -> str:
        return f"Router({len(self._endpoints)} routes)"
