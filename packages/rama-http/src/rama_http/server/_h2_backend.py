"""The one engine-facing interface of the h2 server connection.

The server side (:mod:`._h2` and its units) talks to a sans-IO h2 engine only
through :class:`H2ServerEngine`: a handful of commands (bytes go out through
:meth:`~H2ServerEngine.data_to_send`) and :meth:`~H2ServerEngine.receive`, which
turns the peer's bytes into rama's engine events (:mod:`rama_http._h2._events`),
whatever engine is below. Two implementations:

- :class:`~._h2_fast.FastServerEngine`, rama's own :class:`~rama_http._h2._engine.H2Engine`
  (``H2Config(engine="fast")``, the default);
- :class:`~._h2_ref.H2LibraryServerEngine`, the ``h2`` library as the strict
  reference (``H2Config(engine="h2")``), its events translated.

Both run every received frame through the flood accounting
(:class:`~rama_http._h2._flood.H2FloodGuard`) before acting on it, and raise
:class:`~rama_http._h2._flood.H2Flood` at the frame that spent an allowance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .._h2._config import H2Config
from .._h2._events import Event
from .._h2._flood import H2FloodGuard

__all__ = ["H2ServerEngine", "new_server_engine"]


class H2ServerEngine(Protocol):
    """What the server connection needs from an h2 engine (server role).

    :meth:`receive` reports only these events (others are dropped):
    ``RequestReceived``, ``DataReceived`` (``data`` is what the application owes
    window for: the engine gave padding's credit back itself), ``TrailersReceived``,
    ``WindowUpdated``, ``RemoteSettingsChanged``, ``StreamReset``,
    ``StreamRefused`` (a stream refused over SETTINGS_MAX_CONCURRENT_STREAMS,
    before any event of it), ``ConnectionTerminated`` (the client's GOAWAY: the
    engine keeps answering accepted streams) and, last, ``ConnectionFailed``
    (a connection error: GOAWAY is queued and nothing of that read is to be
    acted on).
    """

    errors: tuple[type[Exception], ...]
    """What a command raises on a stream that cannot take it (closed, reset)."""

    @property
    def frames_received(self) -> int:
        """Frames processed, all told (the read loop yields after dense slices)."""
        ...

    @property
    def max_frame(self) -> int:
        """The largest DATA payload the peer accepts in one frame."""
        ...

    @property
    def max_data(self) -> int:
        """The most :meth:`send_data` takes in one call (it may split it into frames)."""
        ...

    def start(self) -> None:
        """Queue our preface (SETTINGS, the connection window's WINDOW_UPDATE)."""
        ...

    def window(self, stream_id: int) -> int:
        """What may be sent on ``stream_id`` now (its window and the connection's, the smaller)."""
        ...

    def send_headers(
        self, stream_id: int, fields: Sequence[tuple[bytes, bytes]], end: bool = False
    ) -> None:
        """Queue a header block (lowercased, already filtered fields)."""
        ...

    def send_data(self, stream_id: int, data: bytes | memoryview, end: bool) -> None:
        """Queue DATA within the windows (the caller checked :meth:`window`)."""
        ...

    def end_stream(self, stream_id: int) -> None:
        """End our side of the stream (an empty DATA with END_STREAM)."""
        ...

    def reset(self, stream_id: int, code: int) -> None:
        """Queue RST_STREAM(``code``); never raises (a closed stream is left alone)."""
        ...

    def ack(self, stream_id: int, n: int) -> None:
        """Give back ``n`` bytes of flow-control credit the application consumed."""
        ...

    def goaway(self, code: int, last_stream_id: int, additional_data: bytes = b"") -> None:
        """Queue GOAWAY; accepted streams can still be answered after it."""
        ...

    def data_to_send(self) -> bytes | bytearray:
        """Everything queued since the last call (the caller owns it)."""
        ...

    def receive(self, data: bytes | memoryview) -> list[Event]:
        """Feed the peer's bytes; the events they complete (see the class docstring)."""
        ...


def new_server_engine(config: H2Config, guard: H2FloodGuard) -> H2ServerEngine:
    """The engine ``config.engine`` names, with our SETTINGS from ``config``."""
    if config.engine == "h2":
        from ._h2_ref import H2LibraryServerEngine

        return H2LibraryServerEngine(config, guard)
    from ._h2_fast import FastServerEngine

    return FastServerEngine(config, guard)
