"""docker-compose.yaml: valid against the Compose specification, every service health-checked,
secrets only from .env, ports on localhost, the Docker socket only in the runtime override."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.fixtures import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yaml"
DOCKER_RUNTIME = REPO_ROOT / "docker-compose.docker-runtime.yaml"
# The Compose specification's JSON schema, as Debian's docker-compose package ships it.
COMPOSE_SCHEMA = Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}")
# What the DAGs, the README and the prediction service rely on.
LONG_RUNNING = {
    "postgres",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "mlflow",
    "serving",
}
CELERY = {"redis", "airflow-worker"}


def _env_example() -> dict[str, str]:
    values = {}
    for line in (REPO_ROOT / ".env.example").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip() or f"test-{key.strip().lower()}"
    return values


def _interpolated(path: Path) -> dict[str, Any]:
    env = _env_example()

    def value(match: re.Match[str]) -> str:
        name, operator, default = match.groups()
        if env.get(name):
            return env[name]
        return default if operator in ("-", ":-") else ""

    text = VARIABLE.sub(value, path.read_text())
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def test_every_variable_is_documented_and_every_secret_is_required() -> None:
    text = COMPOSE.read_text()
    documented = set(_env_example()) | {
        "CT_IMAGE",
        "AIRFLOW_BASE_URL",
        "CT_MLFLOW_UI_URL",
        "MLFLOW_ARTIFACTS_DESTINATION",
        "MLFLOW_S3_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
    used = {match.group(1) for match in VARIABLE.finditer(text)}
    assert used <= documented, used - documented
    for secret in ("PASSWORD", "FERNET", "SECRET_KEY", "JWT", "TOKEN"):
        for match in re.finditer(r"(?<!\$)\$\{([A-Z0-9_]*" + secret + r"[A-Z0-9_]*)(:?[-?])?", text):
            if match.group(1).startswith("AWS_"):
                continue  # optional: only for S3 storage
            assert match.group(2) == ":?", f"{match.group(1)} must be required (${{{match.group(1)}:?...}})"


def test_services_have_healthchecks_restart_policies_and_localhost_ports() -> None:
    compose = _interpolated(COMPOSE)
    services = compose["services"]
    assert LONG_RUNNING | CELERY | {"airflow-init"} <= set(services)
    for name in LONG_RUNNING | CELERY:
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
        # Airflow's components exit when their database goes away; the engine brings them back.
        assert services[name].get("restart") in ("unless-stopped", "always"), f"{name} is not restarted"
    for name in CELERY:
        assert services[name]["profiles"] == ["celery"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
        for volume in service.get("volumes", []):
            assert "docker.sock" not in str(volume), f"{name} mounts the Docker socket"
        if name not in ("postgres", "redis"):
            assert service.get("user", "").startswith("50000") or "${AIRFLOW_UID" in service.get(
                "user", ""
            ), name
    # MLflow sits behind its login; its clients authenticate with the admin password from .env.
    assert "--app-name basic-auth" in services["mlflow"]["command"][0]
    for name in ("airflow-scheduler", "serving"):
        assert services[name]["environment"]["MLFLOW_TRACKING_USERNAME"] == "admin", name
    scheduler_deps = services["airflow-scheduler"]["depends_on"]
    assert scheduler_deps["airflow-init"] == {"condition": "service_completed_successfully"}
    assert scheduler_deps["postgres"] == {"condition": "service_healthy"}
    runtime = _interpolated(DOCKER_RUNTIME)["services"]
    assert any("docker.sock" in str(v) for v in runtime["airflow-scheduler"]["volumes"])


@pytest.mark.skipif(not COMPOSE_SCHEMA.exists(), reason="Debian's docker-compose is not installed")
def test_compose_files_match_the_compose_specification() -> None:
    import json

    import jsonschema

    schema = json.loads(COMPOSE_SCHEMA.read_text())
    for path in (COMPOSE, DOCKER_RUNTIME):
        document = _interpolated(path)
        document.pop("name", None)  # newer than the schema Debian ships; checked by compose below
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(document), key=str)
        assert not errors, f"{path.name}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_compose_parses_and_interpolates_the_files(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("".join(f"{key}={value}\n" for key, value in _env_example().items()))
    for files in ([COMPOSE], [COMPOSE, DOCKER_RUNTIME]):
        args = [arg for path in files for arg in ("-f", str(path))]
        done = subprocess.run(
            ["docker-compose", *args, "--env-file", str(env), "--profile", "celery", "config", "--quiet"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    empty = tmp_path / "empty.env"
    empty.write_text("")
    missing = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "--env-file", str(empty), "config", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert missing.returncode != 0 and "set in .env" in missing.stderr  # no secret has a default
