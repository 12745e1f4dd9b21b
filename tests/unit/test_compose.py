"""docker-compose.yaml: valid against the Compose specification, every service health-checked,
secrets only from .env, ports on localhost, the Docker socket only in the runtime override,
volumes writable by the services' user, no empty setting handed to a client. `make compose-e2e`
(tests/e2e/test_compose_stack.py) starts the file for real."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.services import REPO_ROOT

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
        "AIRFLOW_ADMIN_EMAIL",
        "AIRFLOW_HOST_PORT",
        "MLFLOW_HOST_PORT",
        "SERVING_HOST_PORT",
    }
    example = (REPO_ROOT / ".env.example").read_text()
    for name in documented:  # optional ones are at least named (commented) in .env.example
        assert name in example or name == "CT_IMAGE", name
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
        if name == "airflow-init":
            assert service["user"] == "0:0"  # chowns the volumes, then drops to AIRFLOW_UID
        elif name not in ("postgres", "redis"):
            assert service.get("user", "").startswith("50000"), name
    # MLflow sits behind its login; its clients authenticate with the admin password from .env.
    assert "--app-name basic-auth" in services["mlflow"]["command"][0]
    common = services["airflow-scheduler"]["environment"]
    assert common["AIRFLOW__CORE__AUTH_MANAGER"].endswith("fab_auth_manager.FabAuthManager")
    for name in ("airflow-scheduler", "serving"):
        assert services[name]["environment"]["MLFLOW_TRACKING_USERNAME"] == "admin", name
    scheduler_deps = services["airflow-scheduler"]["depends_on"]
    assert scheduler_deps["airflow-init"] == {"condition": "service_completed_successfully"}
    assert scheduler_deps["postgres"] == {"condition": "service_healthy"}
    runtime = _interpolated(DOCKER_RUNTIME)["services"]
    assert any("docker.sock" in str(v) for v in runtime["airflow-scheduler"]["volumes"])


def test_every_named_volume_path_exists_in_the_image_owned_by_the_airflow_user() -> None:
    """A fresh named volume takes the ownership of its path in the image; a path the image lacks
    becomes a root-owned volume that the non-root services cannot write."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    named = set(yaml.safe_load(COMPOSE.read_text())["volumes"])
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    made = re.search(r"mkdir -p ([^&]+)&& chown -R 50000:0 ([^&]+)&&", dockerfile.replace("\\\n", " "))
    assert made, "the Dockerfile creates and chowns the volume paths in one step"
    created, owned = made.group(1).split(), made.group(2).split()
    for name, service in services.items():
        if name in ("postgres", "redis"):
            continue
        for volume in service.get("volumes", []):
            source, _, target = str(volume).partition(":")
            target = target.split(":")[0]
            if source in named:
                assert target in created, f"{name}: {target} is not created in the image"
                assert any(target == path or target.startswith(path + "/") for path in owned), target
    init = services["airflow-init"]["command"][2]
    for target in ("/opt/ct/data", "/opt/airflow/logs"):
        assert target in init.split("-exec chown")[0], f"airflow-init does not chown {target}"


def test_no_client_is_handed_an_empty_optional_setting() -> None:
    """`${VAR:-}` is an empty string, not unset: boto3 refuses an empty MLFLOW_S3_ENDPOINT_URL."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    anchors = yaml.safe_load(COMPOSE.read_text())["x-airflow-common"]["environment"]
    for name, service in [("x-airflow-common", {"environment": anchors}), *services.items()]:
        command = "\n".join(map(str, service.get("command") or []))
        for key, value in (service.get("environment") or {}).items():
            if re.fullmatch(r"\$\{[A-Z0-9_]+:?-\}", str(value)):
                assert key in command and "unset" in command, f"{name}: {key} may be an empty string"


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


def _compose_cli() -> list[str] | None:
    """`docker compose` (v2, what users run) where installed, else Debian's docker-compose."""
    if shutil.which("docker"):
        found = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=60, check=False)
        if found.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


@pytest.mark.skipif(_compose_cli() is None, reason="neither docker compose nor docker-compose is installed")
def test_compose_parses_and_interpolates_the_files(tmp_path: Path) -> None:
    cli = _compose_cli() or []
    env = tmp_path / ".env"
    env.write_text("".join(f"{key}={value}\n" for key, value in _env_example().items()))
    for files in ([COMPOSE], [COMPOSE, DOCKER_RUNTIME]):
        args = [arg for path in files for arg in ("-f", str(path))]
        done = subprocess.run(
            [*cli, *args, "--env-file", str(env), "--profile", "celery", "config", "--quiet"],
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
        [*cli, "-f", str(COMPOSE), "--env-file", str(empty), "config", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # No secret has a default: compose stops, naming the variable.
    assert missing.returncode != 0 and "set in .env" in missing.stderr, missing.stderr
    assert re.search(r"[A-Z_]+(PASSWORD|KEY|SECRET|TOKEN)", missing.stderr), missing.stderr
