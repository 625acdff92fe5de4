"""The h2 client against hostile raw-socket h2 servers (real sockets, the engine's server role).

SETTINGS, PING and other floods (a typed error and GOAWAY(ENHANCE_YOUR_CALM)), a server
that never opens its window (WriteTimeout), RST_STREAM (a typed
error for that request only), GOAWAY mid-way (the refused request is retried on a new
connection), a connection error (every stream fails, the pool drops the connection), and no
connection leaks after errors and cancellation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest
from anyio.abc import SocketStream
from rama_http_client_peer import RawServer

from rama_http import RemoteProtocolError
from rama_http._h2._engine import H2Engine
from rama_http._h2._events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    RequestReceived,
    StreamReset,
)
from rama_http._h2._frames import frame, ping_frame, settings_frame, window_update_frame
from rama_http.client import (
    H2ClientLimits,
    H2ClientSettings,
    H2FloodError,
    HttpClient,
    ReadError,
    ReadTimeout,
    StreamResetError,
    Timeout,
    WriteTimeout,
)

pytestmark = pytest.mark.anyio

OnEvent = Callable[[H2Engine, Event, SocketStream], Awaitable[bool]]
"""Handle one event; return False to stop serving the connection."""


def h2_server(
    on_event: OnEvent,
    *,
    settings: list[tuple[int, int]] | None = None,
    first: bytes = b"",
) -> Callable[[SocketStream, int], Awaitable[None]]:
    async def handler(stream: SocketStream, n: int) -> None:
        engine = H2Engine(client=False, settings=settings or [(3, 100)])
        engine.initiate_connection()
        await stream.send(engine.data_to_send() + first)
        while True:
            try:
                data = await stream.receive()
            except anyio.EndOfStream:
                return
            events = engine.receive_data(data)
            out = engine.data_to_send()
            if out:
                await stream.send(out)
            for ev in events:
                if not await on_event(engine, ev, stream):
                    out = engine.data_to_send()
                    if out:
                        await stream.send(out)
                    return
            out = engine.data_to_send()
            if out:
                await stream.send(out)

    return handler


def answer(engine: H2Engine, sid: int, body: bytes = b"ok") -> None:
    engine.send_headers(sid, [(b":status", b"200"), (b"content-length", str(len(body)).encode())])
    engine.send_data(sid, body, end_stream=True)


async def ok_server(engine: H2Engine, ev: Event, stream: SocketStream) -> bool:
    if isinstance(ev, RequestReceived) and ev.end_stream:
        answer(engine, ev.stream_id)
    return True


def plain_client(**kw: object) -> HttpClient:
    return HttpClient(http2_prior_knowledge=True, **kw)  # type: ignore[arg-type]


async def test_settings_flood_ends_in_a_typed_error() -> None:
    flood = settings_frame([(3, 100), (4, 65535)]) * 5000
    server = RawServer(h2_server(ok_server, first=flood))
    async with server.run(), plain_client() as client:
        with anyio.fail_after(5), pytest.raises(H2FloodError) as info:
            await client.get(f"http://127.0.0.1:{server.port}/")
        assert info.value.what == "SETTINGS frames"
        assert isinstance(info.value, RemoteProtocolError)
        assert client.pool_stats().total == 0  # the connection is gone


async def test_settings_flood_is_survived_without_that_allowance() -> None:
    flood = settings_frame([(3, 100), (4, 65535)]) * 5000
    server = RawServer(h2_server(ok_server, first=flood))
    limits = H2ClientLimits(max_settings=None)
    async with server.run(), plain_client(h2_limits=limits) as client:
        with anyio.fail_after(10):
            r = await client.get(f"http://127.0.0.1:{server.port}/")
            assert await r.read() == b"ok"
        assert client.pool_stats().active == 0


@pytest.mark.parametrize(
    ("flood", "what"),
    [
        (ping_frame(b"12345678") * 2000, "PING frames"),
        (ping_frame(b"12345678", ack=True) * 2000, "PING ACK frames nobody asked for"),
        (window_update_frame(0, 1) * 2000, "WINDOW_UPDATE frames for unused window"),
        (frame(0x42, 0, 0, b"x") * 2000, "unknown frames"),
    ],
    ids=["ping", "ping-ack", "window-update", "unknown"],
)
async def test_floods_end_in_a_typed_error_and_goaway(flood: bytes, what: str) -> None:
    """The client answers a flood with GOAWAY(ENHANCE_YOUR_CALM) and a typed error."""
    seen: list[int] = []

    async def watch(engine: H2Engine, ev: Event, stream: SocketStream) -> bool:
        if isinstance(ev, ConnectionTerminated):
            seen.append(ev.error_code)
            return False
        return await ok_server(engine, ev, stream)

    server = RawServer(h2_server(watch, first=flood))
    async with server.run(), plain_client(timeout=Timeout(3)) as client:
        with anyio.fail_after(5), pytest.raises(H2FloodError) as info:
            await client.get(f"http://127.0.0.1:{server.port}/")
        assert info.value.what == what
        with anyio.fail_after(5):
            while not seen:
                await anyio.sleep(0.01)
        assert seen == [11]  # ENHANCE_YOUR_CALM
        assert client.pool_stats().total == 0


async def test_ping_within_the_allowance_is_answered() -> None:
    """Some PINGs are fine: each is answered and the request succeeds."""
    server = RawServer(h2_server(ok_server, first=ping_frame(b"abcdefgh") * 50))
    async with server.run(), plain_client() as client:
        with anyio.fail_after(5):
            r = await client.get(f"http://127.0.0.1:{server.port}/")
            assert await r.read() == b"ok"


async def test_window_trickle_of_empty_updates_is_a_flood_not_a_hang() -> None:
    """A server that never opens its window but keeps the client busy with +1 updates on an
    unused connection window ends in a typed error long before the write timeout."""

    async def hold(engine: H2Engine, ev: Event, stream: SocketStream) -> bool:
        if isinstance(ev, RequestReceived):
            await stream.send(window_update_frame(0, 1) * 1500)
        return True

    server = RawServer(h2_server(hold, settings=[(3, 100), (4, 0)]))
    async with server.run(), plain_client(timeout=Timeout(read=5, write=5)) as client:
        with anyio.fail_after(4), pytest.raises(H2FloodError):
            await client.post(f"http://127.0.0.1:{server.port}/", content=b"x" * 100_000)
        assert client.pool_stats().total == 0


async def test_window_never_opened_is_a_write_timeout() -> None:
    async def hold(engine: H2Engine, ev: Event, stream: SocketStream) -> bool:
        return True  # takes DATA up to its window, never gives any back

    server = RawServer(h2_server(hold, settings=[(3, 100), (4, 0)]))
    async with server.run(), plain_client(timeout=Timeout(read=5, write=0.5)) as client:
        with anyio.fail_after(10), pytest.raises(WriteTimeout):
            await client.post(f"http://127.0.0.1:{server.port}/", content=b"x" * 100_000)
        stats = client.pool_stats()
        assert stats.active == 0


async def test_rst_stream_fails_that_request_only() -> None:
    async def reset_first(engine: H2Engine, ev: Event, stream: SocketStream) -> bool:
        if isinstance(ev, RequestReceived):
            if ev.stream_id == 1:
                engine.reset_stream(1, 2)  # INTERNAL_ERROR
            else:
                answer(engine, ev.stream_id)
        return True

    server = RawServer(h2_server(reset_first))
    async with server.run(), plain_client() as client:
        with pytest.raises(StreamResetError) as info:
            await client.get(f"http://127.0.0.1:{server.port}/a")
        assert info.value.error_code == 2
        r = await client.get(f"http://127.0.0.1:{server.port}/b")
        assert await r.read() == b"ok"
        assert server.connections == 1  # the connection went on
        assert client.pool_stats().active == 0


async def test_goaway_midway_retries_on_a_new_connection() -> None:
    async def goaway_after_first(engine: H2Engine, ev: Event, stream: SocketStream) -> bool:
        if isinstance(ev, RequestReceived):
            if ev.stream_id == 1:
                answer(engine, 1, b"first")
            else:
                # a second stream arrived: refuse it (and all later) with GOAWAY
                engine.goaway(0, last_stream_id=1)
        return True

    async def fresh(engine: H2Engine, ev: Event, stream: SocketStream) -> bool:
        if isinstance(ev, RequestReceived):
            answer(engine, ev.stream_id, b"fresh")
        return True

    async def handler(stream: SocketStream, n: int) -> None:
        await h2_server(goaway_after_first if n == 0 else fresh)(stream, n)

    server = RawServer(handler)
    async with server.run(), plain_client() as client:
        base = f"http://127.0.0.1:{server.port}"
        r = await client.get(f"{base}/1")
        assert await r.read() == b"first"
        r = await client.get(f"{base}/2")  # refused by GOAWAY, retried once
        assert await r.read() == b"fresh"
        assert server.connections == 2
        r = await client.get(f"{base}/3")
        assert await r.read() == b"fresh"
        assert server.connections == 2
        stats = client.pool_stats()
        assert stats.total == 1, stats


async def test_goaway_not_retried_for_post_stream() -> None:
    async def goaway_all(engine: H2Engine, ev: Event, stream: SocketStream) -> bool:
        if isinstance(ev, (RequestReceived, DataReceived)):
            engine.goaway(0, last_stream_id=0)
        return True

    server = RawServer(h2_server(goaway_all))

    async def body() -> object:
        yield b"abc"

    async with server.run(), plain_client() as client:
        with pytest.raises(StreamResetError):
            await client.post(f"http://127.0.0.1:{server.port}/", content=body())  # type: ignore[arg-type]
        assert server.connections == 1
        assert client.pool_stats().total == 0


async def test_connection_error_fails_every_stream() -> None:
    async def handler(stream: SocketStream, n: int) -> None:
        seen: list[int] = []

        async def broken(engine: H2Engine, ev: Event, stream: SocketStream) -> bool:
            if isinstance(ev, RequestReceived):
                seen.append(ev.stream_id)
                if len(seen) == 1:
                    answer(engine, ev.stream_id)
                elif len(seen) == 4:
                    # DATA on stream 0 is a connection error (PROTOCOL_ERROR)
                    await stream.send(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")
            return True

        await h2_server(broken)(stream, n)

    server = RawServer(handler)
    errors: list[BaseException] = []

    async with server.run(), plain_client() as client:
        base = f"http://127.0.0.1:{server.port}"
        await (await client.get(f"{base}/warm")).read()

        async def one(i: int) -> None:
            try:
                await client.get(f"{base}/{i}")
            except (RemoteProtocolError, ReadError) as e:
                errors.append(e)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for i in range(3):
                    tg.start_soon(one, i)
        assert len(errors) == 3
        assert all(isinstance(e, RemoteProtocolError) for e in errors), errors
        stats = client.pool_stats()
        assert stats.total == 0, stats
        assert server.connections == 1
        # the next request opens a new connection
        r = await client.get(f"{base}/again")
        assert await r.read() == b"ok"
        assert server.connections == 2


async def test_no_leak_after_cancel_and_abandoned_bodies() -> None:
    reset_seen: list[int] = []

    async def slow(engine: H2Engine, ev: Event, stream: SocketStream) -> bool:
        if isinstance(ev, RequestReceived):
            if ev.headers and (b":path", b"/hang") in ev.headers:
                return True  # never answers
            engine.send_headers(ev.stream_id, [(b":status", b"200")])
            engine.send_data(ev.stream_id, b"x" * 60_000)  # and never ends the body
        elif isinstance(ev, StreamReset):
            reset_seen.append(ev.stream_id)
        return True

    server = RawServer(h2_server(slow))
    async with server.run(), plain_client(timeout=Timeout(read=0.3)) as client:
        base = f"http://127.0.0.1:{server.port}"
        with anyio.move_on_after(0.2):
            await client.get(f"{base}/hang")
        assert client.pool_stats().active == 0
        for _ in range(3):
            async with client.stream("GET", f"{base}/body") as r:
                async for _chunk in r.body:
                    break  # abandon the body: the stream is reset, the connection stays
        assert client.pool_stats().active == 0
        async with client.stream("GET", f"{base}/body") as r:
            with pytest.raises(ReadTimeout):  # the body stalls
                async for _chunk in r.body:
                    pass
        stats = client.pool_stats()
        assert stats.active == 0, stats
        assert server.connections == 1
    await anyio.sleep(0.05)
    assert reset_seen  # the abandoned streams were reset on the wire


async def test_answer_before_the_body_is_taken() -> None:
    async def early(engine: H2Engine, ev: Event, stream: SocketStream) -> bool:
        if isinstance(ev, RequestReceived):
            engine.send_headers(ev.stream_id, [(b":status", b"413")], end_stream=True)
        return True

    # a zero window: the body can never go; the 413 is the answer, not a WriteTimeout
    server = RawServer(h2_server(early, settings=[(3, 100), (4, 0)]))
    async with server.run(), plain_client(timeout=Timeout(write=3)) as client:
        with anyio.fail_after(2):
            r = await client.post(f"http://127.0.0.1:{server.port}/", content=b"x" * 200_000)
        assert r.status == 413
        with anyio.fail_after(2):
            r = await client.post(f"http://127.0.0.1:{server.port}/", content=b"y" * 10)
        assert r.status == 413
        assert server.connections == 1
        assert client.pool_stats().active == 0


async def test_unread_body_buffers_at_most_its_window() -> None:
    window = 65535
    received: list[int] = []

    async def big(engine: H2Engine, ev: Event, stream: SocketStream) -> bool:
        if isinstance(ev, RequestReceived):
            path = dict(ev.headers).get(b":path")
            if path == b"/big":
                engine.send_headers(ev.stream_id, [(b":status", b"200")])
                # as much as the windows allow now; more when the client gives credit
                n = engine.local_flow_control_window(ev.stream_id)
                engine.send_data(ev.stream_id, b"z" * n)
                received.append(n)
            else:
                answer(engine, ev.stream_id)
        return True

    # the connection window is larger: other streams go on while /big is unread
    cfg = H2ClientSettings(settings=((2, 0), (4, window)), initial_window_update=1 << 20)
    server = RawServer(h2_server(big))
    async with server.run(), plain_client(h2_settings=cfg) as client:
        base = f"http://127.0.0.1:{server.port}"
        async with client.stream("GET", f"{base}/big") as r:
            # other requests read the socket meanwhile; the unread body stays bounded
            for _ in range(5):
                assert await (await client.get(f"{base}/small")).read() == b"ok"
            conn = next(iter(client.pool._key_of))
            queued = sum(
                len(ev.data)
                for st in conn._streams.values()  # type: ignore[attr-defined]
                for ev in st.events
                if isinstance(ev, DataReceived)
            )
            assert 0 < queued <= window
            assert received == [window]
            async for _chunk in r.body:
                break


async def test_server_stream_limit_is_respected() -> None:
    refused: list[int] = []
    peak: list[int] = [0]

    async def limited(engine: H2Engine, ev: Event, stream: SocketStream) -> bool:
        from rama_http._h2._events import StreamRefused

        if isinstance(ev, StreamRefused):
            refused.append(ev.stream_id)
        elif isinstance(ev, RequestReceived):
            peak[0] = max(peak[0], engine.open_inbound_streams)
            answer(engine, ev.stream_id)
        return True

    server = RawServer(h2_server(limited, settings=[(3, 2)]))
    async with server.run(), plain_client() as client:
        base = f"http://127.0.0.1:{server.port}"
        got: list[bytes] = []

        async def one() -> None:
            got.append(await (await client.get(f"{base}/")).read())

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(one)
        assert got == [b"ok"] * 20
        assert not refused
        assert peak[0] <= 2
        assert client.pool_stats().active == 0


async def test_no_answer_is_a_read_timeout_and_the_connection_goes_on() -> None:
    async def first_silent(engine: H2Engine, ev: Event, stream: SocketStream) -> bool:
        if isinstance(ev, RequestReceived) and ev.stream_id != 1:
            answer(engine, ev.stream_id)
        return True

    server = RawServer(h2_server(first_silent))
    async with server.run(), plain_client(timeout=Timeout(read=0.3)) as client:
        base = f"http://127.0.0.1:{server.port}"
        with anyio.fail_after(5), pytest.raises(ReadTimeout):
            await client.get(f"{base}/silent")
        r = await client.get(f"{base}/next")
        assert await r.read() == b"ok"
        assert server.connections == 1
        assert client.pool_stats().active == 0
