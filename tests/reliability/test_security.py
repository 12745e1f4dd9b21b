"""Nobody let in: no secret in the repository, non-root images, logins everywhere, tokens required,
and the prediction service loads models only from the configured registry."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from testbed.services import REPO_ROOT
from tests.reliability.conftest import Ledger

SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |OPENSSH |DSA )?PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "password or token literal": re.compile(
        r"(?i)\b[\w.]*(?:password|passwd|secret|token|fernet_key|api_key)\b[ \t]*[:=][ \t]*['\"]?"
        # not a reference (env, template, placeholder) nor a variable named like a secret
        r"(?!\$\{|\$\$|<|%|\{\{|os\.environ|None\b|null\b|true\b|false\b|\w*(?:password|secret|token)\b)"
        r"([A-Za-z0-9+/_\-]{12,})"
    ),
    "URL with credentials": re.compile(r"\b[a-z+]+://[^\s:/@'\"]+:(?!\$\{|\$\$)[^\s@'\"]{6,}@"),
}
# Test code uses made-up secrets on purpose; lock files hold only hashes and versions.
SKIPPED = ("tests/", "requirements.lock", "requirements-spark.lock")


def _tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return [REPO_ROOT / name for name in listed.stdout.splitlines() if not name.startswith(SKIPPED)]


def test_no_secret_is_committed(reliability: Ledger) -> None:
    files = _tracked_files()
    findings = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue
        for kind, pattern in SECRET_PATTERNS.items():
            findings += [
                f"{path.relative_to(REPO_ROOT)}: {kind}: {m.group(0)[:60]}" for m in pattern.finditer(text)
            ]
    assert findings == [], "\n".join(findings)
    ignored = subprocess.run(["git", "check-ignore", ".env"], cwd=REPO_ROOT, capture_output=True, check=False)
    assert ignored.returncode == 0, ".env must be git-ignored"
    reliability.record(
        "security", "no secret in the repository", f"{len(files)} tracked files scanned", inputs=len(files)
    )


TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "GX_ANALYTICS_ENABLED": "false"}
MLFLOW_TELEMETRY_DISABLED = (
    "from mlflow.telemetry.utils import is_telemetry_disabled; print(is_telemetry_disabled())"
)


def _literal_settings(text: str, assignment: str) -> dict[str, str]:
    """NAME=value pairs with literal values found in `assignment` statements (ENV, export)."""
    pairs: dict[str, str] = {}
    for statement in re.findall(rf"^\s*{assignment}\s+((?:.*\\\n)*.*)$", text, flags=re.MULTILINE):
        for name, value in re.findall(r"([A-Z_][A-Z0-9_]*)=([^\s\\$]+)", statement):
            pairs[name] = value.strip("'\"")
    return pairs


def _mlflow_telemetry_disabled(settings: dict[str, str]) -> bool:
    """What MLflow decides outside CI and pytest (which switch its telemetry off by themselves)."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **settings}
    answer = subprocess.run(
        [sys.executable, "-c", MLFLOW_TELEMETRY_DISABLED], env=env, capture_output=True, text=True, check=True
    )
    return answer.stdout.strip() == "True"


def test_no_usage_data_leaves_a_deployment(reliability: Ledger) -> None:
    """The image (compose, Helm), the Helm values and `make run` switch MLflow's and GX's telemetry off."""
    helm_env = yaml.safe_load((REPO_ROOT / "deploy/helm/values.yaml").read_text())["env"]
    sources = {
        "Dockerfile": _literal_settings((REPO_ROOT / "Dockerfile").read_text(), "ENV"),
        "scripts/run_local.sh": _literal_settings((REPO_ROOT / "scripts/run_local.sh").read_text(), "export"),
        "deploy/helm/values.yaml": {item["name"]: str(item["value"]) for item in helm_env if "value" in item},
    }
    for source, settings in sources.items():
        assert {name: settings.get(name) for name in TELEMETRY_OFF} == TELEMETRY_OFF, source
        assert _mlflow_telemetry_disabled({name: settings[name] for name in TELEMETRY_OFF}), source
    assert not _mlflow_telemetry_disabled({}), "MLflow's default is on: without it this check proves nothing"
    reliability.record(
        "security", "no usage data sent out", f"MLflow and GX telemetry off in {', '.join(sources)}"
    )


def _final_user(dockerfile: Path) -> str:
    users = re.findall(r"^USER\s+(\S+)", dockerfile.read_text(), flags=re.MULTILINE)
    return users[-1] if users else "root"


def test_images_and_services_run_as_non_root(reliability: Ledger) -> None:
    assert _final_user(REPO_ROOT / "Dockerfile") == "airflow"
    assert _final_user(REPO_ROOT / "docker/standins/redis.Dockerfile") == "redis"
    services = yaml.safe_load((REPO_ROOT / "docker-compose.yaml").read_text())["services"]
    ours = {name: service for name, service in services.items() if name not in ("postgres", "redis")}
    for name, service in ours.items():
        if name == "airflow-init":  # root only to chown the volumes, then setpriv to AIRFLOW_UID
            assert service["user"] == "0:0" and 'setpriv --reuid="$${AIRFLOW_UID}"' in service["command"][2]
            continue
        assert str(service.get("user", "")).startswith("${AIRFLOW_UID"), f"{name} would run as root"
    reliability.record("security", "containers run as non-root", f"2 images, {len(ours)} services checked")


def test_airflow_and_mlflow_require_a_login(reliability: Ledger) -> None:
    compose = (REPO_ROOT / "docker-compose.yaml").read_text()
    local = (REPO_ROOT / "scripts/run_local.sh").read_text()
    for text in (compose, local):
        assert not re.search(r"SIMPLE_AUTH_MANAGER_ALL_ADMINS\W+(true|True)", text), "anonymous admin"
    # Production logins: FAB's users in the metadata DB, the admin's password from .env.
    assert (
        "AIRFLOW__CORE__AUTH_MANAGER: airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
        in (compose)
    )
    assert "SIMPLE_AUTH_MANAGER" not in compose
    assert "AIRFLOW_ADMIN_PASSWORD:?" in compose
    assert (
        "--app-name basic-auth" in compose
        and "MLFLOW_AUTH_ADMIN_PASSWORD: ${MLFLOW_ADMIN_PASSWORD:?" in compose
    )
    reliability.record(
        "security",
        "Airflow and MLflow behind logins",
        "compose: FAB auth manager with the admin password from .env; make run: simple auth manager; "
        "MLflow basic-auth (refusals of anonymous calls are asserted against live servers in "
        "tests/integration/test_data_arrival.py and tests/e2e/test_compose_stack.py)",
    )


def test_prediction_service_takes_no_model_location_from_requests(reliability: Ledger) -> None:
    """Models come only from the configured registry: no endpoint accepts a URI, path or version."""
    from include.ct.config import BUNDLED_PIPELINES_DIR, load_pipeline_config
    from include.ct_serving.app import create_app
    from include.ct_serving.settings import ServingSettings

    config = load_pipeline_config(BUNDLED_PIPELINES_DIR / "churn.yaml")
    app = create_app([config], ServingSettings(load_on_start=False, poll_seconds=0, prediction_log=None))
    spec = app.openapi()
    parameters, body_fields = set(), set()
    for operations in spec["paths"].values():
        for operation in operations.values():
            parameters |= {parameter["name"] for parameter in operation.get("parameters", [])}
            for media in operation.get("requestBody", {}).get("content", {}).values():
                body_fields |= set(media.get("schema", {}).get("properties", {}))
    assert parameters <= {"name", "authorization"}, parameters  # pipeline name; the reload token
    assert body_fields <= {"records", "ids"}, body_fields  # features and caller ids only
    reload = spec["paths"]["/v1/models/{name}/reload"]["post"]
    assert "requestBody" not in reload  # the reload follows the registry alias, nothing else
    reliability.record(
        "security", "models only from the configured registry", f"{len(spec['paths'])} endpoints checked"
    )
