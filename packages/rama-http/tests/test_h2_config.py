"""One h2 configuration: ``ServerConfig(h2=H2Config(...))``, exported where users look."""

from __future__ import annotations

import dataclasses

import anyio
import h2.events
import h2.settings
import pytest
from rama_http_h2_peer import RawH2, h2_server, hello

import rama_http
import rama_http.server
from rama_http import H2Config
from rama_http.server import ServerConfig

# Every test runs on both h2 server engines (the root conftest's h2_engine).
pytestmark = pytest.mark.usefixtures("h2_engine")


def test_h2_config_is_exported_and_is_the_only_h2_place() -> None:
    assert rama_http.H2Config is rama_http.server.H2Config is H2Config
    assert "H2Config" in rama_http.__all__
    assert "H2Config" in rama_http.server.__all__
    names = {f.name for f in dataclasses.fields(ServerConfig)}
    assert not [n for n in names if n.startswith("h2_")]
    assert isinstance(ServerConfig().h2, H2Config)
    assert ServerConfig().h2 == H2Config()
    assert not hasattr(H2Config, "from_server_config")


@pytest.mark.anyio
async def test_the_settings_announced_come_from_server_config_h2() -> None:
    config = ServerConfig(h2=H2Config(max_concurrent_streams=7, initial_window_size=12345))
    async with h2_server(hello, config) as port, RawH2.connect(port) as c:
        await c.until(lambda: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in c.events))
        (changed,) = [e for e in c.events if isinstance(e, h2.events.RemoteSettingsChanged)][:1]
        got = {int(k): v.new_value for k, v in changed.changed_settings.items()}
        assert got[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 7
        assert got[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] == 12345


@pytest.mark.anyio
async def test_the_http1_keep_alive_timeout_does_not_close_idle_h2_connections() -> None:
    """``ServerConfig.keep_alive_timeout`` is HTTP/1.1's; h2 idles by its own knob."""
    config = ServerConfig(keep_alive_timeout=0.1, h2=H2Config(keep_alive_timeout=None))
    async with h2_server(hello, config) as port, RawH2.connect(port) as c:
        sid = await c.request("/")
        await c.until(lambda: c.ended(sid))
        with anyio.move_on_after(0.5):
            while not c.closed:
                await c.pump()
        assert not c.closed
        assert c.goaway() is None
        again = await c.request("/")
        await c.until(lambda: c.ended(again))
        assert c.body(again) == b"hello\n"


def _autojump() -> object:
    import trio.testing

    return trio.testing.MockClock(autojump_threshold=0)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", [pytest.param(("trio", {"clock": _autojump()}))])
async def test_the_h2_idle_timeout_runs_on_the_event_loop_clock() -> None:
    """One clock (anyio.current_time): under trio's autojump clock 30 s pass at once."""
    import time

    config = ServerConfig(h2=H2Config(keep_alive_timeout=30.0))
    real = time.monotonic()
    async with h2_server(hello, config) as port, RawH2.connect(port) as c:
        sid = await c.request("/")
        await c.until(lambda: c.ended(sid))
        start = anyio.current_time()
        await c.until_closed(timeout=120)
        idle = anyio.current_time() - start
        assert c.goaway() is not None
    assert 29 <= idle <= 35
    assert time.monotonic() - real < 10
