"""Helpers for the sans-IO h2 engine tests: raw frames in, parsed frames out."""

from __future__ import annotations

import hpack

from rama_http._h2._engine import H2Engine
from rama_http._h2._events import Event
from rama_http._h2._frames import (
    CONNECTION_PREFACE,
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    Frame,
    FrameReader,
    frame,
    settings_frame,
)

GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"/")]
OK = [(b":status", b"200")]


def client_preface(settings: list[tuple[int, int]] | None = None) -> bytes:
    """What a client opens with: the magic and a SETTINGS frame."""
    return CONNECTION_PREFACE + settings_frame(settings or [])


def block(headers: list[tuple[bytes, bytes]], encoder: hpack.Encoder | None = None) -> bytes:
    """A header block (the hpack library as an independent encoder)."""
    return (encoder or hpack.Encoder()).encode(headers)


def headers_frame(
    sid: int,
    headers: list[tuple[bytes, bytes]] | bytes,
    *,
    end_stream: bool = True,
    end_headers: bool = True,
    encoder: hpack.Encoder | None = None,
) -> bytes:
    """A HEADERS frame with a hpack-encoded block (or a raw block given as bytes)."""
    payload = headers if isinstance(headers, bytes) else block(headers, encoder)
    flags = (FLAG_END_STREAM if end_stream else 0) | (FLAG_END_HEADERS if end_headers else 0)
    return frame(1, flags, sid, payload)


def server(**kw: object) -> H2Engine:
    """A server engine past its own preface, with the client preface already fed."""
    eng = H2Engine(client=False, **kw)  # type: ignore[arg-type]
    eng.initiate_connection()
    eng.data_to_send()
    eng.receive_data(client_preface())
    eng.data_to_send()
    return eng


def client(**kw: object) -> H2Engine:
    """A client engine that sent its preface and got the server's SETTINGS."""
    eng = H2Engine(client=True, **kw)  # type: ignore[arg-type]
    eng.initiate_connection()
    eng.data_to_send()
    eng.receive_data(settings_frame([]))
    eng.data_to_send()
    return eng


def out_frames(eng: H2Engine) -> list[Frame]:
    """The frames the engine queued since the last call."""
    return FrameReader(max_frame_size=(1 << 24) - 1).feed(eng.data_to_send())


def outcome(eng: H2Engine) -> tuple[str, int] | None:
    """("goaway", code) or ("rst", code) of the first error frame queued, else None."""
    for f in out_frames(eng):
        if f.type == 7:
            return "goaway", int.from_bytes(f.payload[4:8], "big")
        if f.type == 3:
            return "rst", int.from_bytes(f.payload[:4], "big")
    return None


def feed(eng: H2Engine, data: bytes, chunks: list[int] | None = None) -> list[Event]:
    """Feed ``data`` whole or cut into pieces of the given sizes (the rest last)."""
    events: list[Event] = []
    pos = 0
    for size in chunks or []:
        events += eng.receive_data(data[pos : pos + size])
        pos += size
    events += eng.receive_data(data[pos:])
    return events
