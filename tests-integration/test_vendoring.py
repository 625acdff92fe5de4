"""rama-core and rama-net work vendored: copied source trees plus their third-party deps.

The packages are meant to be vendored one at a time. This copies
``src/rama_core`` and ``src/rama_net`` into a temporary directory, makes a
venv holding only the third-party dependencies their pyprojects declare (no
rama distribution at all), and runs a TCP echo through the copies over
127.0.0.1. The README's "Vendoring a package" section describes the same steps.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
VENDORED = {"rama-core": "rama_core", "rama-net": "rama_net"}

ECHO = textwrap.dedent(
    """
    import importlib.metadata as md
    import importlib.util
    import json
    import sys

    sys.path.insert(0, sys.argv[1])  # the vendor directory

    import anyio
    from anyio.abc import ByteStream

    import rama_core
    import rama_net
    from rama_core import Context, service_fn
    from rama_net import TcpListener, connect_tcp


    @service_fn
    async def echo(ctx: Context, stream: ByteStream) -> None:
        async for chunk in stream:
            await stream.send(chunk)
        await stream.send_eof()


    async def main() -> dict[str, object]:
        listener = TcpListener.bind("127.0.0.1:0")
        chunks = [b"hello ", b"vendored ", b"rama" * 4096]
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, echo)
            stream = await connect_tcp(f"127.0.0.1:{listener.local_addr.port}")
            for chunk in chunks:
                await stream.send(chunk)
            await stream.send_eof()
            received = b"".join([chunk async for chunk in stream])
            await stream.aclose()
            listener.close()
        return {
            "echoed": received == b"".join(chunks),
            "bytes": len(received),
            "core_file": rama_core.__file__,
            "net_file": rama_net.__file__,
            "dists": sorted(d.metadata["Name"].lower() for d in md.distributions()),
            "tls_importable": importlib.util.find_spec("rama_tls") is not None,
        }


    print(json.dumps(anyio.run(main)))
    """
)


def _third_party_requirements() -> list[str]:
    """What the vendored packages' pyprojects require, minus rama siblings."""
    reqs: list[str] = []
    for dist in VENDORED:
        project = tomllib.loads((ROOT / "packages" / dist / "pyproject.toml").read_text())
        for spec in project["project"]["dependencies"]:
            if not Requirement(spec).name.startswith("rama"):
                reqs.append(spec)
    return sorted(set(reqs))


def _run(*args: str | Path, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, check=False, cwd=cwd, timeout=300
    )
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_readme_vendoring_section_installs_what_the_pyprojects_declare() -> None:
    names = {Requirement(r).name for r in _third_party_requirements()}
    assert {"anyio", "opentelemetry-api", "dnspython", "idna"} <= names
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Vendoring a package", 1)[1].split("\n### ", 1)[0]
    for spec in _third_party_requirements():
        assert f'"{spec}"' in section, spec
    for import_name in VENDORED.values():
        assert f"src/{import_name}" in section, import_name


@pytest.mark.slow
def test_tcp_echo_through_vendored_core_and_net(tmp_path: Path) -> None:
    vendor = tmp_path / "vendor"
    for dist, import_name in VENDORED.items():
        shutil.copytree(
            ROOT / "packages" / dist / "src" / import_name,
            vendor / import_name,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    py = venv / "bin" / "python"
    _run(
        sys.executable, "-m", "pip", "--python", py, "install", "-q",
        "--disable-pip-version-check", *_third_party_requirements(),
    )  # fmt: skip
    script = tmp_path / "echo.py"
    script.write_text(ECHO)
    # -I: ignore PYTHONPATH and user site-packages, so only the venv and the
    # vendor directory can provide modules; run from tmp_path, not the repo.
    info = json.loads(_run(py, "-I", script, vendor, cwd=tmp_path))
    assert info["echoed"], info
    assert info["bytes"] == len(b"hello vendored ") + 4 * 4096
    assert info["core_file"] == str(vendor / "rama_core" / "__init__.py")
    assert info["net_file"] == str(vendor / "rama_net" / "__init__.py")
    dists = set(info["dists"])
    assert not {d for d in dists if d.startswith("rama")}, dists
    assert {"anyio", "opentelemetry-api", "dnspython", "idna"} <= dists
    assert not info["tls_importable"]
