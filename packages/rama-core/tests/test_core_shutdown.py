from __future__ import annotations

import logging
import os
import signal
import time

import anyio
import pytest
import trio.testing

from rama_core import Context, Executor, NoTaskGroupError, Shutdown


def autojump() -> pytest.MarkDecorator:
    """Run on trio with a fresh autojump clock: sleeps and grace periods take no real time.

    Only for tests without real I/O (the clock would jump past a kernel wait);
    the shutdown logic is anyio code, the same on every backend.
    """
    clock = trio.testing.MockClock(autojump_threshold=0)
    return pytest.mark.parametrize(
        "anyio_backend", [pytest.param(("trio", {"clock": clock}), id="trio-autojump")]
    )


@pytest.mark.anyio
@autojump()
async def test_idle_shutdown_when_all_guarded_work_finishes() -> None:
    finished: list[str] = []

    async def job(name: str, delay: float) -> None:
        await anyio.sleep(delay)
        finished.append(name)

    async with Shutdown(signals=None) as sd:
        sd.spawn(job, "a", 0.02)
        sd.executor.spawn(job, "b", 0.01)
    assert sorted(finished) == ["a", "b"]
    assert sd.report is not None
    assert sd.report.reason == "idle"
    assert sd.report.clean


@pytest.mark.anyio
@autojump()
async def test_trigger_lets_inflight_work_finish_within_deadline() -> None:
    finished: list[str] = []

    async def server(sd: Shutdown) -> None:
        # an accept loop: runs until shutdown, then stops taking work
        while not sd.is_triggered:
            sd.executor.spawn(request, name="request")
            await anyio.sleep(0.01)

    async def request() -> None:
        await anyio.sleep(0.1)
        finished.append("request")

    async def trigger_soon(sd: Shutdown) -> None:
        await anyio.sleep(0.05)
        sd.trigger()

    started = anyio.current_time()
    async with Shutdown(grace=5, signals=None) as sd:
        sd.spawn(server, sd)
        sd.executor.spawn(trigger_soon, sd, guarded=False)
    assert sd.report is not None
    assert sd.report.reason == "trigger"
    assert sd.report.clean
    assert finished  # requests in flight at trigger time completed
    assert sd.in_flight == ()
    assert anyio.current_time() - started < 2


@pytest.mark.anyio
@autojump()
async def test_deadline_cancels_and_reports_stragglers(caplog: pytest.LogCaptureFixture) -> None:
    cancelled: list[str] = []

    async def straggler() -> None:
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            cancelled.append("straggler")
            raise

    async def quick() -> None:
        await anyio.sleep(0.01)

    with caplog.at_level(logging.WARNING, logger="rama.core.shutdown"):
        with anyio.fail_after(5):
            async with Shutdown(grace=0.1, signals=None) as sd:
                sd.executor.spawn(straggler, name="straggler")
                sd.executor.spawn(quick, name="quick")
                sd.trigger()
    assert sd.report is not None
    assert sd.report.cancelled == ("straggler",)
    assert not sd.report.clean
    assert 0.09 <= sd.report.drain_seconds < 2
    assert cancelled == ["straggler"]
    assert "cancelling straggler" in caplog.text


@pytest.mark.anyio
async def test_trigger_before_enter_and_wait_triggered() -> None:
    sd = Shutdown(signals=None)
    sd.trigger("early")
    sd.trigger("ignored: idempotent")
    async with sd:
        await sd.wait_triggered()
    assert sd.reason == "early"
    assert sd.report is not None
    assert sd.report.reason == "early"


@pytest.mark.anyio
async def test_signal_triggers_graceful_shutdown() -> None:
    done: list[str] = []

    async def worker(sd: Shutdown) -> None:
        await sd.wait_triggered()
        await anyio.sleep(0.02)  # finish up after the signal
        done.append("worker")

    with anyio.fail_after(5):
        async with Shutdown(signals=(signal.SIGTERM,)) as sd:
            sd.spawn(worker, sd)
            os.kill(os.getpid(), signal.SIGTERM)
    assert sd.report is not None
    assert sd.report.reason == "SIGTERM"
    assert sd.outcome == "SIGTERM"
    assert not sd.report.forced
    assert done == ["worker"]


@pytest.mark.anyio
async def test_second_signal_cancels_immediately() -> None:
    async def stubborn(sd: Shutdown) -> None:
        await anyio.sleep(30)

    started = time.monotonic()
    with anyio.fail_after(5):
        async with Shutdown(grace=30, signals=(signal.SIGTERM,)) as sd:
            sd.spawn(stubborn, sd)
            os.kill(os.getpid(), signal.SIGTERM)
            await anyio.sleep(0.05)
            os.kill(os.getpid(), signal.SIGTERM)
    assert time.monotonic() - started < 3
    assert sd.report is not None
    assert sd.report.forced
    assert sd.report.reason == "SIGTERM"
    assert sd.outcome == "forced"
    assert not sd.report.clean


@pytest.mark.anyio
async def test_second_signal_during_the_body_cancels_everything() -> None:
    started = time.monotonic()
    with anyio.fail_after(5):
        async with Shutdown(grace=30, signals=(signal.SIGTERM,)) as sd:
            os.kill(os.getpid(), signal.SIGTERM)
            await anyio.sleep(0.05)
            os.kill(os.getpid(), signal.SIGTERM)
            await anyio.sleep(30)  # the body itself is cancelled
    assert time.monotonic() - started < 3
    assert sd.outcome == "forced"


@pytest.mark.anyio
@autojump()
async def test_main_task_error_propagates_and_cancels_the_rest() -> None:
    cancelled: list[str] = []

    async def failing() -> None:
        await anyio.sleep(0.01)
        raise OSError("address in use")

    async def other() -> None:
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            cancelled.append("other")
            raise

    with anyio.fail_after(5):
        with pytest.raises(ExceptionGroup) as err:
            async with Shutdown(signals=None) as sd:
                sd.spawn(failing)
                sd.spawn(other)
    assert err.group_contains(OSError, match="address in use")
    assert cancelled == ["other"]


@pytest.mark.anyio
async def test_body_error_triggers_and_propagates() -> None:
    with pytest.raises(KeyError):
        async with Shutdown(signals=None) as sd:
            raise KeyError("boom")
    assert sd.reason == "error"


@pytest.mark.anyio
@autojump()
async def test_executor_task_errors_are_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []

    async def bad() -> None:
        raise RuntimeError("connection broke")

    async def good() -> None:
        await anyio.sleep(0.02)
        ran.append("good")

    with caplog.at_level(logging.ERROR, logger="rama.core.executor"):
        async with Shutdown(signals=None) as sd:
            ctx = sd.context(state="app")
            assert ctx.state == "app"
            ctx.executor.spawn(bad, name="bad-conn")
            ctx.executor.spawn(good)
    assert ran == ["good"]
    assert "task bad-conn failed" in caplog.text
    assert "connection broke" in caplog.text


@pytest.mark.anyio
async def test_guards_track_inflight_work() -> None:
    async with Shutdown(signals=None) as sd:
        ex = sd.executor
        with ex.guard("manual") as g:
            assert sd.in_flight == ("manual",)
            assert not g.released  # type: ignore[attr-defined]
        assert sd.in_flight == ()
        g2 = sd.guard("explicit")
        g2.release()
        g2.release()  # idempotent
        assert sd.in_flight == ()
        assert not ex.is_shutting_down
        sd.trigger()
        assert ex.is_shutting_down
        await ex.wait_shutdown()


@pytest.mark.anyio
async def test_executor_without_task_group() -> None:
    ex = Executor()
    assert not ex.is_shutting_down
    assert ex.shutdown is None
    with ex.guard():  # a no-op without a shutdown
        pass
    with pytest.raises(NoTaskGroupError):
        ex.spawn(anyio.sleep, 0)
    with anyio.move_on_after(0.02) as scope:
        await ex.wait_shutdown()  # never triggers without a shutdown
    assert scope.cancelled_caught
    assert Context().executor.shutdown is None


@pytest.mark.anyio
async def test_executor_with_task_group_spawns_unguarded_scope() -> None:
    ran: list[int] = []

    async def job(i: int) -> None:
        ran.append(i)

    async with anyio.create_task_group() as tg:
        ex = Executor().with_task_group(tg)
        for i in range(3):
            ex.spawn(job, i)
    assert sorted(ran) == [0, 1, 2]


def test_shutdown_not_running_errors() -> None:
    sd = Shutdown()
    with pytest.raises(RuntimeError, match="not running"):
        _ = sd.executor
    with pytest.raises(RuntimeError, match="not running"):
        sd.spawn(anyio.sleep, 0)


@pytest.mark.anyio
async def test_on_trigger_callbacks_run_once_and_unregister() -> None:
    calls: list[str] = []
    async with Shutdown(grace=1.0, signals=()) as shutdown:
        with shutdown.on_trigger(lambda: calls.append("inside")):
            pass
        with (
            shutdown.on_trigger(lambda: calls.append("a")),
            shutdown.on_trigger(
                lambda: 1 / 0  # a failing callback is logged; the others still run
            ),
        ):
            shutdown.trigger("test")
            shutdown.trigger("again")
        with shutdown.on_trigger(lambda: calls.append("late")):
            pass
    assert calls == ["a", "late"]  # "inside" left its block before the trigger
