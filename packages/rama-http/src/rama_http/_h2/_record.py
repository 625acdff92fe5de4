"""Recording what an h2 client sends before its first request (sans-IO).

The frames a client opens an HTTP/2 connection with (its SETTINGS in wire
order, the connection WINDOW_UPDATE, PRIORITY frames, the priority carried in
the first HEADERS frame) are set by its HTTP/2 stack, not by its user, which
makes them a fingerprint (see :mod:`rama_http.fingerprint._akamai`).

The ``h2`` library folds SETTINGS into a dict (losing duplicates and order
among repeats) and does not report frames it merely accepts, so
:class:`H2PrefaceRecorder` reads the raw frame headers itself, alongside
``h2``, until the first request's header block is complete. It never decides
whether the bytes are valid HTTP/2; that is ``h2``'s job. On input that does
not look like HTTP/2 it simply stops recording.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "CONNECTION_PREFACE",
    "H2Frame",
    "H2Priority",
    "H2PrefaceRecord",
    "H2PrefaceRecorder",
    "PseudoHeaderOrder",
]

CONNECTION_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""The 24 bytes every HTTP/2 client connection starts with (RFC 9113 section 3.4)."""

_DATA, _HEADERS, _PRIORITY, _SETTINGS, _WINDOW_UPDATE, _CONTINUATION = 0, 1, 2, 4, 8, 9
_FLAG_ACK = 0x1
_FLAG_END_HEADERS = 0x4
_FLAG_PADDED = 0x8
_FLAG_PRIORITY = 0x20
_HEADER_LEN = 9
# Only the first frames matter; a client that has not finished its first
# header block after this much is not worth following further.
_DEFAULT_LIMIT = 256 * 1024
_MAX_FRAMES = 512


@dataclass(frozen=True, slots=True)
class H2Frame:
    """One frame header as seen on the wire (payload not kept)."""

    type: int
    flags: int
    stream_id: int
    length: int


@dataclass(frozen=True, slots=True)
class H2Priority:
    """A stream dependency, from a PRIORITY frame or a HEADERS frame's priority flag.

    ``weight`` is the effective weight 1..256 (the wire byte plus one), the
    form fingerprints and RFC 9113 use.
    """

    stream_id: int
    exclusive: bool
    depends_on: int
    weight: int


@dataclass(slots=True)
class H2PrefaceRecord:
    """What the client sent up to the end of its first request's header block.

    Inserted into the connection :class:`~rama_core.Context` by the h2 server;
    the Akamai fingerprint is a pure function of it.
    """

    settings: list[tuple[int, int]] = field(default_factory=list)
    """The first SETTINGS frame's ``(identifier, value)`` pairs in wire order, repeats kept."""
    window_update: int | None = None
    """Increment of the first connection-level WINDOW_UPDATE before the first request."""
    priorities: list[H2Priority] = field(default_factory=list)
    """PRIORITY frames sent before the first request's header block ended, in order."""
    headers_priority: H2Priority | None = None
    """The priority carried by the first HEADERS frame, if it had the PRIORITY flag."""
    pseudo_header_order: tuple[str, ...] = ()
    """Pseudo-header names of the first request in wire order (``":method"``, ...)."""
    frames: list[H2Frame] = field(default_factory=list)
    """Every frame header seen while recording, for diagnostics."""
    complete: bool = False
    """Whether recording reached the end of the first header block."""


@dataclass(frozen=True, slots=True)
class PseudoHeaderOrder:
    """The pseudo-header names of one h2 request in wire order (per-request Context extension)."""

    names: tuple[str, ...]


class H2PrefaceRecorder:
    """Incrementally parses client-to-server frame headers into an :class:`H2PrefaceRecord`.

    Feed it every byte the client sends (starting with the preface); it stops
    doing work once the first header block is complete, so calling
    :meth:`feed` on a busy connection costs one attribute check per chunk.
    """

    __slots__ = ("_buffer", "_limit", "_seen", "_settings_seen", "done", "record")

    def __init__(self, *, limit: int = _DEFAULT_LIMIT) -> None:
        self.record = H2PrefaceRecord()
        self.done = False
        self._buffer = bytearray()
        self._limit = limit
        self._seen = 0
        self._settings_seen = False

    def feed(self, data: bytes | memoryview) -> None:
        """Consume the next bytes the client sent."""
        if self.done:
            return
        self._seen += len(data)
        self._buffer += data
        self._parse()
        if not self.done and (self._seen > self._limit or len(self.record.frames) > _MAX_FRAMES):
            self._stop(complete=False)

    def set_pseudo_header_order(self, names: tuple[str, ...]) -> None:
        """Store the first request's pseudo-header order (decoded by ``h2``)."""
        if not self.record.pseudo_header_order:
            self.record.pseudo_header_order = names

    def _stop(self, *, complete: bool) -> None:
        self.done = True
        self.record.complete = complete
        self._buffer = bytearray()

    def _parse(self) -> None:
        buf = self._buffer
        pos = 0
        if self._seen - len(buf) < len(CONNECTION_PREFACE):
            # Still inside the preface: it must match byte for byte.
            have = min(len(buf), len(CONNECTION_PREFACE))
            if buf[:have] != CONNECTION_PREFACE[:have]:
                self._stop(complete=False)
                return
            if have < len(CONNECTION_PREFACE):
                return
            pos = len(CONNECTION_PREFACE)
        while len(buf) - pos >= _HEADER_LEN:
            length = int.from_bytes(buf[pos : pos + 3], "big")
            ftype, flags = buf[pos + 3], buf[pos + 4]
            stream_id = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
            if len(buf) - pos - _HEADER_LEN < length:
                break
            payload = bytes(buf[pos + _HEADER_LEN : pos + _HEADER_LEN + length])
            pos += _HEADER_LEN + length
            self.record.frames.append(H2Frame(ftype, flags, stream_id, length))
            if self._on_frame(ftype, flags, stream_id, payload):
                self._stop(complete=True)
                return
        del buf[:pos]

    def _on_frame(self, ftype: int, flags: int, stream_id: int, payload: bytes) -> bool:
        """Record one frame; return True once the first header block is complete."""
        rec = self.record
        if ftype == _SETTINGS and not flags & _FLAG_ACK and stream_id == 0:
            if not self._settings_seen:
                self._settings_seen = True
                rec.settings = [
                    (
                        int.from_bytes(payload[i : i + 2], "big"),
                        int.from_bytes(payload[i + 2 : i + 6], "big"),
                    )
                    for i in range(0, len(payload) - len(payload) % 6, 6)
                ]
        elif ftype == _WINDOW_UPDATE and stream_id == 0 and len(payload) == 4:
            if rec.window_update is None:
                rec.window_update = int.from_bytes(payload, "big") & 0x7FFFFFFF
        elif ftype == _PRIORITY and len(payload) == 5:
            rec.priorities.append(_priority(stream_id, payload))
        elif ftype == _HEADERS:
            if flags & _FLAG_PRIORITY:
                offset = 1 if flags & _FLAG_PADDED else 0
                if len(payload) >= offset + 5:
                    rec.headers_priority = _priority(stream_id, payload[offset : offset + 5])
            return bool(flags & _FLAG_END_HEADERS)
        elif ftype == _CONTINUATION:
            return bool(flags & _FLAG_END_HEADERS)
        return False


def _priority(stream_id: int, five: bytes) -> H2Priority:
    dep = int.from_bytes(five[:4], "big")
    return H2Priority(
        stream_id=stream_id,
        exclusive=bool(dep & 0x80000000),
        depends_on=dep & 0x7FFFFFFF,
        weight=five[4] + 1,
    )
