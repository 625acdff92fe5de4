"""Top-level configuration stays consistent."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _requirements() -> list[str]:
    lines = (ROOT / "tools/requirements-dev.txt").read_text().splitlines()
    reqs = (ln.split("#", 1)[0].strip() for ln in lines)
    return [r for r in reqs if r]


def test_hatch_default_env_mirrors_requirements_and_packages() -> None:
    hatch = tomllib.loads((ROOT / "hatch.toml").read_text())
    deps = hatch["envs"]["default"]["dependencies"]
    tools = [d for d in deps if "@" not in d]
    assert sorted(tools) == sorted(_requirements())
    local = {d.split(" @ ")[0] for d in deps if "@" in d}
    assert local == {
        p.name for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").exists()
    }


def test_every_package_has_the_required_layout() -> None:
    for pkg in sorted((ROOT / "packages").iterdir()):
        data = tomllib.loads((pkg / "pyproject.toml").read_text())
        import_name = pkg.name.replace("-", "_")
        assert data["build-system"]["build-backend"] == "hatchling.build"
        assert data["project"]["name"] == pkg.name
        assert data["project"]["version"]
        assert (pkg / "README.md").is_file()
        assert (pkg / "src" / import_name / "py.typed").is_file()
        assert (pkg / "src" / import_name / "__init__.py").is_file()
        assert (pkg / "tests").is_dir()
