"""The ASGI lifespan protocol: startup before the first request, shutdown at the end."""

from __future__ import annotations

import logging
from typing import Any

import anyio

from ._types import ASGIApp

__all__ = ["Lifespan", "LifespanError"]

_log = logging.getLogger("rama.http.asgi")


class LifespanError(RuntimeError):
    """The app's lifespan startup (or, with ``lifespan="on"``, its handler) failed."""


class Lifespan:
    """Runs ``app`` with a ``lifespan`` scope in a task; see :meth:`run`."""

    def __init__(self, app: ASGIApp, mode: str, state: dict[str, Any]) -> None:
        self.app = app
        self.mode = mode
        self.state = state
        self.started = anyio.Event()
        self.stopped = anyio.Event()
        self._stop = anyio.Event()
        self._calls = 0
        self.failure: str | None = None
        self.unsupported = False
        self._startup_complete = False
        self._shutdown_failure: str | None = None

    async def _receive(self) -> dict[str, Any]:
        self._calls += 1
        if self._calls == 1:
            return {"type": "lifespan.startup"}
        await self._stop.wait()
        return {"type": "lifespan.shutdown"}

    async def _send(self, message: Any) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self._startup_complete = True
            self.started.set()
        elif kind == "lifespan.startup.failed":
            self.failure = str(message.get("message") or "lifespan startup failed")
            self.started.set()
        elif kind == "lifespan.shutdown.complete":
            self.stopped.set()
        elif kind == "lifespan.shutdown.failed":
            self._shutdown_failure = str(message.get("message") or "")
            if self._stop.is_set():
                _log.error("ASGI lifespan shutdown failed: %s", self._shutdown_failure)
            else:  # cancelled (the event loop is closing), not asked to stop
                _log.debug("ASGI lifespan cancelled: %s", self._shutdown_failure)
            self.stopped.set()

    async def run(self) -> None:
        """The lifespan task: until the app returns (after :meth:`stop`)."""
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "state": self.state,
        }
        try:
            await self.app(scope, self._receive, self._send)
        except Exception as e:
            if not self._startup_complete and self.failure is None:
                if self.mode == "auto":
                    _log.info("ASGI app does not support lifespan (%s); going on without", e)
                    self.unsupported = True
                else:
                    _log.error("ASGI lifespan failed", exc_info=e)
                    self.failure = f"lifespan raised {type(e).__name__}"
            else:
                _log.error("ASGI lifespan failed", exc_info=e)
        finally:
            if not self.started.is_set() and self.failure is None and not self.unsupported:
                self.unsupported = True  # returned without answering startup
            self.started.set()
            self.stopped.set()

    async def wait_started(self) -> None:
        """Wait for the startup; raise :class:`LifespanError` if it failed."""
        await self.started.wait()
        if self.failure is not None:
            raise LifespanError(self.failure)

    async def stop(self, timeout: float | None = 10.0) -> None:
        """Send ``lifespan.shutdown`` and wait (at most ``timeout``) for its answer."""
        self._stop.set()
        with anyio.move_on_after(timeout) as scope:
            await self.stopped.wait()
        if scope.cancelled_caught:
            _log.warning("ASGI lifespan shutdown did not finish within %gs", timeout)
