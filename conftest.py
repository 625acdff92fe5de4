"""Shared pytest fixtures for every package's tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import settings

# CI runs the property tests with a fixed seed: a submission's verdict must not depend on
# which random examples one run drew. Developers' runs stay random and keep finding new
# counterexamples (each one found becomes a regression test).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

BACKENDS = [
    pytest.param("asyncio", id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    pytest.param("trio", id="trio"),
]


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> str | tuple[str, dict[str, Any]]:
    """Run every ``@pytest.mark.anyio`` test on asyncio, asyncio with uvloop, and trio.

    uvloop's transports are not asyncio's classes: rama's Protocol-backed
    streams must work on both, so both run.
    """
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def require_peer() -> Callable[[str], str]:
    """Return the path of a peer program; fail (never skip) when it is missing.

    CI installs the peers with tools/install-peers.sh; a missing one is a
    broken machine, not a reason to pass.
    """

    def find(name: str) -> str:
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
        if path is None:
            pytest.fail(f"required peer {name!r} is not installed (run tools/install-peers.sh)")
        return path

    return find


@pytest.fixture(params=["h2", "fast"])
def h2_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test once per h2 server engine: every ``H2Config()`` built during it
    (``ServerConfig()``'s included) defaults to that engine.

    Used by the h2 server suites (``pytestmark = pytest.mark.usefixtures("h2_engine")``)
    so both engines pass the same tests.
    """
    from rama_http._h2._config import H2Config

    init: Any = H2Config.__init__
    defaults = init.__defaults__
    names = init.__code__.co_varnames[1 : init.__code__.co_argcount]
    index = names.index("engine") - (len(names) - len(defaults))
    patched = (*defaults[:index], request.param, *defaults[index + 1 :])
    monkeypatch.setattr(init, "__defaults__", patched)
    return request.param  # type: ignore[no-any-return]
