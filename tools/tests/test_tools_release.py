"""tools/release.py builds every package as published and catches broken ones."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_release() -> ModuleType:
    spec = importlib.util.spec_from_file_location("release", ROOT / "tools/release.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["release"] = module
    spec.loader.exec_module(module)
    return module


release = load_release()


def make_package(
    root: Path,
    name: str,
    *,
    version: str = "0.1.0",
    module_version: str | None = None,
    deps: tuple[str, ...] = (),
    license_file: bool = True,
    typed: bool = True,
    test_in_package: bool = False,
) -> Path:
    """A minimal hatchling package like the ones under packages/."""
    import_name = name.replace("-", "_")
    pkg = root / name
    src = pkg / "src" / import_name
    src.mkdir(parents=True)
    dep_list = ", ".join(f'"{d}"' for d in deps)
    (pkg / "pyproject.toml").write_text(
        "[build-system]\n"
        'requires = ["hatchling>=1.18"]\n'
        'build-backend = "hatchling.build"\n\n'
        "[project]\n"
        f'name = "{name}"\n'
        f'version = "{version}"\n'
        'description = "test package"\n'
        'readme = "README.md"\n'
        'requires-python = ">=3.11"\n'
        'license = "MIT"\n'
        f"dependencies = [{dep_list}]\n\n"
        "[tool.hatch.build.targets.wheel]\n"
        f'packages = ["src/{import_name}"]\n'
    )
    (pkg / "README.md").write_text(f"# {name}\n\nA package for the release checks.\n")
    if license_file:
        shutil.copy(ROOT / "packages/rama-core/LICENSE", pkg / "LICENSE")
    (src / "__init__.py").write_text(f'__version__ = "{module_version or version}"\n')
    if typed:
        (src / "py.typed").write_text("")
    if test_in_package:
        (src / "tests").mkdir()
        (src / "tests" / "test_it.py").write_text("def test_it() -> None: ...\n")
    return pkg


def test_every_real_package_has_a_license_file() -> None:
    for pkg in release.discover():
        assert (pkg.path / "LICENSE").is_file(), pkg.name
        assert "MIT License" in (pkg.path / "LICENSE").read_text()


def test_release_tools_are_in_both_dev_lists() -> None:
    # CI installs tools/requirements-dev.txt; hatch uses hatch.toml: both need them
    reqs = (ROOT / "tools/requirements-dev.txt").read_text().splitlines()
    hatch = tomllib.loads((ROOT / "hatch.toml").read_text())
    deps = hatch["envs"]["default"]["dependencies"]
    for tool in ("build", "twine"):
        assert any(line.split(">=")[0].strip() == tool for line in reqs), tool
        assert any(dep.split(">=")[0].strip() == tool for dep in deps), tool
    assert hatch["envs"]["release"]["scripts"]["check"].startswith("python tools/release.py")


def test_versions_and_sibling_ranges_agree_in_the_repo() -> None:
    assert release.check_versions(release.discover()) == []


def test_sibling_range_that_excludes_the_current_version_is_reported(tmp_path: Path) -> None:
    make_package(tmp_path, "rama-core", version="0.2.0")
    make_package(tmp_path, "rama-net", deps=("rama-core>=0.1,<0.2", "anyio>=4"))
    make_package(tmp_path, "rama-tls", version="0.1.1", module_version="0.1.0")
    problems = release.check_versions(release.discover(tmp_path))
    assert len(problems) == 2, problems
    assert "rama-net: requires 'rama-core>=0.1,<0.2'" in problems[0]
    assert "0.2.0" in problems[0]
    assert "rama-tls: pyproject version 0.1.1 but __version__ = 0.1.0" in problems[1]


def test_a_good_wheel_passes_and_a_broken_one_is_reported(tmp_path: Path) -> None:
    make_package(tmp_path, "good-pkg")
    make_package(tmp_path / "bad", "bad-pkg", license_file=False, typed=False, test_in_package=True)
    good = release.discover(tmp_path)[0]
    bad = release.discover(tmp_path / "bad")[0]
    out = tmp_path / "dist"
    sdist, wheel = release.build(good, out)
    assert release.check_sdist(good, sdist) == []
    assert release.check_wheel(good, wheel) == []
    assert release.twine_check([sdist, wheel]) == []
    bad_sdist, bad_wheel = release.build(bad, out)
    sdist_problems = release.check_sdist(bad, bad_sdist)
    assert sdist_problems == [
        "bad_pkg-0.1.0.tar.gz: no src/bad_pkg/py.typed",
        "bad_pkg-0.1.0.tar.gz: no license file",
    ]
    problems = "\n".join(release.check_wheel(bad, bad_wheel))
    assert "no bad_pkg/py.typed" in problems
    assert "ships test files ['bad_pkg/tests/test_it.py']" in problems
    assert "no license file" in problems


@pytest.mark.slow
def test_release_script_builds_and_checks_every_package(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools/release.py"), "--outdir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Would upload (nothing is uploaded):" in proc.stdout
    for pkg in release.discover():
        stem = pkg.dist_stem
        assert (tmp_path / f"{stem}-{pkg.version}.tar.gz").is_file()
        assert (tmp_path / f"{stem}-{pkg.version}-py3-none-any.whl").is_file()
        assert f"{stem}-{pkg.version}-py3-none-any.whl" in proc.stdout
