"""Shutdown precedence on h2, through the real server (rama's TcpListener and ``serve``).

Three timers bound an in-flight stream once shutdown starts: the ``Shutdown``'s
own grace (the overall cap), ``TcpServerConfig.drain_timeout`` (how long the
listener waits for its connections; None: up to the Shutdown's grace) and
``ServerConfig.shutdown_grace`` (how long an in-flight request or stream gets,
HTTP/1.1 and h2 alike). The effective bound is the smallest; a stream is given
all of it (the GOAWAY comes first), then cancelled.
"""

from __future__ import annotations

import functools
import inspect

import anyio
import h2.events
import pytest
from rama_http_h2_peer import RawH2

from rama_core import Context, Shutdown, service_fn
from rama_http import Request, Response
from rama_http.server import ServerConfig, serve
from rama_net import TcpListener, TcpServerConfig

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("h2_engine")]

# Shutdown's overall cap is named ``grace`` (formerly ``deadline``): accept either.
_CAP = "grace" if "grace" in inspect.signature(Shutdown).parameters else "deadline"


@pytest.mark.parametrize(
    ("shutdown_cap", "drain_timeout", "shutdown_grace"),
    [
        (10.0, None, 0.4),  # ServerConfig.shutdown_grace is the smallest
        (10.0, 0.4, 10.0),  # TcpServerConfig.drain_timeout is
        (0.4, None, 10.0),  # the Shutdown's own grace is (drain_timeout None: up to it)
    ],
    ids=["shutdown_grace", "drain_timeout", "Shutdown-grace"],
)
async def test_an_in_flight_h2_stream_gets_the_smallest_of_the_three_bounds(
    shutdown_cap: float, drain_timeout: float | None, shutdown_grace: float
) -> None:
    bound = min(shutdown_cap, drain_timeout or shutdown_cap, shutdown_grace)
    started = anyio.Event()
    cancelled_at: list[float] = []

    async def handler(ctx: Context, req: Request) -> Response:
        started.set()
        try:
            await anyio.sleep(30)
        finally:
            cancelled_at.append(anyio.current_time())
        return Response.from_text("never")

    listener = TcpListener.bind("127.0.0.1:0")
    port = listener.local_addr.port
    config = ServerConfig(shutdown_grace=shutdown_grace)
    tcp = TcpServerConfig(drain_timeout=drain_timeout)
    async with RawH2.connect(port) as c:  # the listener is bound: accepted once serving
        async with Shutdown(signals=None, **{_CAP: shutdown_cap}) as shutdown:
            shutdown.spawn(
                functools.partial(
                    serve,
                    listener,
                    service_fn(handler),
                    config,
                    ctx=shutdown.context(),
                    tcp_config=tcp,
                )
            )
            sid = await c.request("/stuck")
            with anyio.fail_after(5):
                await started.wait()
            triggered = anyio.current_time()
            shutdown.trigger()
        # Leaving the block drains the Shutdown (its own grace is the overall cap).
        assert cancelled_at
        waited = cancelled_at[0] - triggered
        await c.until(lambda: c.goaway() is not None)  # told at shutdown: no new streams
        assert not c.of(sid, h2.events.StreamEnded)  # never answered: cancelled
    assert bound - 0.05 <= waited < bound + 1.0
