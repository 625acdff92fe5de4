"""Redirect services: to a fixed location, to https, to another host."""

from __future__ import annotations

from rama_core import Context

from .._message import Request, Response

__all__ = ["Redirect", "RedirectToHost", "RedirectToHttps"]


def _status(permanent: bool, keep_method: bool) -> int:
    if keep_method:
        return 308 if permanent else 307
    return 301 if permanent else 302


class Redirect:
    """Every request to ``location`` (``301``/``302``; ``308``/``307`` keep the method)."""

    def __init__(
        self, location: str, *, permanent: bool = False, keep_method: bool = False
    ) -> None:
        self.location = location
        self.status = _status(permanent, keep_method)

    async def serve(self, ctx: Context, req: Request) -> Response:
        """The redirect."""
        return Response(self.status, headers=[("Location", self.location)])


class RedirectToHost:
    """Same path and query on another origin (``https://example.com``)."""

    def __init__(self, origin: str, *, permanent: bool = True, keep_method: bool = True) -> None:
        self.origin = origin.rstrip("/")
        self.status = _status(permanent, keep_method)

    async def serve(self, ctx: Context, req: Request) -> Response:
        """The redirect, keeping the path and the query."""
        target = req.path + (f"?{req.query}" if req.query else "")
        return Response(self.status, headers=[("Location", self.origin + target)])


class RedirectToHttps:
    """``http://host/p`` -> ``https://host[:port]/p`` (the request's Host; 400 without one)."""

    def __init__(
        self, *, port: int | None = None, permanent: bool = True, keep_method: bool = True
    ):
        self.port = port
        self.status = _status(permanent, keep_method)

    async def serve(self, ctx: Context, req: Request) -> Response:
        """The redirect to the https origin of the same host."""
        host = req.host  # without port, IPv6 unbracketed
        if not host:
            return Response.error(400, "a Host header is needed to redirect")
        name = f"[{host}]" if ":" in host else host
        authority = name if self.port in (None, 443) else f"{name}:{self.port}"
        target = req.path + (f"?{req.query}" if req.query else "")
        return Response(self.status, headers=[("Location", f"https://{authority}{target}")])
