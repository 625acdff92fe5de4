"""Kubernetes-style liveness and readiness endpoints.

``/livez`` answers 200 while the process serves at all; ``/readyz`` answers
200 until graceful shutdown starts (or a readiness check fails), then 503 so
load balancers stop sending new work while requests in flight drain.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from rama_core import Context, Shutdown

from .._message import Request, Response

__all__ = ["HealthService"]

ReadinessCheck = Callable[[], Awaitable[bool]]


class HealthService:
    """``GET livez_path`` / ``GET readyz_path``; everything else 404."""

    def __init__(
        self,
        *,
        shutdown: Shutdown | None = None,
        checks: Sequence[ReadinessCheck] = (),
        livez_path: str = "/livez",
        readyz_path: str = "/readyz",
    ) -> None:
        self._shutdown = shutdown
        self.checks = list(checks)
        self.livez_path = livez_path
        self.readyz_path = readyz_path

    def _shutting_down(self) -> bool:
        shutdown = self._shutdown or Shutdown.current()
        return shutdown is not None and shutdown.is_triggered

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Answer a probe."""
        path = req.path
        if path == self.livez_path:
            return Response.from_text("ok\n")
        if path == self.readyz_path:
            for check in self.checks:
                if not await check():
                    return Response.from_text("not ready\n", 503)
            # last: a probe whose checks were slow must see a shutdown begun meanwhile
            if self._shutting_down():
                return Response.from_text("shutting down\n", 503)
            return Response.from_text("ok\n")
        return Response.error(404)
