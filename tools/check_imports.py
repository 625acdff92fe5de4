"""Enforce rama's one-way package graph.

core <- net <- tls <- http <- proxy, ua <- fp <- cli <- rama (umbrella).

Every ``import rama_x`` / ``from rama_x ...`` in a package's ``src`` must name
a package that is allowed below it, and must be declared in that package's
``pyproject.toml`` dependencies (so a lone ``pip install`` of it works).
Exit status 1 with one line per violation; 0 when the graph is clean.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ALLOWED", "Violation", "check", "main"]

# Direct edges of the graph; allowed imports are their transitive closure.
_EDGES: dict[str, tuple[str, ...]] = {
    "rama_core": (),
    "rama_net": ("rama_core",),
    "rama_tls": ("rama_net",),
    "rama_http": ("rama_tls",),
    "rama_proxy": ("rama_http",),
    "rama_ua": ("rama_http",),
    "rama_fp": ("rama_ua", "rama_proxy"),
    "rama_cli": ("rama_fp",),
    "rama": ("rama_cli",),
}


def _closure(pkg: str) -> frozenset[str]:
    seen: set[str] = set()
    todo = list(_EDGES[pkg])
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo.extend(_EDGES[dep])
    return frozenset(seen)


ALLOWED: dict[str, frozenset[str]] = {pkg: _closure(pkg) for pkg in _EDGES}
"""For each import package, the rama packages it may import."""


@dataclass(frozen=True)
class Violation:
    """One import that breaks the graph or is not declared as a dependency."""

    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def _imported_roots(tree: ast.AST) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name.split(".")[0], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], node.lineno))
    return found


def _declared(pyproject: Path) -> set[str]:
    data = tomllib.loads(pyproject.read_text())
    deps: list[str] = data.get("project", {}).get("dependencies", [])
    names = {re.split(r"[\s<>=!~;\[]", d, maxsplit=1)[0] for d in deps}
    return {n.lower().replace("-", "_") for n in names}


def check(root: Path) -> list[Violation]:
    """Check every package under ``root/packages``; return the violations."""
    violations: list[Violation] = []
    for pkg_dir in sorted((root / "packages").iterdir()):
        src = pkg_dir / "src"
        if not src.is_dir():
            continue
        for mod_dir in sorted(p for p in src.iterdir() if p.is_dir()):
            owner = mod_dir.name
            if owner not in ALLOWED:
                violations.append(Violation(mod_dir, 0, f"unknown package {owner!r}"))
                continue
            declared = _declared(pkg_dir / "pyproject.toml")
            for path in sorted(mod_dir.rglob("*.py")):
                tree = ast.parse(path.read_text(), str(path))
                for name, line in _imported_roots(tree):
                    if name == owner or name not in ALLOWED:
                        continue
                    rel = path.relative_to(root)
                    if name not in ALLOWED[owner]:
                        violations.append(
                            Violation(
                                rel, line, f"{owner} must not import {name} (upward/sideways)"
                            )
                        )
                    elif name not in declared:
                        violations.append(
                            Violation(rel, line, f"{owner} imports {name} but does not declare it")
                        )
    return violations


def main(argv: list[str] | None = None) -> int:
    """CLI entry: ``python tools/check_imports.py [ROOT]``."""
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else Path(__file__).resolve().parent.parent
    violations = check(root)
    for v in violations:
        print(v)
    return 1 if violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
