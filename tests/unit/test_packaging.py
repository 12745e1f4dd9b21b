"""The library is installable: a wheel of include.ct with its bundled configs, working from
site-packages without the repository on the path."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from testbed.services import REPO_ROOT


def test_the_library_builds_as_a_wheel_and_runs_from_where_it_is_installed(tmp_path: Path) -> None:
    source = tmp_path / "source"  # built from a copy: the build writes beside its sources
    shutil.copytree(REPO_ROOT / "include", source / "include", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    [wheel] = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"include/ct/config.py", "include/pipelines/churn.yaml"} <= names
    assert not any(name.startswith(("tests/", "bench/", "dags/", "plugins/")) for name in names)

    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)  # what an installer puts in site-packages
    probe = (
        "from include.ct.config import BUNDLED_PIPELINES_DIR, IMPORT_ROOT, find_pipeline_config;"
        "print(IMPORT_ROOT, find_pipeline_config('churn').name)"
    )
    ran = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(target), "CT_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.split() == [str(target), "churn"]
