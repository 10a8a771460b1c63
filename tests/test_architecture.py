"""The layout's rules hold (.importlinter): imports run web → services → models → infra and
wechat, never back; no blueprint imports another; no module imports the package's __init__."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGE = ROOT / "wxauth"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--config", str(root / ".importlinter")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_contracts_are_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def lint_with_added_import(tmp_path, module: str, line: str) -> subprocess.CompletedProcess:
    """lint-imports on a copy of the package where `module` (a path in wxauth/) gained
    `line`."""
    shutil.copytree(PACKAGE, tmp_path / "wxauth", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path)
    changed = tmp_path / "wxauth" / module
    changed.write_text(changed.read_text() + f"\n{line}  # noqa: E402,F401\n")
    return lint_imports(tmp_path)


def test_a_service_importing_from_web_breaks_the_contract(tmp_path):
    result = lint_with_added_import(tmp_path, "services/login.py", "from ..web import security")
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout
    assert "wxauth.services.login -> wxauth.web.security" in result.stdout


def test_a_blueprint_importing_another_breaks_the_contract(tmp_path):
    result = lint_with_added_import(tmp_path, "web/profile.py", "from .auth import blp as _")
    assert result.returncode != 0, result.stdout
    assert "wxauth.web.profile -> wxauth.web.auth" in result.stdout


def test_no_module_imports_names_from_the_package_init():
    """``from wxauth import x`` / ``from . import x`` inside the package may only name a
    module or subpackage, never something defined in wxauth/__init__.py."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        package_parts = path.relative_to(ROOT).with_suffix("").parts[:-1]
        if path.name == "__init__.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                target = (*base, *(node.module.split(".") if node.module else ()))
            else:
                target = tuple((node.module or "").split("."))
            if target != ("wxauth",):
                continue
            for alias in node.names:
                if not ((PACKAGE / f"{alias.name}.py").exists() or (PACKAGE / alias.name).is_dir()):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {alias.name}")
    assert offenders == []
