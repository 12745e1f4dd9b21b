"""Register a promoted challenger, prove it serves, make it the ``champion`` and roll back on failure.

Three steps, each idempotent: ``register_candidate`` (registry version plus infra validation: the
live prediction service loads it beside the champion, or, where no service is reachable, a fresh
process of the serving environment loads it and predicts held-out rows), ``deploy_version``
(alias move, service reload, smoke and latency checks, automatic rollback) and
``rollback_champion`` (the manual rollback DAG).
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from include.ct.config import IMPORT_ROOT, PipelineConfig
from include.ct.registry import registry, staging

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

SERVING_URL_ENV = "CT_SERVING_URL"
DECISION = f"{registry.TAG_PREFIX}decision"
DECISION_REASON = f"{registry.TAG_PREFIX}decision_reason"
ROLLED_BACK_TO = f"{registry.TAG_PREFIX}rolled_back_to"
DEPLOY_CHECKS = f"{registry.TAG_PREFIX}deploy_checks"
UNDEPLOYABLE = ("rejected_infra", "rolled_back", "rejected_by_reviewer", "rejected_online")
REASON_CHARS = 5000  # this project's cap on a reason tag: the registry UI stays readable


def decision_tags(decision: str, reason: str) -> dict[str, str]:
    """The version tags that record a decision on it (``rejected_infra``, ``rolled_back``, ...) and why."""
    return {DECISION: decision, DECISION_REASON: reason[:REASON_CHARS]}


class InfraValidationError(Exception):
    """The candidate did not load or answer in a fresh process of the serving environment."""


class DeploymentError(Exception):
    """The deployed version failed a check on the live service and the alias was rolled back."""


@dataclass
class RegisteredCandidate:
    """A registered version that passed infra validation, not yet serving."""

    model_name: str
    version: str
    champion: str | None
    url: str | None
    infra_check: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DeployResult:
    """What the deploy step did: the alias move and the checks the live service passed."""

    model_name: str
    version: str
    previous_champion: str | None
    moved: bool
    service_url: str | None
    checks: dict[str, Any] = field(default_factory=dict)
    url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- register + infra validation ------------------------------------------------------------


def infra_validate(config: PipelineConfig, version: str, sample_path: str | None) -> dict[str, Any]:
    """Load ``version`` exactly as the service does, in a fresh process, and predict held-out rows.

    ``CT_SERVING_PYTHON`` names the serving environment's interpreter (default: this one).
    """
    python = os.environ.get("CT_SERVING_PYTHON") or sys.executable
    command = [python, "-m", "include.ct_serving", "check", "--pipeline", config.name, "--version", version]
    if sample_path:
        command += ["--sample", sample_path]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(IMPORT_ROOT), os.environ.get("PYTHONPATH")])),
    }
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=config.deploy.infra_timeout_seconds,
            env=env,
            cwd=IMPORT_ROOT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise InfraValidationError(
            f"version {version} did not load and predict within {config.deploy.infra_timeout_seconds} s"
        ) from exc
    answer = _last_json_line(done.stdout)
    if done.returncode != 0 or not answer.get("ok"):
        problem = answer.get("error") or done.stderr.strip()[-2000:] or f"exit code {done.returncode}"
        raise InfraValidationError(f"version {version} cannot serve: {problem}")
    return answer


def _last_json_line(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def register_candidate(
    config: PipelineConfig,
    run_id: str,
    test_path: str,
    *,
    decision: str,
    lineage: registry.Lineage,
    service: ServiceClient | None = None,
) -> RegisteredCandidate:
    """Register ``run_id``'s model (once) and prove it loads: on the live service when one answers
    and a champion serves there (it stays loaded, so the promotion is a swap), else in a fresh
    process that also predicts the held-out rows."""
    tags = {
        **lineage.tags(),
        **registry.lineage_tags_of_run(run_id),  # the version shows the data it was trained on
        "ct.promoted_by_run_id": lineage.run_id,
        **decision_tags("promote", decision),
    }
    version = str(registry.register_version(config, run_id, tags).version)
    champion = registry.get_champion(config)
    try:
        if service is not None and champion is not None and service_answers(service, config):
            check = service_infra_check(config, version, str(champion.version), service)
        else:
            check = infra_validate(config, version, test_path)
    except InfraValidationError as exc:
        registry.set_version_tags(config, version, decision_tags("rejected_infra", str(exc)))
        raise
    log.info("version %s passed infra validation: %s", version, check)
    return RegisteredCandidate(
        model_name=config.registered_model_name,
        version=version,
        champion=str(champion.version) if champion is not None else None,
        url=registry.model_version_url(config.registered_model_name, version),
        infra_check=check,
    )


def service_answers(service: ServiceClient, config: PipelineConfig) -> bool:
    """Whether the service is reachable and serves this pipeline's champion now."""
    try:
        status = service.status(config.name)
    except Exception as exc:  # noqa: BLE001 - unreachable or not serving this pipeline: fall back
        log.info(
            "the prediction service did not answer for %s (%s): checking in a fresh process", config.name, exc
        )
        return False
    return bool(status.get("ready"))


def service_infra_check(
    config: PipelineConfig, version: str, champion: str, service: ServiceClient
) -> dict[str, Any]:
    """Stage ``version`` on the live service with no traffic (``infra``) and wait until it loads
    there (signature checked, a sample predicted); it stays staged until deploy moves it on."""
    started = time.monotonic()
    staging.stage(config, version, strategy=staging.INFRA, share=0.0, against=champion)
    service.reload(config.name)
    try:
        wait_for_challenger(service, config, version)
    except InfraValidationError:
        staging.unstage(config, version)
        try:
            service.reload(config.name)
        except Exception:  # noqa: BLE001 - the poller unloads it anyway
            log.warning("the service did not confirm unloading version %s", version)
        raise
    return {"ok": True, "where": service.base_url, "seconds": round(time.monotonic() - started, 2)}


def wait_for_challenger(service: ServiceClient, config: PipelineConfig, version: str) -> dict[str, Any]:
    """The service's status once it has loaded staged ``version``; raises InfraValidationError
    when it could not, or did not within ``deploy.ready_timeout_seconds``."""
    timeout = config.deploy.ready_timeout_seconds
    started = time.monotonic()
    status: dict[str, Any] = {}
    while time.monotonic() - started < timeout:
        try:
            status = service.status(config.name)
        except Exception as exc:  # noqa: BLE001 - the service may be restarting: keep asking
            status = {"error": str(exc)}
        if str(status.get("challenger")) == version:
            if status.get("challenger_state") == "serving":
                return status
            if status.get("challenger_state") == "failed":
                raise InfraValidationError(
                    f"version {version} cannot serve: the prediction service could not load it: "
                    f"{status.get('challenger_error')}"
                )
        time.sleep(0.2)
    raise InfraValidationError(
        f"the prediction service did not load version {version} within {timeout:g} s: {status}"
    )


# --- the live service -----------------------------------------------------------------------


class ServiceClient:
    """HTTP client of the prediction service, as the deploy task uses it."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.token = token
        self._http: httpx.Client = httpx.Client(base_url=self.base_url, timeout=timeout)

    @classmethod
    def from_env(cls) -> ServiceClient | None:
        """The service at ``CT_SERVING_URL`` with ``CT_SERVING_RELOAD_TOKEN``; None if unset."""
        url = os.environ.get(SERVING_URL_ENV, "").strip()
        return cls(url, os.environ.get("CT_SERVING_RELOAD_TOKEN") or None) if url else None

    def status(self, name: str) -> dict[str, Any]:
        response = self._http.get(f"/v1/models/{name}")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def reload(self, name: str) -> dict[str, Any]:
        """Ask the service to follow the alias now (it also polls, so a failure here is logged only)."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = self._http.post(f"/v1/models/{name}/reload", headers=headers, timeout=300)
        if response.status_code >= 400:
            log.warning("reload of %s answered %s: %s", name, response.status_code, response.text[:500])
        return {"status": response.status_code, **_json_or_empty(response)}

    def predict(self, name: str, records: list[dict[str, Any]]) -> dict[str, Any]:
        response = self._http.post(f"/v1/models/{name}/predict", json={"records": records})
        if response.status_code != 200:
            raise DeploymentCheckError(f"predict answered {response.status_code}: {response.text[:500]}")
        result: dict[str, Any] = response.json()
        return result

    def close(self) -> None:
        self._http.close()


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class DeploymentCheckError(Exception):
    """One check on the live service failed (the caller rolls back)."""


def wait_for_version(service: ServiceClient, name: str, version: str, timeout: float) -> float:
    """Seconds until the service reports ``version`` as serving; raises after ``timeout``."""
    started = time.monotonic()
    last: Any = None
    while time.monotonic() - started < timeout:
        try:
            last = service.status(name)
        except Exception as exc:  # noqa: BLE001 - the service may be restarting: keep asking
            last = str(exc)
        else:
            if str(last.get("version")) == version:
                return time.monotonic() - started
        time.sleep(0.5)
    raise DeploymentCheckError(f"the service did not serve version {version} within {timeout} s: {last}")


def held_out_records(config: PipelineConfig, test_path: str, count: int) -> list[dict[str, Any]]:
    """The first ``count`` held-out rows as JSON records: read once for all the deploy checks."""
    import pandas as pd

    from include.ct.registry.served_model import json_records

    return json_records(config, pd.read_parquet(test_path).head(count))


def smoke_test(
    config: PipelineConfig, service: ServiceClient, version: str, records: list[dict[str, Any]]
) -> dict[str, Any]:
    """Held-out rows over HTTP must give exactly the offline predictions of the same version."""
    from include.ct.registry.served_model import load_served_model, records_frame

    rows = records[: config.deploy.smoke_rows]
    answer = service.predict(config.name, rows)
    if str(answer.get("version")) != version:
        raise DeploymentCheckError(
            f"smoke test was answered by version {answer.get('version')}, not {version}"
        )
    offline, offline_probabilities = load_served_model(config, version).predict(records_frame(config, rows))
    mismatched = [i for i, (a, b) in enumerate(zip(answer["predictions"], offline, strict=True)) if a != b]
    if offline_probabilities is not None:
        for index, (online, local) in enumerate(
            zip(answer["probabilities"], offline_probabilities, strict=True)
        ):
            if any(abs(a - b) > 1e-9 for a, b in zip(online, local, strict=True)):
                mismatched.append(index)
    if mismatched:
        raise DeploymentCheckError(
            f"smoke test: {len(set(mismatched))} of {len(rows)} online predictions differ from the "
            f"offline ones (first rows {sorted(set(mismatched))[:5]})"
        )
    return {"smoke_rows": len(rows)}


def latency_check(
    config: PipelineConfig, service: ServiceClient, records: list[dict[str, Any]]
) -> dict[str, Any]:
    """p95 of single-row requests must stay under ``deploy.latency_p95_ms``."""
    rows = records[: config.deploy.latency_requests]
    budget = config.deploy.latency_p95_ms
    allowed_slow = int(0.05 * config.deploy.latency_requests)  # more than this and p95 is over
    timings: list[float] = []
    for index in range(config.deploy.latency_requests):
        started = time.perf_counter()
        service.predict(config.name, [rows[index % len(rows)]])
        timings.append((time.perf_counter() - started) * 1000)
        if sum(t > budget for t in timings) > allowed_slow:
            break  # the budget is already missed: stop loading a slow service
    timings.sort()
    p50 = timings[len(timings) // 2]
    p95 = timings[min(len(timings) - 1, math.ceil(0.95 * len(timings)) - 1)]
    if p95 > budget:
        raise DeploymentCheckError(
            f"latency: p95 {p95:.1f} ms over {len(timings)} requests exceeds {budget} ms"
        )
    return {"latency_requests": len(timings), "p50_ms": round(p50, 2), "p95_ms": round(p95, 2)}


def verify_serving(
    config: PipelineConfig, service: ServiceClient, version: str, test_path: str
) -> dict[str, Any]:
    """Reload, wait for ``version``, then smoke and latency checks; raises DeploymentCheckError."""
    answer = service.reload(config.name)
    if answer.get("failed_version") == version:
        raise DeploymentCheckError(f"the service could not load version {version}: {answer.get('detail')}")
    waited = wait_for_version(service, config.name, version, config.deploy.ready_timeout_seconds)
    checks: dict[str, Any] = {"ready_after_s": round(waited, 2)}
    records = held_out_records(
        config, test_path, max(config.deploy.smoke_rows, config.deploy.latency_requests)
    )
    checks.update(smoke_test(config, service, version, records))
    checks.update(latency_check(config, service, records))
    return checks


# --- deploy and roll back -------------------------------------------------------------------


def deploy_version(
    config: PipelineConfig,
    version: str,
    test_path: str,
    *,
    reason: str,
    service: ServiceClient | None,
) -> DeployResult:
    """Move ``champion`` to ``version`` and prove the live service serves it; roll back on failure."""
    tags = registry.version_tags(config, version)
    if tags.get(DECISION) in UNDEPLOYABLE:
        raise DeploymentError(
            f"version {version} is marked {tags[DECISION]}: {tags.get(DECISION_REASON, '')}"
        )
    previous, moved = registry.move_champion(config, version, reason[:500])
    staging.unstage(config, version)  # staged for its infra check: the service now serves it
    result = DeployResult(
        model_name=config.registered_model_name,
        version=version,
        previous_champion=previous,
        moved=moved,
        service_url=service.base_url if service else None,
        url=registry.model_version_url(config.registered_model_name, version),
    )
    if service is None:
        log.warning(
            "%s is not set: champion moved to %s, but no prediction service was checked",
            SERVING_URL_ENV,
            version,
        )
        return result
    try:
        result.checks = verify_serving(config, service, version, test_path)
    except Exception as exc:
        problem = str(exc) if isinstance(exc, DeploymentCheckError) else f"{type(exc).__name__}: {exc}"
        restore_previous(config, version, previous, problem, service)
        raise DeploymentError(
            f"version {version} failed on the live service and was rolled back "
            f"to {previous or 'no champion'}: {problem}"
        ) from exc
    registry.set_version_tags(config, version, {DEPLOY_CHECKS: json.dumps(result.checks)})
    log.info("version %s is serving at %s: %s", version, service.base_url, result.checks)
    return result


def restore_previous(
    config: PipelineConfig, failed: str, previous: str | None, problem: str, service: ServiceClient | None
) -> None:
    """Point ``champion`` back at ``previous`` (or remove it), record why, and make the service follow."""
    if previous:
        registry.set_champion_alias(config, previous)
    else:
        registry.delete_champion_alias(config)
    registry.set_version_tags(
        config,
        failed,
        {**decision_tags("rolled_back", problem), ROLLED_BACK_TO: previous or ""},
    )
    log.error("rolled champion back from %s to %s: %s", failed, previous or "(none)", problem)
    if service is not None and previous:
        try:
            service.reload(config.name)
            wait_for_version(service, config.name, previous, config.deploy.ready_timeout_seconds)
        except Exception:
            log.exception("the service did not confirm version %s after the rollback", previous)


def rollback_champion(
    config: PipelineConfig, to_version: str | None, *, reason: str, service: ServiceClient | None
) -> dict[str, Any]:
    """Manual rollback: ``champion`` to ``to_version`` (default: the version it replaced)."""
    current = registry.get_champion(config)
    if current is None:
        raise ValueError(f"{config.registered_model_name} has no champion to roll back")
    target = to_version or current.tags.get(f"{registry.TAG_PREFIX}previous_champion") or None
    if not target:
        raise ValueError(
            f"champion v{current.version} replaced no earlier version: name the version to restore"
        )
    registry.client().get_model_version(config.registered_model_name, target)  # exists, or a clear error
    if str(current.version) == str(target):
        log.info("champion already points at version %s: nothing to roll back", target)
        return {"from": str(current.version), "to": str(target), "moved": False}
    registry.set_champion_alias(config, str(target))
    registry.set_version_tags(
        config,
        str(current.version),
        {**decision_tags("rolled_back", f"manual rollback: {reason}"), ROLLED_BACK_TO: str(target)},
    )
    log.warning("manual rollback of %s: %s -> %s (%s)", config.name, current.version, target, reason)
    served = None
    if service is not None:
        service.reload(config.name)
        wait_for_version(service, config.name, str(target), config.deploy.ready_timeout_seconds)
        served = str(target)
    return {"from": str(current.version), "to": str(target), "moved": True, "serving": served}
