"""A client that closes inside a request head is a peer's fault: no ERROR, no traceback."""

from __future__ import annotations

import logging

import anyio
import pytest

from rama_core import Context, service_fn
from rama_http import Request, Response
from rama_http.server import serve
from rama_net import TcpListener


@pytest.mark.anyio
async def test_peer_closing_inside_the_head_is_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @service_fn
    async def ok(ctx: Context, req: Request) -> Response:
        return Response(200, body=b"ok")

    listener = TcpListener.bind("127.0.0.1:0")
    with caplog.at_level(logging.DEBUG):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: serve(listener, ok))
            for _ in range(3):
                s = await anyio.connect_tcp("127.0.0.1", listener.local_addr.port)
                await s.send(b"GET http://x/ HTTP/1.1\r\nHost:")
                await anyio.sleep(0.05)
                await s.aclose()
            await anyio.sleep(0.3)
            tg.cancel_scope.cancel()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
