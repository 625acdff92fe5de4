"""Shared by the h2 server tests: a loopback h2 server and a raw client on the ``h2`` library.

Test modules import it by name (``pythonpath`` in pytest.ini lists this folder).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import h2.config
import h2.connection
import h2.events
import h2.settings
from anyio.abc import ByteStream, SocketAttribute
from hyperframe.frame import Frame

from rama_core import Context, Shutdown, service_fn
from rama_http import Request, Response
from rama_http.server._config import ServerConfig
from rama_http.server._h2 import H2Connection
from rama_net import wrap_socket

__all__ = ["Handler", "RawH2", "h2_server", "hello", "read_frames", "shrink_buffers"]

Handler = Callable[[Context, Request], Any]


@asynccontextmanager
async def h2_server(
    handler: Handler,
    config: ServerConfig | None = None,
    shutdown: Shutdown | None = None,
    *,
    conns: list[H2Connection] | None = None,
    sock_buf: int | None = None,
) -> AsyncIterator[int]:
    """Serve h2 (prior knowledge) on an ephemeral loopback port.

    Accepted sockets are wrapped as rama's listeners wrap them
    (:func:`rama_net.wrap_socket`: on asyncio a Protocol-backed stream whose
    read-ahead stops at a high-water mark), so backpressure tests see what a
    deployed server does. ``shutdown`` ties connections to a graceful shutdown;
    ``conns`` collects the server connections; ``sock_buf`` shrinks the kernel
    buffers of accepted sockets so backpressure shows after a few KiB.
    """
    svc = service_fn(handler)

    async def serve(sock: socket.socket) -> None:
        if sock_buf is not None:
            _shrink(sock, sock_buf)
        stream = await wrap_socket(sock)
        ctx = shutdown.context() if shutdown is not None else Context()
        conn = H2Connection(ctx, stream, svc, config)
        if conns is not None:
            conns.append(conn)
        await conn.run()

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(128)
        listening.setblocking(False)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_accept_loop, listening, serve, tg)
            try:
                yield listening.getsockname()[1]
            finally:
                tg.cancel_scope.cancel()


async def _accept_loop(
    listening: socket.socket,
    serve: Callable[[socket.socket], Awaitable[None]],
    tg: anyio.abc.TaskGroup,
) -> None:
    while True:
        await anyio.wait_readable(listening)
        try:
            sock, _ = listening.accept()
        except BlockingIOError:
            continue
        tg.start_soon(serve, sock)


def _shrink(sock: socket.socket, size: int) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def shrink_buffers(stream: ByteStream, size: int) -> None:
    _shrink(stream.extra(SocketAttribute.raw_socket), size)


class RawH2:
    """A test client on the h2 library: full control over frames and timing."""

    def __init__(self, stream: ByteStream, conn: h2.connection.H2Connection) -> None:
        self.stream = stream
        self.conn = conn
        self.events: list[h2.events.Event] = []
        self.closed = False

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        port: int,
        *,
        settings: dict[int, int] | None = None,
        window: int = 0,
        sock_buf: int | None = None,
    ) -> AsyncIterator[RawH2]:
        """Connect, send the preface (with ``settings``) and an optional window increment."""
        stream = await anyio.connect_tcp("127.0.0.1", port)
        if sock_buf is not None:
            shrink_buffers(stream, sock_buf)
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        if settings:
            conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        conn.initiate_connection()
        if window:
            conn.increment_flow_control_window(window)
        client = cls(stream, conn)
        await client.flush()
        try:
            yield client
        finally:
            await stream.aclose()

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            await self.stream.send(data)

    async def pump(self) -> None:
        """Read once and process what arrived."""
        try:
            data = await self.stream.receive(65536)
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            self.closed = True
            return
        self.events.extend(self.conn.receive_data(data))
        await self.flush()

    async def until(self, cond: Callable[[], bool], timeout: float = 5.0) -> None:
        with anyio.fail_after(timeout):
            while not cond():
                if self.closed:
                    raise AssertionError(f"connection closed; events: {self.events}")
                await self.pump()

    async def until_closed(self, timeout: float = 5.0) -> None:
        with anyio.fail_after(timeout):
            while not self.closed:
                await self.pump()

    async def request(
        self,
        path: str = "/",
        method: str = "GET",
        *,
        body: bytes | None = None,
        extra: list[tuple[str, str]] | None = None,
        end: bool = True,
    ) -> int:
        sid = self.conn.get_next_available_stream_id()
        headers = [(":method", method), (":scheme", "http"), (":authority", "t"), (":path", path)]
        self.conn.send_headers(sid, headers + (extra or []), end_stream=end and body is None)
        if body is not None:
            size = self.conn.max_outbound_frame_size
            for i in range(0, max(len(body), 1), size):
                last = i + size >= len(body)
                self.conn.send_data(sid, body[i : i + size], end_stream=end and last)
        await self.flush()
        return sid

    def of(self, sid: int, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind) and e.stream_id == sid]

    def ended(self, sid: int) -> bool:
        return bool(self.of(sid, h2.events.StreamEnded) or self.of(sid, h2.events.StreamReset))

    def reset_code(self, sid: int) -> int | None:
        resets = self.of(sid, h2.events.StreamReset)
        return int(resets[0].error_code) if resets else None

    def body(self, sid: int) -> bytes:
        return b"".join(e.data for e in self.of(sid, h2.events.DataReceived))

    def status(self, sid: int) -> int:
        (resp,) = self.of(sid, h2.events.ResponseReceived)
        return int(dict(resp.headers)[b":status"])

    def goaway(self) -> h2.events.ConnectionTerminated | None:
        found = [e for e in self.events if isinstance(e, h2.events.ConnectionTerminated)]
        return found[0] if found else None

    def ack_all(self) -> None:
        """Give back the flow-control window of every DATA frame received so far."""
        for e in self.events:
            if isinstance(e, h2.events.DataReceived) and not getattr(e, "_acked", False):
                e._acked = True  # type: ignore[attr-defined]
                self.conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)


async def hello(ctx: Context, req: Request) -> Response:
    """Answers ``hello``."""
    return Response.from_text("hello\n")


async def read_frames(stream: ByteStream, until: Callable[[list[Any]], bool]) -> list[Any]:
    """Parse the server's frames with hyperframe until ``until(frames)``.

    ``"EOF"`` is appended once the server closed. Raw parsing, because h2's own
    client refuses frames after a GOAWAY and hides what a misbehaving server sent.
    """
    frames: list[Any] = []
    buf = b""
    with anyio.fail_after(5):
        while not until(frames):
            try:
                buf += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                frames.append("EOF")
                break
            while len(buf) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(buf[:9]))
                if len(buf) < 9 + length:
                    break
                frame.parse_body(memoryview(buf[9 : 9 + length]))
                frames.append(frame)
                buf = buf[9 + length :]
    return frames
