"""Packages are independent distributions: they build, install alone; the umbrella re-exports."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["core", "net", "tls", "http", "proxy", "ua", "fp", "cli"]
LATER_THAN_NET = {
    "rama-tls",
    "rama-http",
    "rama-proxy",
    "rama-ua",
    "rama-fp",
    "rama-cli",
    "rama",
    # third-party deps that only rama-tls and later need
    "cryptography",
    "h11",
    "h2",
    "wsproto",
    "aioquic",
    "httpx",
}


def _run(*args: str | Path, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, check=False, cwd=cwd
    )
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    dirs = [ROOT / "packages" / f"rama-{p}" for p in PACKAGES] + [ROOT / "packages/rama"]
    _run(
        sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
        "-w", out, *dirs,
    )  # fmt: skip
    return {w.name.split("-")[0].replace("_", "-"): w for w in out.glob("*.whl")}


def test_every_package_builds_a_typed_wheel_with_only_its_code(wheels: dict[str, Path]) -> None:
    assert set(wheels) == {f"rama-{p}" for p in PACKAGES} | {"rama"}
    for dist, wheel in wheels.items():
        import_name = dist.replace("-", "_")
        names = zipfile.ZipFile(wheel).namelist()
        tops = {n.split("/")[0] for n in names if ".dist-info/" not in n}
        assert tops == {import_name}, (dist, tops)
        assert f"{import_name}/py.typed" in names, dist
        assert f"{import_name}/__init__.py" in names, dist


@pytest.mark.slow
def test_core_and_net_install_alone(wheels: dict[str, Path], tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    py = venv / "bin" / "python"
    _run(
        sys.executable, "-m", "pip", "--python", py, "install", "-q",
        "--disable-pip-version-check", wheels["rama-core"], wheels["rama-net"],
    )  # fmt: skip
    probe = (
        "import json, importlib.metadata as md, importlib.util as u\n"
        "import rama_core, rama_net\n"
        "print(json.dumps({'dists': sorted(d.metadata['Name'].lower() for d in md.distributions()),"
        " 'http': u.find_spec('rama_http') is not None,"
        " 'tls': u.find_spec('rama_tls') is not None,"
        " 'core_file': rama_core.__file__}))\n"
    )
    info = json.loads(_run(py, "-c", probe, cwd=tmp_path))
    dists = set(info["dists"])
    assert {"rama-core", "rama-net", "anyio", "dnspython", "opentelemetry-api"} <= dists
    assert not dists & LATER_THAN_NET, dists & LATER_THAN_NET
    assert not info["http"]
    assert not info["tls"]
    # the import came from the fresh venv, not from the editable dev install
    assert info["core_file"].startswith(str(venv))


def test_umbrella_reexports_every_package() -> None:
    import rama

    for pkg in PACKAGES:
        sub = getattr(rama, pkg)
        real = importlib.import_module(f"rama_{pkg}")
        assert sub is importlib.import_module(f"rama.{pkg}")
        assert list(sub.__all__) == list(real.__all__)
        for name in real.__all__:
            assert getattr(sub, name) is getattr(real, name), (pkg, name)
    import rama_core

    assert rama.core.Context is rama_core.Context
    assert rama.core.Shutdown is rama_core.Shutdown
    with pytest.raises(AttributeError):
        _ = rama.nothing_here  # type: ignore[attr-defined]
