"""HTTP/2 frames (RFC 9113 sections 4 and 6): parsing and serialization, sans-IO.

Parsing works in place over ``bytes``/``bytearray``/``memoryview`` (the
9-byte header is unpacked with :mod:`struct` at an offset, nothing is copied
until a payload is taken). Serializers return ``bytes``; the engine appends
them to one output buffer per write batch.

:func:`check_frame` holds the size and stream-id rules every frame type has
(the right error code for each), shared by the engine and :class:`FrameReader`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "CONNECTION_PREFACE",
    "DEFAULT_MAX_FRAME_SIZE",
    "FLAG_ACK",
    "FLAG_END_HEADERS",
    "FLAG_END_STREAM",
    "FLAG_PADDED",
    "FLAG_PRIORITY",
    "FRAME_HEADER",
    "MAX_FRAME_SIZE_LIMIT",
    "MAX_WINDOW",
    "ErrorCode",
    "Frame",
    "FrameError",
    "FrameReader",
    "FrameType",
    "SettingCode",
    "check_frame",
    "continuation_frame",
    "data_frame",
    "frame",
    "goaway_frame",
    "header_block_frames",
    "parse_goaway",
    "parse_priority",
    "parse_settings",
    "ping_frame",
    "priority_frame",
    "rst_stream_frame",
    "settings_frame",
    "strip_padding",
    "window_update_frame",
]

CONNECTION_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""The client connection preface (RFC 9113 section 3.4)."""

FRAME_HEADER = struct.Struct(">BHBBL")
"""The 9-byte frame header: length (high byte, low 16 bits), type, flags, stream id."""

DEFAULT_MAX_FRAME_SIZE = 16384
MAX_FRAME_SIZE_LIMIT = (1 << 24) - 1
MAX_WINDOW = (1 << 31) - 1

FLAG_END_STREAM = 0x1
FLAG_ACK = 0x1
FLAG_END_HEADERS = 0x4
FLAG_PADDED = 0x8
FLAG_PRIORITY = 0x20

_U32 = struct.Struct(">L")
_U32U32 = struct.Struct(">LL")
_U16U32 = struct.Struct(">HL")
_PRIO = struct.Struct(">LB")
_pack_header = FRAME_HEADER.pack


class FrameType(IntEnum):
    """Frame types of RFC 9113 section 6."""

    DATA = 0x0
    HEADERS = 0x1
    PRIORITY = 0x2
    RST_STREAM = 0x3
    SETTINGS = 0x4
    PUSH_PROMISE = 0x5
    PING = 0x6
    GOAWAY = 0x7
    WINDOW_UPDATE = 0x8
    CONTINUATION = 0x9


class ErrorCode(IntEnum):
    """Error codes of RFC 9113 section 7."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class SettingCode(IntEnum):
    """SETTINGS identifiers (RFC 9113 section 6.5.2, RFC 8441)."""

    HEADER_TABLE_SIZE = 0x1
    ENABLE_PUSH = 0x2
    MAX_CONCURRENT_STREAMS = 0x3
    INITIAL_WINDOW_SIZE = 0x4
    MAX_FRAME_SIZE = 0x5
    MAX_HEADER_LIST_SIZE = 0x6
    ENABLE_CONNECT_PROTOCOL = 0x8


class FrameError(Exception):
    """A frame breaks RFC 9113; ``connection`` says whether it is a connection error."""

    def __init__(self, code: int, message: str, *, connection: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.connection = connection


_P = ErrorCode.PROTOCOL_ERROR
_FS = ErrorCode.FRAME_SIZE_ERROR


def check_frame(
    ftype: int, flags: int, stream_id: int, length: int
) -> tuple[int, str, bool] | None:
    """The size/stream-id rule a frame header breaks, as ``(code, reason, connection)``, or None.

    Does not check the length against SETTINGS_MAX_FRAME_SIZE (the caller
    knows the limit) nor anything that needs the payload (padding).
    """
    if ftype == 0 or ftype == 1 or ftype == 9:  # DATA, HEADERS, CONTINUATION
        if stream_id == 0:
            return _P, f"frame type {ftype} on stream 0", True
        return None
    if ftype == 4:  # SETTINGS
        if stream_id:
            return _P, "SETTINGS on a stream", True
        if flags & FLAG_ACK:
            if length:
                return _FS, "SETTINGS ACK with a payload", True
        elif length % 6:
            return _FS, "SETTINGS length not a multiple of 6", True
        return None
    if ftype == 8:  # WINDOW_UPDATE
        if length != 4:
            return _FS, "WINDOW_UPDATE length is not 4", True
        return None
    if ftype == 3:  # RST_STREAM
        if stream_id == 0:
            return _P, "RST_STREAM on stream 0", True
        if length != 4:
            return _FS, "RST_STREAM length is not 4", True
        return None
    if ftype == 2:  # PRIORITY
        if stream_id == 0:
            return _P, "PRIORITY on stream 0", True
        if length != 5:
            return _FS, "PRIORITY length is not 5", False
        return None
    if ftype == 6:  # PING
        if stream_id:
            return _P, "PING on a stream", True
        if length != 8:
            return _FS, "PING length is not 8", True
        return None
    if ftype == 7:  # GOAWAY
        if stream_id:
            return _P, "GOAWAY on a stream", True
        if length < 8:
            return _FS, "GOAWAY shorter than 8", True
        return None
    if ftype == 5:  # PUSH_PROMISE
        if stream_id == 0:
            return _P, "PUSH_PROMISE on stream 0", True
        if length < (5 if flags & FLAG_PADDED else 4):
            return _FS, "PUSH_PROMISE too short", True
        return None
    return None


def strip_padding(payload: bytes | memoryview, flags: int, *, extra: int = 0) -> tuple[int, int]:
    """``(start, end)`` of the content of a DATA/HEADERS/PUSH_PROMISE payload.

    ``extra`` is the size of the fixed fields after the pad length (5 for a
    HEADERS priority, 4 for a promised stream id); the content starts after
    them. Raises :class:`FrameError` (PROTOCOL_ERROR) when the padding is
    longer than the payload (RFC 9113 sections 6.1, 6.2).
    """
    n = len(payload)
    if flags & FLAG_PADDED:
        if n < 1 + extra:
            raise FrameError(_FS, "padded frame too short")
        pad = payload[0]
        end = n - pad
        if end < 1 + extra:
            raise FrameError(_P, "padding exceeds the payload")
        return 1 + extra, end
    if n < extra:
        raise FrameError(_FS, "frame too short")
    return extra, n


def parse_settings(payload: bytes | bytearray | memoryview) -> list[tuple[int, int]]:
    """The ``(identifier, value)`` pairs of a SETTINGS payload, in order, repeats kept."""
    unpack = _U16U32.unpack_from
    return [unpack(payload, i) for i in range(0, len(payload) - 5, 6)]


def parse_priority(
    payload: bytes | bytearray | memoryview, offset: int = 0
) -> tuple[int, int, bool]:
    """``(depends_on, weight 1..256, exclusive)`` of a 5-byte priority field."""
    dep, w = _PRIO.unpack_from(payload, offset)
    return dep & 0x7FFFFFFF, w + 1, bool(dep & 0x80000000)


def parse_goaway(payload: bytes | bytearray | memoryview) -> tuple[int, int, bytes]:
    """``(last_stream_id, error_code, additional_data)`` of a GOAWAY payload."""
    last, code = _U32U32.unpack_from(payload, 0)
    return last & 0x7FFFFFFF, code, bytes(payload[8:])


def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """Serialize one frame (no size checks)."""
    n = len(payload)
    return _pack_header(n >> 16, n & 0xFFFF, ftype, flags, stream_id) + payload


def data_frame(stream_id: int, data: bytes, *, end_stream: bool = False, pad: int = 0) -> bytes:
    """One DATA frame; ``pad`` adds that many padding bytes (plus the pad-length byte)."""
    flags = FLAG_END_STREAM if end_stream else 0
    if pad:
        return frame(0, flags | FLAG_PADDED, stream_id, bytes((pad,)) + data + bytes(pad))
    n = len(data)
    return _pack_header(n >> 16, n & 0xFFFF, 0, flags, stream_id) + data


def settings_frame(settings: Iterable[tuple[int, int]] = (), *, ack: bool = False) -> bytes:
    """A SETTINGS frame with the pairs in the given order (repeats kept), or an ACK."""
    if ack:
        return frame(4, FLAG_ACK, 0)
    pack = _U16U32.pack
    return frame(4, 0, 0, b"".join(pack(k, v) for k, v in settings))


def window_update_frame(stream_id: int, increment: int) -> bytes:
    """A WINDOW_UPDATE frame."""
    return frame(8, 0, stream_id, _U32.pack(increment))


def ping_frame(data: bytes, *, ack: bool = False) -> bytes:
    """A PING (8 bytes of opaque data)."""
    if len(data) != 8:
        raise ValueError("PING data must be 8 bytes")
    return frame(6, FLAG_ACK if ack else 0, 0, data)


def rst_stream_frame(stream_id: int, error_code: int) -> bytes:
    """An RST_STREAM frame."""
    return frame(3, 0, stream_id, _U32.pack(error_code))


def goaway_frame(last_stream_id: int, error_code: int, additional_data: bytes = b"") -> bytes:
    """A GOAWAY frame."""
    return frame(7, 0, 0, _U32U32.pack(last_stream_id, error_code) + additional_data)


def _priority_field(depends_on: int, weight: int, exclusive: bool) -> bytes:
    if not 1 <= weight <= 256:
        raise ValueError("priority weight must be in 1..256")
    return _PRIO.pack(depends_on | (0x80000000 if exclusive else 0), weight - 1)


def priority_frame(stream_id: int, depends_on: int, weight: int, exclusive: bool = False) -> bytes:
    """A PRIORITY frame; ``weight`` is the effective weight 1..256."""
    return frame(2, 0, stream_id, _priority_field(depends_on, weight, exclusive))


def continuation_frame(stream_id: int, fragment: bytes, *, end_headers: bool) -> bytes:
    """A CONTINUATION frame."""
    return frame(9, FLAG_END_HEADERS if end_headers else 0, stream_id, fragment)


def header_block_frames(
    stream_id: int,
    block: bytes,
    max_frame_size: int,
    *,
    end_stream: bool = False,
    priority: tuple[int, int, bool] | None = None,
    pad: int = 0,
) -> bytes:
    """A HEADERS frame carrying ``block``, followed by CONTINUATION frames if it is too big."""
    flags = FLAG_END_STREAM if end_stream else 0
    prefix = b""
    if pad:
        flags |= FLAG_PADDED
        prefix = bytes((pad,))
    if priority is not None:
        flags |= FLAG_PRIORITY
        prefix += _priority_field(priority[0], priority[1], priority[2])
    room = max_frame_size - len(prefix) - pad
    if len(block) <= room:
        payload = prefix + block + bytes(pad) if (prefix or pad) else block
        n = len(payload)
        return _pack_header(n >> 16, n & 0xFFFF, 1, flags | FLAG_END_HEADERS, stream_id) + payload
    out = [frame(1, flags, stream_id, prefix + block[:room] + bytes(pad))]
    pos = room
    n = len(block)
    while pos < n:
        chunk = block[pos : pos + max_frame_size]
        pos += max_frame_size
        out.append(continuation_frame(stream_id, chunk, end_headers=pos >= n))
    return b"".join(out)


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame as parsed by :class:`FrameReader`: header fields and the raw payload."""

    type: int
    flags: int
    stream_id: int
    payload: bytes

    @property
    def length(self) -> int:
        """The payload length (the frame header's length field)."""
        return len(self.payload)


class FrameReader:
    """Splits a byte stream into :class:`Frame` objects (no connection state).

    For tools and tests (and relays that look at frames without being an
    endpoint); the engine parses inline for speed. ``feed`` accepts any
    chunking; a frame larger than ``max_frame_size`` or breaking
    :func:`check_frame` raises :class:`FrameError`.
    """

    __slots__ = ("_buf", "max_frame_size", "preface")

    def __init__(
        self, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, preface: bool = False
    ) -> None:
        self._buf = bytearray()
        self.max_frame_size = max_frame_size
        self.preface = preface
        """Expect (and strip) the client connection preface first."""

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes; return the frames now complete."""
        buf = self._buf
        buf += data
        if self.preface:
            n = min(len(buf), len(CONNECTION_PREFACE))
            if buf[:n] != CONNECTION_PREFACE[:n]:
                raise FrameError(_P, "invalid connection preface")
            if len(buf) < len(CONNECTION_PREFACE):
                return []
            del buf[: len(CONNECTION_PREFACE)]
            self.preface = False
        out: list[Frame] = []
        pos = 0
        end = len(buf)
        unpack = FRAME_HEADER.unpack_from
        while end - pos >= 9:
            hi, lo, ftype, flags, sid = unpack(buf, pos)
            length = hi << 16 | lo
            sid &= 0x7FFFFFFF
            if length > self.max_frame_size:
                raise FrameError(_FS, f"frame of {length} bytes exceeds {self.max_frame_size}")
            bad = check_frame(ftype, flags, sid, length)
            if bad is not None:
                raise FrameError(bad[0], bad[1], connection=bad[2])
            if end - pos - 9 < length:
                break
            out.append(Frame(ftype, flags, sid, bytes(buf[pos + 9 : pos + 9 + length])))
            pos += 9 + length
        del buf[:pos]
        return out

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf)
