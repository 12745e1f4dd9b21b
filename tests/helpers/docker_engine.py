"""A local Docker engine and the trainer image for container tests.

Uses a running engine, or starts ``dockerd`` (root only) and stops it again at the end of the
session. Images are built locally: the base from the Debian mirror apt uses
(docker/build_base_image.sh), the trainer from docker/trainer.Dockerfile; both are cached by
the engine, so later runs rebuild only what changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers.fixtures import REPO_ROOT

BASE_IMAGE = "ct-base:bookworm"


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


def build_trainer_image(tag: str) -> None:
    """Build the base image if missing, then the trainer image (layers cached by the engine)."""
    subprocess.run(
        ["bash", str(REPO_ROOT / "docker/build_base_image.sh"), BASE_IMAGE], check=True, timeout=1800
    )
    done = subprocess.run(
        [
            "docker", "build", "--network", "host",
            "-f", str(REPO_ROOT / "docker/trainer.Dockerfile"),
            "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
            "-t", tag, str(REPO_ROOT),
        ],
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
