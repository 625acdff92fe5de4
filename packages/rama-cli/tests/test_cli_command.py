"""The installed `rama` console script runs."""

import shutil
import subprocess
import sys
from pathlib import Path

from rama_cli.__main__ import main


def test_console_script_reports_installed_packages() -> None:
    script = shutil.which("rama", path=str(Path(sys.executable).parent))
    assert script is not None
    out = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
    assert "rama-core 0.1.0" in out.stdout
    assert "rama-cli 0.1.0" in out.stdout


def test_unavailable_server_fails_clearly() -> None:
    assert main(["serve", "echo"]) == 2
