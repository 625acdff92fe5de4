"""Shared pytest fixtures for every package's tests."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every ``@pytest.mark.anyio`` test on both asyncio and trio."""
    return str(request.param)


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
