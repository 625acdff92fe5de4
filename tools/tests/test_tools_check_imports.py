"""The import-direction check runs over the real tree and catches planted violations."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_imports", ROOT / "tools/check_imports.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_imports"] = module
    spec.loader.exec_module(module)
    return module


def test_repository_graph_is_clean() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools/check_imports.py"), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_allowed_graph_shape() -> None:
    allowed = load_checker().ALLOWED
    assert allowed["rama_core"] == frozenset()
    assert allowed["rama_net"] == {"rama_core"}
    assert allowed["rama_http"] == {"rama_core", "rama_net", "rama_tls"}
    assert "rama_proxy" not in allowed["rama_ua"]
    assert "rama_ua" not in allowed["rama_proxy"]
    assert {"rama_ua", "rama_proxy"} <= allowed["rama_fp"]
    assert "rama_cli" in allowed["rama"]


def _copy_tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(
        ROOT / "packages",
        root / "packages",
        ignore=shutil.ignore_patterns("tests", "__pycache__", "*.egg-info"),
    )
    return root


def test_detects_upward_import(tmp_path: Path) -> None:
    root = _copy_tree(tmp_path)
    bad = root / "packages/rama-net/src/rama_net/_planted.py"
    bad.write_text("import os\nfrom rama_http import Request\n")
    violations = load_checker().check(root)
    assert [(str(v.path), v.line) for v in violations] == [
        ("packages/rama-net/src/rama_net/_planted.py", 2)
    ]
    assert "must not import rama_http" in violations[0].message


def test_detects_sideways_import(tmp_path: Path) -> None:
    root = _copy_tree(tmp_path)
    (root / "packages/rama-ua/src/rama_ua/_planted.py").write_text("import rama_proxy.x\n")
    violations = load_checker().check(root)
    assert len(violations) == 1
    assert "rama_ua must not import rama_proxy" in violations[0].message


def test_detects_undeclared_dependency(tmp_path: Path) -> None:
    root = _copy_tree(tmp_path)
    pyproject = root / "packages/rama-tls/pyproject.toml"
    text = pyproject.read_text().replace('    "rama-core>=0.1,<0.2",\n', "")
    pyproject.write_text(text)
    (root / "packages/rama-tls/src/rama_tls/_planted.py").write_text("import rama_core\n")
    violations = load_checker().check(root)
    assert any("does not declare it" in v.message for v in violations)
