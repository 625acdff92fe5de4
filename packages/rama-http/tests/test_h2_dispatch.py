"""h2 stream dispatch: handlers run inline in the reader until they suspend.

A handler that completes without waiting costs no task; one that waits keeps
the task it started in, with everything it entered before (cancel scopes, task
groups, context variables), and is still cancelled when its stream is reset or
the connection goes away. Both engines, all three event loops.
"""

from __future__ import annotations

import contextvars

import anyio
import pytest
from h2.errors import ErrorCodes
from rama_http_h2_peer import RawH2, h2_server

from rama_core import Context
from rama_http import Request, Response

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("h2_engine")]

_var: contextvars.ContextVar[str] = contextvars.ContextVar("_var", default="unset")


async def test_many_inline_handlers_in_one_read_all_answered_in_order() -> None:
    tasks: set[object] = set()

    async def handler(ctx: Context, req: Request) -> Response:
        tasks.add(anyio.get_current_task().id)
        return Response.from_text(req.path)

    async with h2_server(handler) as port, RawH2.connect(port) as c:
        sids = []
        for i in range(50):
            sid = c.conn.get_next_available_stream_id()
            c.conn.send_headers(
                sid,
                [(":method", "GET"), (":scheme", "http"), (":authority", "t"), (":path", f"/{i}")],
                end_stream=True,
            )
            sids.append(sid)
        await c.flush()  # one write: the server reads them together
        await c.until(lambda: all(c.ended(s) for s in sids))
        assert [c.body(s) for s in sids] == [f"/{i}".encode() for i in range(50)]
        assert all(c.status(s) == 200 for s in sids)
    # No task per stream: handlers that never wait ran in the reading task(s).
    assert len(tasks) < 10


async def test_handler_entering_a_cancel_scope_before_it_waits() -> None:
    async def handler(ctx: Context, req: Request) -> Response:
        with anyio.fail_after(5):  # entered inline, left in the task that finishes it
            with anyio.CancelScope():
                await anyio.sleep(0.01)
            async with anyio.create_task_group() as tg:
                tg.start_soon(anyio.sleep, 0.01)
        return Response.from_text("waited\n")

    async with h2_server(handler) as port, RawH2.connect(port) as c:
        sids = [await c.request(f"/{i}") for i in range(5)]
        await c.until(lambda: all(c.ended(s) for s in sids))
        assert all(c.body(s) == b"waited\n" for s in sids)


async def test_handler_timing_out_in_its_own_scope_after_waiting() -> None:
    async def handler(ctx: Context, req: Request) -> Response:
        with anyio.move_on_after(0.02) as scope:
            await anyio.sleep(10)
        return Response.from_text(f"{scope.cancelled_caught}\n")

    async with h2_server(handler) as port, RawH2.connect(port) as c:
        sid = await c.request("/")
        await c.until(lambda: c.ended(sid))
        assert c.body(sid) == b"True\n"


async def test_context_variables_do_not_leak_between_inline_handlers() -> None:
    seen: list[str] = []

    async def handler(ctx: Context, req: Request) -> Response:
        seen.append(_var.get())
        _var.set(req.path)
        if req.path == "/wait":
            await anyio.sleep(0.01)
            seen.append(_var.get())
        return Response.from_text("ok\n")

    async with h2_server(handler) as port, RawH2.connect(port) as c:
        sids = [await c.request(p) for p in ("/a", "/wait", "/b", "/c")]
        await c.until(lambda: all(c.ended(s) for s in sids))
    assert seen.count("unset") == 4
    assert "/wait" in seen  # a waiting handler keeps its own context across the wait


async def test_reset_cancels_a_handler_that_suspended() -> None:
    started = anyio.Event()
    cancelled = anyio.Event()

    async def handler(ctx: Context, req: Request) -> Response:
        if req.path == "/slow":
            started.set()
            try:
                await anyio.sleep(10)
            except anyio.get_cancelled_exc_class():
                cancelled.set()
                raise
        return Response.from_text("fast\n")

    async with h2_server(handler) as port, RawH2.connect(port) as c:
        slow = await c.request("/slow")
        with anyio.fail_after(5):
            await started.wait()
        c.conn.reset_stream(slow, ErrorCodes.CANCEL)
        await c.flush()
        with anyio.fail_after(5):
            await cancelled.wait()
        # The connection goes on: reading moved to another task when the handler waited.
        fast = await c.request("/fast")
        await c.until(lambda: c.ended(fast))
        assert c.body(fast) == b"fast\n"


async def test_stream_reset_in_the_same_read_never_runs_its_handler() -> None:
    ran: list[str] = []

    async def handler(ctx: Context, req: Request) -> Response:
        ran.append(req.path)
        return Response.from_text("x\n")

    async with h2_server(handler) as port, RawH2.connect(port) as c:
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(
            sid, [(":method", "POST"), (":scheme", "http"), (":authority", "t"), (":path", "/r")]
        )
        c.conn.reset_stream(sid, ErrorCodes.CANCEL)
        await c.flush()
        after = await c.request("/after")
        await c.until(lambda: c.ended(after))
    assert ran == ["/after"]


async def test_interleaved_waiting_and_inline_handlers_on_one_connection() -> None:
    async def handler(ctx: Context, req: Request) -> Response:
        n = int(req.path[1:])
        if n % 3 == 0:
            await anyio.sleep(0.005 * (n % 5))
        if n % 4 == 0:
            data = await req.read()
            return Response.from_bytes(data)
        return Response.from_text(f"{n}")

    async with h2_server(handler) as port, RawH2.connect(port) as c:
        sids = {}
        for n in range(40):
            body = b"b%d" % n if n % 4 == 0 else None
            sids[n] = await c.request(f"/{n}", method="POST" if body else "GET", body=body)
        await c.until(lambda: all(c.ended(s) for s in sids.values()), timeout=10)
        for n, sid in sids.items():
            assert c.body(sid) == (b"b%d" % n if n % 4 == 0 else str(n).encode())


async def test_handler_exception_before_any_wait_gets_500() -> None:
    async def handler(ctx: Context, req: Request) -> Response:
        if req.path == "/boom":
            raise RuntimeError("secret internals")
        return Response.from_text("ok\n")

    async with h2_server(handler) as port, RawH2.connect(port) as c:
        boom = await c.request("/boom")
        ok = await c.request("/ok")
        await c.until(lambda: c.ended(boom) and c.ended(ok))
        assert c.status(boom) == 500
        assert b"secret" not in c.body(boom)
        assert c.body(ok) == b"ok\n"
