"""deploy/helm/values.yaml against the official Apache Airflow Helm chart: every key is one the
chart's values schema defines, with the type it declares; airflow_settings.yaml is applied with the
database connection and Fernet key; logins and MLflow credentials come from the Kubernetes Secret;
nothing secret is written in the file; nothing relies on files only the apache/airflow image has.

CHART_KEYS is written by hand, for exactly the keys values.yaml uses, from reading
apache/airflow chart/values.schema.json at commit 002e5532d7d55a375bbf71bd4e72d7e008635073 (chart
default Airflow 3.0.5) and the templates that consume them; the same keys are in chart/values.yaml
at d6ba4817823e8ffd2d3f676fc92aa7381e7d30f0 (default Airflow 3.1.3). `extraObjects` is in neither
(only the branch of apache/airflow pull request 71942, open when last seen, adds it). On the chart's
main line Celery worker settings also live under `workers.celery`: re-read the schema before moving
to a new major version of the chart.

Not checked here: helm is not installed and no chart can be downloaded, so the chart's own schema
is not applied and nothing is rendered (`helm lint` / `helm template`): the templating of
scheduler.extraInitContainers, the probes and the log groomer are only seen as values. No cluster
either: that the init container reaches the database, that the probes pass in this image, that the
Secret holds the keys named here, and that the MLflow user may write, are for a real install.
"""

from __future__ import annotations

import copy
import re
import shlex
from typing import Any

import jsonschema
import pytest
import yaml

from testbed.services import REPO_ROOT

VALUES = REPO_ROOT / "deploy" / "helm" / "values.yaml"
SETTINGS_FILE = "/opt/airflow/airflow_settings.yaml"
APPLY = ["python", "-m", "tools.airflow_settings", "apply", SETTINGS_FILE]
FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"

# --- The chart's schema, by hand: JSON-schema fragments, closed wherever values.yaml recurses. ---


def obj(required: tuple[str, ...] = (), **properties: dict[str, Any]) -> dict[str, Any]:
    """A mapping with exactly these keys known (the chart's `additionalProperties: false`)."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def list_of(item: dict[str, Any], nullable: bool = False) -> dict[str, Any]:
    return {"type": ["array", "null"] if nullable else "array", "items": item}


STRING = {"type": "string"}
NULLABLE_STRING = {"type": ["string", "null"]}
BOOLEAN = {"type": "boolean"}
INTEGER = {"type": "integer"}
STRINGS = list_of(STRING, nullable=True)  # every command/args value of the chart
PULL_POLICY = {"enum": ["Always", "Never", "IfNotPresent"]}
# The chart takes any (comma-separated) *Executor class; these are the ones this project runs.
EXECUTOR = {
    "enum": ["LocalExecutor", "CeleryExecutor", "KubernetesExecutor", "CeleryExecutor,KubernetesExecutor"]
}
QUANTITY = {"type": ["string", "number"]}
RESOURCES = obj(
    requests={"type": "object", "additionalProperties": QUANTITY},
    limits={"type": "object", "additionalProperties": QUANTITY},
)
SECRET_KEY_REF = obj(("name", "key"), name=STRING, key=STRING, optional=BOOLEAN)
ENV_VAR = obj(("name",), name=STRING, value=STRING, valueFrom=obj(secretKeyRef=SECRET_KEY_REF))
VOLUME_MOUNT = obj(("name", "mountPath"), name=STRING, mountPath=STRING, subPath=STRING, readOnly=BOOLEAN)
CONTAINER = obj(
    ("name",),
    name=STRING,
    image=STRING,
    imagePullPolicy=STRING,
    command=STRINGS,
    args=STRINGS,
    env=list_of(ENV_VAR),
    volumeMounts=list_of(VOLUME_MOUNT),
    resources=RESOURCES,
)
PROBE_COMMAND = STRINGS
LOG_GROOMER = obj(
    enabled=BOOLEAN, command=STRINGS, args=STRINGS, retentionDays=INTEGER, frequencyMinutes=INTEGER
)

CHART_KEYS: dict[str, dict[str, Any]] = {
    "images.airflow.repository": NULLABLE_STRING,
    "images.airflow.tag": NULLABLE_STRING,
    "images.airflow.pullPolicy": PULL_POLICY,
    "airflowVersion": STRING,
    "executor": EXECUTOR,
    "airflowLocalSettings": NULLABLE_STRING,
    "dags.persistence.enabled": BOOLEAN,
    "dags.gitSync.enabled": BOOLEAN,
    "postgresql.enabled": BOOLEAN,
    "data.metadataSecretName": NULLABLE_STRING,
    "fernetKeySecretName": NULLABLE_STRING,
    "jwtSecretName": NULLABLE_STRING,
    "apiSecretKeySecretName": NULLABLE_STRING,
    # airflow.cfg: any section, any option, scalar values.
    "config": {
        "type": "object",
        "additionalProperties": {
            "type": "object",
            "additionalProperties": {"type": ["boolean", "integer", "number", "string"]},
        },
    },
    "createUserJob.useHelmHooks": BOOLEAN,
    "createUserJob.args": STRINGS,
    "createUserJob.env": list_of(ENV_VAR),
    "migrateDatabaseJob.useHelmHooks": BOOLEAN,
    "env": list_of(obj(("name", "value"), name=STRING, value=STRING)),
    "secret": list_of(obj(("envName", "secretName"), envName=STRING, secretName=STRING, secretKey=STRING)),
    "volumes": list_of(
        obj(
            ("name",),
            name=STRING,
            persistentVolumeClaim=obj(("claimName",), claimName=STRING, readOnly=BOOLEAN),
        )
    ),
    "volumeMounts": list_of(VOLUME_MOUNT),
    "scheduler.livenessProbe.command": PROBE_COMMAND,
    "scheduler.startupProbe.command": PROBE_COMMAND,
    "scheduler.logGroomerSidecar": LOG_GROOMER,
    "scheduler.extraInitContainers": list_of(CONTAINER),
    "dagProcessor.livenessProbe.command": PROBE_COMMAND,
    "dagProcessor.logGroomerSidecar": LOG_GROOMER,
    "workers.replicas": INTEGER,
    "workers.resources": RESOURCES,
    "workers.livenessProbe.command": PROBE_COMMAND,
    "workers.logGroomerSidecar": LOG_GROOMER,
    "triggerer.replicas": INTEGER,
    "triggerer.livenessProbe.command": PROBE_COMMAND,
    "triggerer.logGroomerSidecar": LOG_GROOMER,
}
# Chart values that would put a secret into values.yaml (or a rendered manifest) as plain text.
LITERAL_SECRET_KEYS = [
    "fernetKey",
    "jwtSecret",
    "apiSecretKey",
    "webserverSecretKey",
    "data.metadataConnection",
    "data.brokerUrl",
    "webserver.defaultUser",
    "createUserJob.defaultUser",
    "redis.password",
    "flower.password",
]


def chart_schema() -> dict[str, Any]:
    """CHART_KEYS as one JSON schema: every mapping on the way to a key is closed."""
    root: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
    for path, leaf in CHART_KEYS.items():
        node = root
        *parents, last = path.split(".")
        for part in parents:
            node = node["properties"].setdefault(
                part, {"type": "object", "properties": {}, "additionalProperties": False}
            )
        node["properties"][last] = leaf
    return root


def schema_problems(values: Any) -> list[str]:
    validator = jsonschema.Draft7Validator(chart_schema())
    return sorted(
        f"{'.'.join(str(part) for part in error.absolute_path) or '<top>'}: {error.message}"
        for error in validator.iter_errors(values)
    )


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(VALUES.read_text())
    return loaded


def _get(values: dict[str, Any], path: str) -> Any:
    node: Any = values
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def _secret_ref(entry: dict[str, Any] | None) -> tuple[str, str] | None:
    ref = ((entry or {}).get("valueFrom") or {}).get("secretKeyRef")
    return (ref["name"], ref["key"]) if ref else None


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [text for child in node.values() for text in _strings(child)]
    if isinstance(node, list):
        return [text for child in node for text in _strings(child)]
    return []


def _header_secret_keys() -> set[str]:
    """The keys the header's `kubectl create secret` command puts into the Secret."""
    header = "\n".join(line[1:] for line in VALUES.read_text().splitlines() if line.startswith("#"))
    return set(re.findall(r"--from-literal=([a-z0-9-]+)=", header))


# --- 1. Keys and types ---------------------------------------------------------------------


def test_every_key_is_one_the_chart_defines_with_its_type(values: dict[str, Any]) -> None:
    assert schema_problems(values) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda v: v.update(extraObjects=[{"kind": "Job"}]), "'extraObjects' was unexpected"),
        (lambda v: v["workers"].update(replica=2), "'replica' was unexpected"),
        (lambda v: v["workers"].update(replicas="2"), "is not of type 'integer'"),
        (
            lambda v: v["secret"].append({"envName": "X", "secretName": "s", "key": "k"}),
            "'key' was unexpected",
        ),
        (lambda v: v["env"].append({"name": "X", "value": 1}), "is not of type 'string'"),
        (lambda v: v["scheduler"]["extraInitContainers"][0].update(cmd=["x"]), "'cmd' was unexpected"),
    ],
    ids=["extraObjects", "typo", "wrong-type", "secret-item", "env-value", "container-key"],
)
def test_the_description_rejects_what_the_chart_would(
    values: dict[str, Any], change: Any, expected: str
) -> None:
    changed = copy.deepcopy(values)
    change(changed)
    assert any(expected in problem for problem in schema_problems(changed)), schema_problems(changed)


# --- 2. Settings apply, logins, MLflow credentials, no literal secrets -----------------------


def test_settings_are_applied_after_migration_with_the_database_and_fernet_key(
    values: dict[str, Any],
) -> None:
    containers = values["scheduler"]["extraInitContainers"]
    (apply,) = [c for c in containers if (c.get("command") or []) + (c.get("args") or []) == APPLY]
    # The scheduler's own image, whatever repository/tag/digest the install sets.
    assert apply["image"] == '{{ template "airflow_image" . }}'
    assert apply["imagePullPolicy"] == values["images"]["airflow"]["pullPolicy"]
    env = _env(apply)
    # The chart gives extra init containers none of its environment: both come from its Secrets.
    assert _secret_ref(env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")) == (
        values["data"]["metadataSecretName"],
        "connection",
    )
    assert _secret_ref(env.get("AIRFLOW__CORE__FERNET_KEY")) == (values["fernetKeySecretName"], "fernet-key")
    config_mounts = [m for m in apply["volumeMounts"] if m["name"] == "config"]
    assert config_mounts == [
        {
            "name": "config",
            "mountPath": "/opt/airflow/airflow.cfg",
            "subPath": "airflow.cfg",
            "readOnly": True,
        }
    ]
    # What it runs is in the repository, and every ${VAR} the settings file expands is given.
    assert (REPO_ROOT / "tools" / "airflow_settings.py").is_file()
    settings = yaml.safe_load((REPO_ROOT / "airflow_settings.yaml").read_text())
    referenced = {name for text in _strings(settings) for name in re.findall(r"\$\{(\w+)\}", text)}
    assert referenced <= set(env), f"airflow_settings.yaml needs {sorted(referenced - set(env))}"


def test_tasks_get_the_mlflow_login_from_the_secret(values: dict[str, Any]) -> None:
    secrets = {entry["envName"]: entry for entry in values["secret"]}
    for name, key in (
        ("MLFLOW_TRACKING_USERNAME", "mlflow-username"),
        ("MLFLOW_TRACKING_PASSWORD", "mlflow-password"),
    ):
        assert secrets[name]["secretName"] == "airflow-ct-secrets"
        assert secrets[name]["secretKey"] == key
    plain = {entry["name"] for entry in values["env"]}
    assert not plain & {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}
    assert "MLFLOW_TRACKING_URI" in plain


def test_logins_are_fab_users_with_the_admin_password_from_the_secret(values: dict[str, Any]) -> None:
    assert values["config"]["core"]["auth_manager"] == FAB
    requirements = (REPO_ROOT / "requirements.txt").read_text()
    assert re.search(r"^apache-airflow-providers-fab\b", requirements, re.M)
    job = values["createUserJob"]
    assert _secret_ref(_env(job).get("AIRFLOW_ADMIN_PASSWORD")) == ("airflow-ct-secrets", "admin-password")
    assert job["args"][:2] == ["bash", "-c"]
    script = shlex.split(job["args"][2])
    assert script[:3] == ["airflow", "users", "create"]
    assert "reset-password" in script
    # shlex keeps the variable unexpanded; attached with "=", a password starting with "-" is no option
    assert script.count("--password=$AIRFLOW_ADMIN_PASSWORD") == 2


def test_nothing_secret_is_written_in_the_values(values: dict[str, Any]) -> None:
    for path in LITERAL_SECRET_KEYS:
        assert _get(values, path) is None, f"{path} would hold a secret in values.yaml"
    secret_like = re.compile(r"PASSWORD|SECRET|TOKEN|FERNET|SQL_ALCHEMY_CONN|_KEY$|^AIRFLOW_CONN_")
    assert [e["name"] for e in values["env"] if secret_like.search(e["name"])] == []
    credentials_in_url = re.compile(r"://[^/\s:@]+:[^/\s@]+@")
    assert [text for text in _strings(values) if credentials_in_url.search(text)] == []


def test_the_header_creates_every_secret_key_the_values_read(values: dict[str, Any]) -> None:
    secret = "airflow-ct-secrets"
    names = {values["data"]["metadataSecretName"], values["fernetKeySecretName"]}
    names |= {values["jwtSecretName"], values["apiSecretKeySecretName"]}
    assert names == {secret}
    read = {"connection", "fernet-key", "jwt-secret", "api-secret-key"}  # the chart's key names
    read |= {entry["secretKey"] for entry in values["secret"] if entry["secretName"] == secret}
    containers = [*values["scheduler"]["extraInitContainers"], values["createUserJob"]]
    for container in containers:
        for entry in container.get("env", []):
            ref = _secret_ref(entry)
            if ref:
                assert ref[0] == secret
                read.add(ref[1])
    assert _header_secret_keys() == read


# --- 3. This image, not apache/airflow's ---------------------------------------------------


def test_nothing_relies_on_files_of_the_apache_airflow_image(values: dict[str, Any]) -> None:
    lock = (REPO_ROOT / "requirements.lock").read_text()
    (pinned,) = re.findall(r"^apache-airflow==(\S+)", lock, re.M)
    assert values["airflowVersion"] == pinned
    # The chart's default probes run /entrypoint and its log groomers /clean-logs.
    for path in (
        "scheduler.livenessProbe.command",
        "scheduler.startupProbe.command",
        "dagProcessor.livenessProbe.command",
        "triggerer.livenessProbe.command",
        "workers.livenessProbe.command",
        "scheduler.logGroomerSidecar.args",
        "dagProcessor.logGroomerSidecar.args",
        "triggerer.logGroomerSidecar.args",
        "workers.logGroomerSidecar.args",
    ):
        assert _get(values, path), f"{path} keeps the chart's default, made for the apache/airflow image"
    assert [text for text in _strings(values) if "/entrypoint" in text or "/clean-logs" in text] == []
    job_checks = {
        "scheduler.livenessProbe.command": "SchedulerJob",
        "scheduler.startupProbe.command": "SchedulerJob",
        "dagProcessor.livenessProbe.command": "DagProcessorJob",
        "triggerer.livenessProbe.command": "TriggererJob",
    }
    for path, job_type in job_checks.items():
        assert f"airflow jobs check --job-type {job_type} --local" in _get(values, path)[-1], path
