"""Fairness: one h2 connection flooding cheap frames does not hold the event loop.

The server is the real one (``rama_http.server.serve``: rama's TcpListener and
its Protocol-backed streams, which return buffered bytes without waiting). The
flood is the cheapest input the flood accounting lets through: 1-byte DATA
frames to a handler that reads them (each one delivers a byte, so it is
progress). Another client on its own connection must still get its answers
within a bound while the flood runs.
"""

from __future__ import annotations

import statistics
import time

import anyio
import hpack
import httpx
import pytest
from hyperframe.frame import DataFrame, Frame, HeadersFrame, SettingsFrame

from rama_core import Context, service_fn
from rama_http import Request, Response
from rama_http._h2._record import CONNECTION_PREFACE
from rama_http.server import serve
from rama_net import TcpListener

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("h2_engine")]

_FRAMES = 300_000  # 1-byte DATA frames (3 MB on the wire), within the 1 MiB stream window x 3


async def _handler(ctx: Context, req: Request) -> Response:
    if req.path == "/sink":
        n = 0
        async for chunk in req.body:
            n += len(chunk)
        return Response.from_text(f"{n}\n")
    return Response.from_text("hello\n")


async def _flood(port: int, started: anyio.Event, answered: anyio.Event) -> None:
    """Open three uploads to /sink, flood them with 1-byte DATA, end them, await the answers."""
    stream = await anyio.connect_tcp("127.0.0.1", port)
    enc = hpack.Encoder()
    block = enc.encode(
        [(":method", "POST"), (":scheme", "http"), (":authority", "t"), (":path", "/sink")]
    )
    out = bytearray(CONNECTION_PREFACE + bytes(SettingsFrame(0).serialize()))
    # Three streams, so the flood stays inside each stream's 1 MiB window unacknowledged.
    for sid in (1, 3, 5):
        head = HeadersFrame(sid, block)
        head.flags.add("END_HEADERS")
        out += head.serialize()
    await stream.send(bytes(out))
    batch = b"".join(bytes(DataFrame(sid, b"x").serialize()) for sid in (1, 3, 5)) * 3000
    last = b""
    for sid in (1, 3, 5):
        end = DataFrame(sid, b"")
        end.flags.add("END_STREAM")
        last += end.serialize()
    started.set()
    async with anyio.create_task_group() as tg:

        async def answers() -> None:
            # The server answers each /sink once it has read the whole upload.
            ended: set[int] = set()
            buf = b""
            while len(ended) < 3:
                buf += await stream.receive()
                while len(buf) >= 9:
                    frame, length = Frame.parse_frame_header(memoryview(buf[:9]))
                    if len(buf) < 9 + length:
                        break
                    if "END_STREAM" in frame.flags:
                        ended.add(frame.stream_id)
                    buf = buf[9 + length :]
            answered.set()

        tg.start_soon(answers)
        for _ in range(_FRAMES // 9000):
            await stream.send(batch)
        await stream.send(last)
    await stream.aclose()


async def test_a_flood_of_cheap_frames_does_not_starve_another_connection() -> None:
    listener = TcpListener.bind("127.0.0.1:0")
    port = listener.local_addr.port
    latencies: list[float] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve, listener, service_fn(_handler))
        async with httpx.AsyncClient(
            http1=False, http2=True, base_url=f"http://127.0.0.1:{port}"
        ) as client:
            assert (await client.get("/")).text == "hello\n"  # warm: connected, settled
            started, answered = anyio.Event(), anyio.Event()
            tg.start_soon(_flood, port, started, answered)
            await started.wait()
            with anyio.fail_after(60):
                while not answered.is_set():
                    start = time.perf_counter()
                    assert (await client.get("/")).text == "hello\n"
                    latencies.append(time.perf_counter() - start)
        tg.cancel_scope.cancel()
    assert len(latencies) >= 5, latencies
    # Each turn of the flooding connection is bounded (one read's worth of frames):
    # the other client waits for a few turns at most, not for the flood.
    assert statistics.median(latencies) < 0.25, latencies
