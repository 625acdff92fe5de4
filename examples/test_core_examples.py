"""Run the rama-core examples as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def test_core_service_stack_example() -> None:
    proc = subprocess.run(
        [sys.executable, str(HERE / "core_service_stack.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = proc.stdout.splitlines()
    assert "' Apple' -> shop: apple costs 3" in lines
    assert "'pear' -> shop: pear costs 4" in lines
    assert "'kiwi' -> error: KeyError 'kiwi'" in lines
    assert "'health' -> ok" in lines
    assert "'slow' -> error: ServiceTimeout service timed out after 0.5s" in lines
    assert lines[-1] == "shutdown: reason=idle clean=True"
