"""Every example in examples/ is exercised by a test there."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_example_is_run_by_a_test() -> None:
    examples = ROOT / "examples"
    tests = "\n".join(p.read_text() for p in examples.glob("test_*.py"))
    scripts = sorted(p for p in examples.glob("*.py") if not p.name.startswith("test_"))
    assert scripts, "no examples found"
    missing = [p.name for p in scripts if p.stem not in tests]
    assert not missing, f"examples no test mentions: {missing}"
