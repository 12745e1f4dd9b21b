"""docker-compose.yaml really started: one compose project of the repository's compose file.

The project gets its own name, `.env` (fresh secrets from tools/make_env.py, free host ports)
and an override file that names images only: the project's image built here, and local
stand-ins (docker/standins/) for the images no registry serves. Everything else is the file
users run. ``down(volumes=True)`` removes every container, network and volume it made.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from testbed.services import REPO_ROOT, free_port
from tests.helpers.docker_engine import build, build_project_image, local_base_image, pull

COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
STANDINS = REPO_ROOT / "docker" / "standins"
PROJECT_IMAGE = "airflow-ct:e2e"


def say(message: str) -> None:
    """Progress lines (make compose-e2e runs pytest with -s: the stack takes minutes)."""
    print(f"[compose-e2e {time.strftime('%H:%M:%S')}] {message}", flush=True)


def prepare_images() -> tuple[dict[str, str], list[str]]:
    """Images per service (only where the compose file's own cannot be used) and what was used."""
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    used = [
        f"project image {PROJECT_IMAGE}: built from the Dockerfile on {build_project_image(PROJECT_IMAGE)}"
    ]
    images = {name: PROJECT_IMAGE for name, service in services.items() if "build" in service}
    for name in ("postgres", "redis"):
        official = services[name]["image"]
        if pull(official):
            used.append(f"{name}: {official} (the real image)")
            continue
        standin = f"ct-standin/{name}:bookworm"
        build(standin, STANDINS / f"{name}.Dockerfile", STANDINS, {"BASE_IMAGE": local_base_image()})
        images[name] = standin
        used.append(f"{name}: {standin}, a stand-in from Debian packages ({official} not reachable)")
    return images, used


@dataclass
class ComposeStack:
    """One compose project of the repository's file, driven as a user would (CLI and HTTP)."""

    workdir: Path
    images: dict[str, str]
    name: str = field(default_factory=lambda: f"ct-e2e-{uuid.uuid4().hex[:8]}")
    env: dict[str, str] = field(default_factory=dict)
    profiles: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        env_file = self.workdir / ".env"
        subprocess.run([sys.executable, str(REPO_ROOT / "tools/make_env.py"), str(env_file)], check=True)
        self.env = dict(
            line.split("=", 1) for line in env_file.read_text().splitlines() if line and line[0] != "#"
        )
        ports = {name: str(free_port()) for name in ("AIRFLOW", "MLFLOW", "SERVING")}
        self.set_env(
            COMPOSE_PROJECT_NAME=self.name,
            CT_IMAGE=PROJECT_IMAGE,
            AIRFLOW_HOST_PORT=ports["AIRFLOW"],
            MLFLOW_HOST_PORT=ports["MLFLOW"],
            SERVING_HOST_PORT=ports["SERVING"],
            AIRFLOW_BASE_URL=f"http://localhost:{ports['AIRFLOW']}",
            CT_MLFLOW_UI_URL=f"http://localhost:{ports['MLFLOW']}",
        )
        override = {"services": {name: {"image": image} for name, image in self.images.items()}}
        (self.workdir / "images.yaml").write_text(yaml.safe_dump(override))

    # -- compose ---------------------------------------------------------------------------------
    def set_env(self, **values: str) -> None:
        self.env.update(values)
        (self.workdir / ".env").write_text("".join(f"{k}={v}\n" for k, v in self.env.items()))

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        command = [
            "docker", "compose", "--project-name", self.name, "--project-directory", str(REPO_ROOT),
            "-f", str(COMPOSE_FILE), "-f", str(self.workdir / "images.yaml"),
            "--env-file", str(self.workdir / ".env"),
            *[arg for profile in self.profiles for arg in ("--profile", profile)], *args,
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if check:
            assert done.returncode == 0, (
                f"docker compose {' '.join(args)}:\n{(done.stdout + done.stderr)[-4000:]}"
            )
        return done.stdout + done.stderr

    def up(self, *args: str) -> float:
        """``up -d`` and wait for every service's healthcheck; returns the seconds it took."""
        started = time.monotonic()
        self.compose("up", "-d", "--no-build", *args)
        self.wait_healthy()
        return time.monotonic() - started

    def states(self) -> list[dict[str, Any]]:
        out = self.compose("ps", "--all", "--format", "json")
        lines = [line for line in out.splitlines() if line.startswith("{")]
        return [json.loads(line) for line in lines]

    def wait_healthy(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while True:
            states = self.states()
            pending = [
                s["Service"]
                for s in states
                if not (s["State"] == "running" and s.get("Health") in ("healthy", ""))
                and not (s["State"] == "exited" and s.get("ExitCode") == 0)
            ]
            failed = [s["Service"] for s in states if s["State"] == "exited" and s.get("ExitCode") != 0]
            assert not failed, f"exited with an error: {failed}"
            if states and not pending:
                return
            assert time.monotonic() < deadline, f"not healthy after {timeout:.0f} s: {pending}"
            time.sleep(3)

    def container_ids(self, service: str) -> set[str]:
        return {line[:12] for line in self.compose("ps", "-q", service).split()}

    def diagnose(self) -> str:
        """``docker compose ps`` and the logs of every service that is not healthy (else all)."""
        states = self.states()
        bad = [
            s["Service"]
            for s in states
            if s.get("Health") not in ("healthy", "") or (s["State"] == "exited" and s.get("ExitCode"))
        ]
        report = [self.compose("ps", "--all", check=False)]
        for service in sorted(set(bad)) or sorted({s["Service"] for s in states}):
            report.append(f"--- logs of {service} ---")
            report.append(self.compose("logs", "--no-color", "--tail", "150", service, check=False))
        return "\n".join(report)

    # -- the services, over HTTP -----------------------------------------------------------------
    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.env[f'{service.upper()}_HOST_PORT']}"

    def airflow_token(self, password: str | None = None) -> httpx.Response:
        return httpx.post(
            self.url("airflow") + "/auth/token",
            json={"username": "admin", "password": password or self.env["AIRFLOW_ADMIN_PASSWORD"]},
            timeout=60,
        )

    def airflow(self) -> httpx.Client:
        """A REST client of the API server, logged in as the admin."""
        token = self.airflow_token()
        assert token.status_code == 201, token.text
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        return httpx.Client(base_url=self.url("airflow") + "/api/v2", headers=headers, timeout=60)

    def mlflow(self) -> httpx.Client:
        auth = ("admin", self.env["MLFLOW_ADMIN_PASSWORD"])
        return httpx.Client(base_url=self.url("mlflow") + "/api/2.0/mlflow", auth=auth, timeout=60)
