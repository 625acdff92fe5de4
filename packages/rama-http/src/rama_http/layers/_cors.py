"""CORS (the Fetch standard's CORS protocol) for a service.

Preflights (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``)
are answered here: 204 with the allowed methods and headers when the origin
is allowed, 403 when it is not. Other requests from an allowed origin get
``Access-Control-Allow-Origin`` (and credentials/expose headers) added to the
service's answer; ``Vary: Origin`` is set whenever the answer depends on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rama_core import Context, Service

from .._message import Request, Response

__all__ = ["Cors", "CorsLayer"]

HttpService = Service[Request, Response]
OriginPredicate = Callable[[str], bool]


class CorsLayer:
    """The policy; ``allow_origins`` is ``"*"``, a list, or a predicate over the Origin."""

    __slots__ = (
        "allow_credentials",
        "allow_headers",
        "allow_methods",
        "allow_origins",
        "allow_private_network",
        "expose_headers",
        "max_age",
    )

    def __init__(
        self,
        *,
        allow_origins: str | Sequence[str] | OriginPredicate = "*",
        allow_methods: Sequence[str] = ("GET", "HEAD", "POST"),
        allow_headers: str | Sequence[str] = (),
        expose_headers: Sequence[str] = (),
        allow_credentials: bool = False,
        max_age: int | None = 600,
        allow_private_network: bool = False,
    ) -> None:
        if isinstance(allow_origins, str) and allow_origins != "*":
            allow_origins = (allow_origins,)
        self.allow_origins = allow_origins
        self.allow_methods = tuple(m.upper() for m in allow_methods)
        self.allow_headers = allow_headers
        """Allowed request headers; ``"*"`` mirrors what the preflight asks."""
        self.expose_headers = tuple(expose_headers)
        self.allow_credentials = allow_credentials
        self.max_age = max_age
        self.allow_private_network = allow_private_network

    def origin_allowed(self, origin: str) -> bool:
        """Whether requests from ``origin`` may read answers."""
        allowed = self.allow_origins
        if allowed == "*":
            return True
        if callable(allowed):
            return bool(allowed(origin))
        return origin in allowed

    def layer(self, inner: HttpService) -> Cors:
        """Wrap ``inner``."""
        return Cors(inner, self)


class Cors:
    """``inner`` with the CORS protocol of ``policy``."""

    __slots__ = ("inner", "policy")

    def __init__(self, inner: HttpService, policy: CorsLayer) -> None:
        self.inner = inner
        self.policy = policy

    def _allow_origin_value(self, origin: str) -> str:
        if self.policy.allow_origins == "*" and not self.policy.allow_credentials:
            return "*"
        return origin

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Answer a preflight, or decorate the service's answer."""
        origin = req.headers.get("origin")
        p = self.policy
        if origin is None:
            return await self.inner.serve(ctx, req)
        requested = req.headers.get("access-control-request-method")
        if req.method == "OPTIONS" and requested is not None:
            return self._preflight(req, origin, requested.upper())
        resp = await self.inner.serve(ctx, req)
        if p.allow_origins != "*" or p.allow_credentials:
            resp.headers.add("Vary", "Origin")
        if not p.origin_allowed(origin):
            return resp
        resp.headers.set("Access-Control-Allow-Origin", self._allow_origin_value(origin))
        if p.allow_credentials:
            resp.headers.set("Access-Control-Allow-Credentials", "true")
        if p.expose_headers:
            resp.headers.set("Access-Control-Expose-Headers", ", ".join(p.expose_headers))
        return resp

    def _preflight(self, req: Request, origin: str, method: str) -> Response:
        p = self.policy
        vary = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
        if not p.origin_allowed(origin) or method not in p.allow_methods:
            return Response(403, headers=[("Vary", vary)], body=b"CORS request refused\n")
        asked = [
            h.strip().lower()
            for h in (req.headers.get("access-control-request-headers") or "").split(",")
            if h.strip()
        ]
        if p.allow_headers == "*":
            allowed_headers = asked
        else:
            allowed = {h.lower() for h in p.allow_headers}
            if any(h not in allowed for h in asked):
                return Response(403, headers=[("Vary", vary)], body=b"CORS request refused\n")
            allowed_headers = list(p.allow_headers)
        headers = [
            ("Access-Control-Allow-Origin", self._allow_origin_value(origin)),
            ("Access-Control-Allow-Methods", ", ".join(p.allow_methods)),
            ("Vary", vary),
        ]
        if allowed_headers:
            headers.append(("Access-Control-Allow-Headers", ", ".join(allowed_headers)))
        if p.allow_credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        if p.max_age is not None:
            headers.append(("Access-Control-Max-Age", str(p.max_age)))
        if (
            p.allow_private_network
            and req.headers.get("access-control-request-private-network") == "true"
        ):
            headers.append(("Access-Control-Allow-Private-Network", "true"))
        return Response(204, headers=headers)
