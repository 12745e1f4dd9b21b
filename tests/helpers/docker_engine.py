"""A local Docker engine and the project's images for container tests.

Uses a running engine, or starts ``dockerd`` (root only) and stops it again at the end of the
session. The project's image is built from the Dockerfile on its real base when a registry
serves it, else on a Debian base made from the mirror apt uses (docker/build_base_image.sh);
the engine caches layers, so later runs rebuild only what changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from testbed.services import REPO_ROOT

BASE_IMAGE = "ct-base:bookworm"
# The base the Dockerfile names; used whenever a registry serves it.
PYTHON_BASE_IMAGE = "python:3.11-slim-bookworm"


def _engine_answers() -> bool:
    try:
        return (
            subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextmanager
def docker_engine(log: Path) -> Iterator[str | None]:
    """Yield None when an engine answers (started here if need be), else the reason it cannot."""
    if shutil.which("docker") is None:
        yield "no docker client installed (apt-get install docker.io)"
        return
    if _engine_answers():
        yield None
        return
    if shutil.which("dockerd") is None or os.geteuid() != 0:
        yield "no Docker engine running, and dockerd cannot be started here (needs root and docker.io)"
        return
    process = subprocess.Popen(["dockerd"], stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None and not _engine_answers():
            time.sleep(1)
        if not _engine_answers():
            yield f"dockerd did not start: {log.read_text()[-1500:]}"
            return
        yield None
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def image_exists(tag: str) -> bool:
    return (
        subprocess.run(
            ["docker", "image", "inspect", tag], capture_output=True, timeout=60, check=False
        ).returncode
        == 0
    )


def pull(tag: str) -> bool:
    """Pull ``tag`` from its registry; False at once where no registry answers."""
    if image_exists(tag):
        return True
    return (
        subprocess.run(
            ["docker", "pull", "-q", tag], capture_output=True, timeout=300, check=False
        ).returncode
        == 0
    )


def build(tag: str, dockerfile: Path, context: Path, build_args: dict[str, str] | None = None) -> None:
    """``docker build`` with the classic builder (no buildx here) and the host's network for pip/apt."""
    args = [arg for key, value in (build_args or {}).items() for arg in ("--build-arg", f"{key}={value}")]
    done = subprocess.run(
        ["docker", "build", "--network", "host", "-f", str(dockerfile), *args, "-t", tag, str(context)],
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]


def local_base_image() -> str:
    """The Debian base the local stand-ins build on, made with debootstrap if missing."""
    subprocess.run(
        ["bash", str(REPO_ROOT / "docker/build_base_image.sh"), BASE_IMAGE], check=True, timeout=1800
    )
    return BASE_IMAGE


def build_project_image(tag: str) -> str:
    """Build the project's image (Dockerfile) on its real base where a registry answers, else on
    the debootstrap base; returns the base used. Layers are cached by the engine."""
    base = PYTHON_BASE_IMAGE if pull(PYTHON_BASE_IMAGE) else local_base_image()
    build(tag, REPO_ROOT / "Dockerfile", REPO_ROOT, {"BASE_IMAGE": base})
    return base
