"""Build and check every package's distributions as they would be published.

Usage::

    python tools/release.py [--outdir DIR] [--package rama-core ...]
    hatch run release:check

For every package under ``packages/`` this builds an sdist and then a wheel
from that sdist (``python -m build --no-isolation``: hatchling comes from the
dev tools), runs ``twine check --strict`` on them, and checks:

- the version in ``pyproject.toml`` equals the package's ``__version__``;
- each dependency on a sibling package admits the sibling's current version;
- each wheel carries ``py.typed``, its README as the long description, and a
  license file, and holds only its import package and ``.dist-info`` (no
  tests, no stray top-level modules);
- each sdist carries its pyproject, README, license and ``py.typed`` (the
  wheel is built from it, so a missing source file fails the build). Sdists
  also ship the package's tests, as sdists usually do.

It then prints what would be uploaded. It never uploads: publishing is
``twine upload`` on the printed files, by hand.

Exit status: 0 when every check passes, 1 otherwise (each problem printed).
"""

from __future__ import annotations

import argparse
import ast
import email.parser
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

__all__ = [
    "Package",
    "build",
    "check_sdist",
    "check_versions",
    "check_wheel",
    "discover",
    "main",
    "twine_check",
]

ROOT = Path(__file__).resolve().parents[1]
LICENSE_NAMES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "COPYING")


@dataclass(frozen=True)
class Package:
    """One package directory under ``packages/``, as its pyproject describes it."""

    path: Path
    name: str
    version: str
    import_name: str
    requires: tuple[str, ...] = field(default=())

    @property
    def dist_stem(self) -> str:
        """The distribution name as it appears in built file names (``rama_core``)."""
        return canonicalize_name(self.name).replace("-", "_")


def discover(packages_dir: Path = ROOT / "packages") -> list[Package]:
    """Every package under ``packages_dir`` (a directory with a ``pyproject.toml``)."""
    found = []
    for path in sorted(packages_dir.iterdir()):
        pyproject = path / "pyproject.toml"
        if not pyproject.is_file():
            continue
        project = tomllib.loads(pyproject.read_text())["project"]
        found.append(
            Package(
                path=path,
                name=project["name"],
                version=project["version"],
                import_name=project["name"].replace("-", "_"),
                requires=tuple(project.get("dependencies", ())),
            )
        )
    return found


def _module_version(pkg: Package) -> str | None:
    init = pkg.path / "src" / pkg.import_name / "__init__.py"
    if not init.is_file():
        return None
    for node in ast.parse(init.read_text()).body:
        if not isinstance(node, ast.Assign):
            continue
        names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        value = node.value
        if "__version__" in names and isinstance(value, ast.Constant):
            return str(value.value)
    return None


def check_versions(packages: list[Package]) -> list[str]:
    """Problems with versions: ``__version__`` drift and sibling ranges that miss."""
    problems = []
    versions = {canonicalize_name(p.name): Version(p.version) for p in packages}
    for pkg in packages:
        module_version = _module_version(pkg)
        if module_version is None:
            problems.append(f"{pkg.name}: no __version__ in src/{pkg.import_name}/__init__.py")
        elif module_version != pkg.version:
            problems.append(
                f"{pkg.name}: pyproject version {pkg.version} but __version__ = {module_version}"
            )
        for spec in pkg.requires:
            req = Requirement(spec)
            sibling = canonicalize_name(req.name)
            if sibling not in versions:
                continue
            if not req.specifier.contains(versions[sibling], prereleases=True):
                problems.append(
                    f"{pkg.name}: requires {spec!r}, which excludes {req.name}'s "
                    f"current version {versions[sibling]}"
                )
    return problems


def build(pkg: Package, outdir: Path) -> tuple[Path, Path]:
    """Build the sdist, then the wheel from it; return ``(sdist, wheel)``."""
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(outdir), str(pkg.path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"building {pkg.name} failed:\n{proc.stdout}\n{proc.stderr}")
    sdist = outdir / f"{pkg.dist_stem}-{pkg.version}.tar.gz"
    wheel = outdir / f"{pkg.dist_stem}-{pkg.version}-py3-none-any.whl"
    for made in (sdist, wheel):
        if not made.is_file():
            raise RuntimeError(f"building {pkg.name} did not produce {made.name}")
    return sdist, wheel


def _is_test_path(name: str) -> bool:
    parts = name.split("/")
    leaf = parts[-1]
    return (
        any(p in ("tests", "test", "testing") for p in parts[:-1])
        or leaf == "conftest.py"
        or (leaf.startswith("test_") and leaf.endswith(".py"))
        or leaf.endswith("_test.py")
    )


def check_wheel(pkg: Package, wheel: Path) -> list[str]:
    """Problems with one built wheel's contents and metadata."""
    problems = []
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        dist_info = f"{pkg.dist_stem}-{pkg.version}.dist-info"
        metadata_text = zf.read(f"{dist_info}/METADATA").decode()
    if f"{pkg.import_name}/py.typed" not in names:
        problems.append(f"{wheel.name}: no {pkg.import_name}/py.typed")
    tops = {n.split("/")[0] for n in names}
    stray = tops - {pkg.import_name, dist_info}
    if stray:
        problems.append(f"{wheel.name}: unexpected top-level entries {sorted(stray)}")
    tests = [n for n in names if _is_test_path(n)]
    if tests:
        problems.append(f"{wheel.name}: ships test files {tests[:5]}")
    licenses = [n for n in names if n.startswith(f"{dist_info}/licenses/")]
    if not licenses:
        problems.append(f"{wheel.name}: no license file under {dist_info}/licenses/")
    metadata = email.parser.Parser().parsestr(metadata_text)
    if not (metadata.get("License-Expression") or metadata.get("License")):
        problems.append(f"{wheel.name}: no License-Expression in METADATA")
    readme = (pkg.path / "README.md").read_text()
    body = metadata.get_payload()
    if metadata.get("Description-Content-Type") != "text/markdown":
        problems.append(f"{wheel.name}: long description is not declared text/markdown")
    if not isinstance(body, str) or body.strip() != readme.strip():
        problems.append(f"{wheel.name}: long description is not README.md")
    return problems


def check_sdist(pkg: Package, sdist: Path) -> list[str]:
    """Problems with one sdist: it must carry what a rebuild from it needs."""
    with tarfile.open(sdist) as tf:
        names = set(tf.getnames())
    root = f"{pkg.dist_stem}-{pkg.version}"
    required = ["pyproject.toml", "README.md", "PKG-INFO", f"src/{pkg.import_name}/py.typed"]
    problems = [f"{sdist.name}: no {name}" for name in required if f"{root}/{name}" not in names]
    if not any(f"{root}/{name}" in names for name in LICENSE_NAMES):
        problems.append(f"{sdist.name}: no license file")
    return problems


def twine_check(files: list[Path]) -> list[str]:
    """``twine check --strict`` over ``files``; its output when it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode == 0:
        return []
    return [f"twine check failed:\n{proc.stdout}{proc.stderr}"]


def main(argv: list[str] | None = None) -> int:
    """Build, check, and print what would be uploaded."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outdir", type=Path, help="where to put the files (default: a temp dir)")
    parser.add_argument(
        "--package", action="append", default=[], help="only this package (repeatable)"
    )
    args = parser.parse_args(argv)

    packages = discover()
    problems = check_versions(packages)
    if args.package:
        wanted = {canonicalize_name(n) for n in args.package}
        unknown = wanted - {canonicalize_name(p.name) for p in packages}
        if unknown:
            parser.error(f"unknown package(s): {', '.join(sorted(unknown))}")
        packages = [p for p in packages if canonicalize_name(p.name) in wanted]

    with tempfile.TemporaryDirectory(prefix="rama-release-") as tmp:
        outdir = args.outdir or Path(tmp)
        outdir.mkdir(parents=True, exist_ok=True)
        built: list[Path] = []
        for pkg in packages:
            try:
                sdist, wheel = build(pkg, outdir)
            except RuntimeError as exc:
                problems.append(str(exc))
                continue
            problems.extend(check_sdist(pkg, sdist))
            problems.extend(check_wheel(pkg, wheel))
            built += [sdist, wheel]
        if built:
            problems.extend(twine_check(built))

        print("Would upload (nothing is uploaded):")
        for path in built:
            print(f"  {path.name:<48} {path.stat().st_size:>9,} bytes")
        if args.outdir is None:
            print("(built in a temporary directory; pass --outdir to keep the files)")
        else:
            print(f"  with: twine upload {outdir}/*")

    if problems:
        print(f"\n{len(problems)} problem(s):", file=sys.stderr)
        for problem in problems:
            print(f"- {problem}", file=sys.stderr)
        return 1
    print(f"\nall checks passed for {len(packages)} package(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
