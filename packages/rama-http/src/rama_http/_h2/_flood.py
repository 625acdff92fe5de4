"""Flood accounting for an h2 server connection (sans-IO).

HTTP/2 lets a peer send frames that cost the receiver work but carry nothing:
empty DATA (CVE-2019-9518), WINDOW_UPDATE for a window the server never used,
PRIORITY for streams that will never exist (CVE-2019-9513), unknown extension
frames, frames on streams already closed (each answered with RST_STREAM), and
frames the server must answer (PING, SETTINGS; CVE-2019-9512, CVE-2019-9515)
or that open and reset streams (CVE-2023-44487). :class:`H2FloodGuard` is told
about each frame as it is processed and raises :class:`H2Flood` once the peer
spent an allowance; the connection then sends GOAWAY(ENHANCE_YOUR_CALM) and
closes. It knows nothing of sockets or of the ``h2`` library: the caller
reports frames with plain values; the time comes from the caller's clock
(``anyio.current_time`` in the server), read only when an allowance is spent,
so ordinary traffic (requests, DATA) never reads it.

The allowances (:class:`~rama_http.H2Config`):

- PING and SETTINGS (each answered): ``max_pings`` and ``max_settings`` per
  ``flood_window``, checked per frame, so the answers never exceed them.
- Resets (streams reset in progress or refused): ``max_resets`` per window.
- Frames that make no progress: ``max_idle_frames`` per window. Progress is
  a DATA frame with payload or END_STREAM, a HEADERS frame that opens a stream
  or carries trailers, a WINDOW_UPDATE that gives back window the server used
  (at least the smaller of 1 KiB and what is outstanding), the first GOAWAY, the
  SETTINGS ACK the server asked for. Everything else counts: empty DATA, a
  WINDOW_UPDATE for window never consumed (``+1`` floods), unknown frame types,
  RST_STREAM, HEADERS or small DATA (under 1 KiB) for streams no longer open
  (h2 answers DATA and HEADERS there with RST_STREAM), unsolicited ACKs. Each stream
  the peer opens forgives two such frames already counted in the window (a
  reset racing a response, a last WINDOW_UPDATE for a finished stream).
- PRIORITY: a budget tied to the concurrency limit, as nginx does: ``max(100,
  max_concurrent_streams)`` to start with, plus ``max_concurrent_streams`` for
  each stream the peer opens; PRIORITY frames for idle streams cost the same.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

__all__ = ["H2Flood", "H2FloodGuard", "WindowAllowance"]

_MIN_RETURN = 1024
_MIN_LATE_DATA = 1024
_FORGIVE_PER_STREAM = 2
# Outstanding window of a finished stream is remembered only from this size on:
# clients return stream window in large steps, so smaller answers see no late updates.
_KEEP_CLOSED_CREDIT = 16 * 1024


class H2Flood(Exception):
    """The peer spent an allowance; ``what`` names it ("PING frames", ...)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class WindowAllowance:
    """How many of one kind of event a peer may cause per fixed time window.

    The clock is the caller's: :meth:`spend` takes the current time (read once
    per socket read, not per frame).
    """

    __slots__ = ("limit", "spent", "start", "window")

    def __init__(self, limit: int | None, window: float, now: float = 0.0) -> None:
        self.limit = limit
        self.window = window
        self.spent = 0
        self.start = now

    def forgive(self, n: int) -> None:
        """Take back up to ``n`` of what was spent in the current window."""
        self.spent = max(0, self.spent - n)

    def spend(self, now: float, n: int = 1) -> bool:
        """Count ``n`` more at time ``now``; False once the window's allowance is exceeded."""
        if self.limit is None:
            return True
        if now - self.start >= self.window:
            self.start = now
            self.spent = 0
        self.spent += n
        return self.spent <= self.limit


class H2FloodGuard:
    """Counts, per frame, what an h2 peer's frames are worth; raises :class:`H2Flood`.

    Call the method matching each frame as it is processed, and
    :meth:`sent`/:meth:`stream_closed` as the server sends DATA and finishes
    streams (they decide which WINDOW_UPDATEs return used window).
    """

    __slots__ = (
        "_clock",
        "_closed_credit",
        "_closed_keep",
        "_conn_credit",
        "_goaway_seen",
        "_idle",
        "_pings",
        "_priority_budget",
        "_priority_per_stream",
        "_resets",
        "_settings",
        "_settings_acks_due",
        "_stream_credit",
        "idle_frames",
    )

    def __init__(
        self,
        *,
        window: float,
        max_pings: int | None,
        max_settings: int | None,
        max_resets: int | None,
        max_idle_frames: int | None,
        max_concurrent_streams: int,
        clock: Callable[[], float],
    ) -> None:
        self._clock = clock
        now = clock()
        self._pings = WindowAllowance(max_pings, window, now)
        self._settings = WindowAllowance(max_settings, window, now)
        self._resets = WindowAllowance(max_resets, window, now)
        self._idle = WindowAllowance(max_idle_frames, window, now)
        self._priority_per_stream = max_concurrent_streams
        self._priority_budget = max(100, max_concurrent_streams)
        self._settings_acks_due = 1  # the server's own SETTINGS in its preface
        self._goaway_seen = False
        self._conn_credit = 0
        self._stream_credit: dict[int, int] = {}
        # Window still outstanding on recently finished streams: their last
        # WINDOW_UPDATEs often arrive after the server is done with them.
        self._closed_credit: OrderedDict[int, int] = OrderedDict()
        self._closed_keep = 2 * max(100, max_concurrent_streams)
        self.idle_frames = 0
        """Frames that made no progress, all told (for diagnostics and tests)."""

    # -- frames received --------------------------------------------------------------------
    def account(
        self,
        ftype: int,
        flags: int,
        stream_id: int,
        payload: memoryview | bytes,
        stream_open: Callable[[int], bool],
    ) -> bool:
        """Account one received frame; False for HEADERS and CONTINUATION.

        Those two depend on the role (a server opens streams with them, a
        client gets answers), so the caller accounts them itself.
        """
        if ftype == 0:
            pad = payload[0] + 1 if flags & 0x8 and len(payload) else 0
            self.data(
                stream_open=stream_open(stream_id),
                length=len(payload) - pad,
                end_stream=bool(flags & 1),
            )
        elif ftype == 8:
            self.window_update(stream_id, int.from_bytes(payload[:4], "big") & 0x7FFFFFFF)
        elif ftype == 6:
            self.ping(ack=bool(flags & 1))
        elif ftype == 4:
            self.settings(ack=bool(flags & 1))
        elif ftype == 2:
            self.priority()
        elif ftype == 3:
            self.rst_stream(stream_open=stream_open(stream_id))
        elif ftype == 7:
            self.goaway()
        elif ftype > 9:
            self.unknown()
        else:
            return False
        return True

    def ping(self, *, ack: bool) -> None:
        """A PING; one that is not an ACK is answered, and counts against ``max_pings``."""
        if ack:
            self._idle_frame("PING ACK frames nobody asked for")  # the server sends no PING
        elif not self._pings.spend(self._clock()):
            raise H2Flood("PING frames")

    def settings(self, *, ack: bool) -> None:
        """A SETTINGS frame; one that is not an ACK is answered (``max_settings``)."""
        if ack:
            if self._settings_acks_due > 0:
                self._settings_acks_due -= 1
            else:
                self._idle_frame("SETTINGS ACK frames nobody asked for")
        elif not self._settings.spend(self._clock()):
            raise H2Flood("SETTINGS frames")

    def settings_sent(self) -> None:
        """The server sent a SETTINGS frame: one ACK from the peer is due."""
        self._settings_acks_due += 1

    def data(self, *, stream_open: bool, length: int, end_stream: bool) -> None:
        """A DATA frame with ``length`` bytes of payload (padding excluded)."""
        if not stream_open:
            # In flight when the stream was reset is normal; a stream of small frames
            # (each answered with RST_STREAM) is not. Large ones cost the peer bandwidth.
            if length < _MIN_LATE_DATA:
                self._idle_frame("frames on closed streams")
        elif not length and not end_stream:
            self._idle_frame("empty DATA frames")

    def headers(self, *, opens_stream: bool, stream_open: bool) -> None:
        """A complete header block: a new stream, trailers, or (closed stream) nothing."""
        if opens_stream:
            self._priority_budget += self._priority_per_stream
            self._idle.forgive(_FORGIVE_PER_STREAM)
        elif not stream_open:
            self._idle_frame("frames on closed streams")

    def window_update(self, stream_id: int, increment: int) -> None:
        """A WINDOW_UPDATE; progress only when it gives back window the server used."""
        if stream_id == 0:
            credit = self._conn_credit
            self._conn_credit = max(0, credit - increment)
        else:
            streams = self._stream_credit
            credit = streams.get(stream_id, 0)
            if not credit:
                streams = self._closed_credit
                credit = streams.get(stream_id, 0)
            if credit:
                streams[stream_id] = max(0, credit - increment)
        if credit <= 0 or increment < min(credit, _MIN_RETURN):
            self._idle_frame("WINDOW_UPDATE frames for unused window")

    def priority(self) -> None:
        """A PRIORITY frame (for any stream, idle ones included)."""
        self._priority_budget -= 1
        if self._priority_budget < 0:
            raise H2Flood("PRIORITY frames")

    def rst_stream(self, *, stream_open: bool) -> None:
        """A RST_STREAM; one for an open stream is counted by :meth:`resets`."""
        if not stream_open:
            self._idle_frame("RST_STREAM frames for closed streams")

    def goaway(self) -> None:
        """A GOAWAY; repeats carry nothing."""
        if self._goaway_seen:
            self._idle_frame("GOAWAY frames")
        self._goaway_seen = True

    def unknown(self) -> None:
        """A frame the server ignores (an unknown extension type, ALTSVC)."""
        self._idle_frame("unknown frames")

    def resets(self, n: int = 1) -> None:
        """``n`` streams reset in progress or refused (``max_resets``)."""
        if not self._resets.spend(self._clock(), n):
            raise H2Flood("stream resets")

    def refused(self, n: int = 1) -> None:
        """``n`` streams refused (over the concurrency limit, or after GOAWAY)."""
        if not self._resets.spend(self._clock(), n):
            raise H2Flood("refused streams")

    # -- what the server does -----------------------------------------------------------------
    def sent(self, stream_id: int, n: int) -> None:
        """The server sent ``n`` bytes of DATA on ``stream_id``: window the peer may return."""
        self._conn_credit += n
        credit = self._stream_credit
        credit[stream_id] = credit.get(stream_id, 0) + n

    def stream_closed(self, stream_id: int) -> None:
        """The stream is finished; its outstanding window is forgotten."""
        credit = self._stream_credit.pop(stream_id, 0)
        if credit >= _KEEP_CLOSED_CREDIT:
            closed = self._closed_credit
            closed[stream_id] = credit
            if len(closed) > self._closed_keep:
                closed.popitem(last=False)

    def _idle_frame(self, what: str) -> None:
        self.idle_frames += 1
        if not self._idle.spend(self._clock()):
            raise H2Flood(what)
