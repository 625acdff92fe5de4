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


def test_h2_config_engine_is_fast_or_h2() -> None:
    assert H2Config(engine="h2").engine == "h2"
    assert H2Config(engine="fast").engine == "fast"
    with pytest.raises(ValueError, match="engine"):
        H2Config(engine="nghttp2")  # type: ignore[arg-type]


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ["fast", "h2"])
async def test_h2_config_engine_picks_the_connection_that_serves(engine: str) -> None:
    """The fast engine sends exactly our SETTINGS, in our order; h2 adds its own."""
    from rama_http._h2._frames import CONNECTION_PREFACE, parse_settings, settings_frame

    config = ServerConfig(h2=H2Config(engine=engine, max_concurrent_streams=7))  # type: ignore[arg-type]
    async with h2_server(hello, config) as port:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        async with stream:
            await stream.send(CONNECTION_PREFACE + settings_frame([]))
            buf = b""
            with anyio.fail_after(5):
                while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
                    buf += await stream.receive()
            assert buf[3] == 4  # SETTINGS first
            pairs = parse_settings(buf[9 : 9 + int.from_bytes(buf[:3], "big")])
    ours = [(3, 7), (4, 1024 * 1024), (5, 16384), (6, 64 * 1024), (8, 1)]
    if engine == "fast":
        assert pairs == ours
    else:
        assert pairs != ours
        assert set(ours) <= set(pairs)
