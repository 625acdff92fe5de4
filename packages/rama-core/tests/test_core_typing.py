"""The public API type-checks the way users write it (see typed_usage.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


@pytest.mark.slow
def test_typed_usage_passes_mypy_strict(tmp_path: Path) -> None:
    """Layers keep the wrapped service's types; stacks of such layers too."""
    stdout, stderr, status = mypy_api.run(
        [
            "--config-file",
            str(ROOT / "mypy.ini"),
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            str(HERE / "typed_usage.py"),
        ]
    )
    assert status == 0, stdout + stderr


def test_typed_usage_is_checked_by_make_lint() -> None:
    files = next(
        line for line in (ROOT / "mypy.ini").read_text().splitlines() if line.startswith("files")
    )
    entries = {entry.strip() for entry in files.split("=", 1)[1].split(",")}
    assert "packages/rama-core/tests/typed_usage.py" in entries
    assert "examples" in entries
