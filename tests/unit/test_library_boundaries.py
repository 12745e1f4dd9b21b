"""The library stays importable and testable without Airflow; DAG files only wire tasks."""

from __future__ import annotations

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[2] / "include" / "ct"


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_library_never_imports_airflow() -> None:
    offenders = {
        path.name: sorted(m for m in imported_modules(path) if m.split(".")[0] == "airflow")
        for path in LIBRARY.rglob("*.py")
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}


OWN_PACKAGES = ("include", "ct_airflow", "bench", "testbed", "tests")


def test_no_module_imports_another_modules_private_name() -> None:
    """A shared helper is public in the module that owns it (or moves to a module of its own)."""
    root = LIBRARY.parents[1]
    folders = ("include", "plugins", "dags", "bench", "testbed", "tests")
    offenders = []
    for path in (p for folder in folders for p in (root / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.module or node.level:
                continue
            if node.module.split(".")[0] not in OWN_PACKAGES:
                continue
            private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            if private:
                offenders.append(f"{path.relative_to(root)}: from {node.module} import {', '.join(private)}")
    assert offenders == []
