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
        for path in LIBRARY.glob("*.py")
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}
