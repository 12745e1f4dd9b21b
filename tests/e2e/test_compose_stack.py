"""`make compose-e2e`: the production compose file, really started on a Docker engine here.

The steps run in order on one compose project (each needs the state the one before left):
healthy from `up`, logins enforced, a CT run that promotes and serves a model, a scheduler
restart in the middle of a run, `down` + `up` keeping everything, then the Celery profile with
two workers (and MLflow stopped for a while during its run). On a failure the module prints
`docker compose ps` and the failing services' logs; it always ends with `down -v`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers.compose_stack import ComposeStack, prepare_images, say
from tests.helpers.docker_engine import docker_engine

pytestmark = [pytest.mark.compose, pytest.mark.e2e]

RECORD = {
    "tenure_months": 3,
    "plan": "basic",
    "contract": "month_to_month",
    "region": "north",
    "monthly_fee": 29.5,
    "support_calls": 4,
}
FINISHED = ("success", "failed")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[ComposeStack]:
    with docker_engine(tmp_path_factory.mktemp("dockerd") / "dockerd.log") as unavailable:
        if unavailable:
            pytest.fail(f"make compose-e2e needs a Docker engine: {unavailable}")
        started = time.monotonic()
        images, used = prepare_images()
        say(f"images ready in {time.monotonic() - started:.0f} s: " + "; ".join(used))
        compose = ComposeStack(tmp_path_factory.mktemp("compose"), images)
        failed_before = request.session.testsfailed
        try:
            yield compose
        finally:
            if request.session.testsfailed > failed_before:
                say("a step failed; the stack as it stands:\n" + compose.diagnose())
            compose.profiles = ("celery",)  # so `down` also removes the Celery services
            compose.compose("down", "-v", "--remove-orphans", check=False)
            say(f"torn down ({compose.name})")


@pytest.fixture(autouse=True)
def _stop_after_a_failed_step(request: pytest.FixtureRequest) -> None:
    """Each step needs the state the previous one left: after a failure the rest are skipped."""
    if request.session.testsfailed:
        pytest.skip("an earlier step of the compose run failed")


def _run(api: httpx.Client, reason: str) -> str:
    created = api.post("/dags/ct_churn/dagRuns", json={"logical_date": None, "conf": {"reason": reason}})
    assert created.status_code == 200, created.text
    run_id: str = created.json()["dag_run_id"]
    return run_id


def _run_ids(api: httpx.Client) -> set[str]:
    answer = api.get("/dags/ct_churn/dagRuns", params={"limit": 100}).json()
    return {run["dag_run_id"] for run in answer["dag_runs"]}


def _existing_runs(stack: ComposeStack) -> set[str]:
    with stack.airflow() as api:
        return _run_ids(api)


def _run_for_batch(
    stack: ComposeStack, reason: str, before: set[str], *, train: tuple[str, ...] = ("running",)
) -> str:
    """Trigger a run for the batch seeded after the runs ``before``; return the run that trains on
    it once its train task is in one of the ``train`` states.

    The manual run is not the only one: unpausing the DAG starts the latest scheduled run, and the
    landing-zone watcher starts one for the new batch. Whichever starts first trains on the batch,
    and the others find nothing new and skip.
    """
    with stack.airflow() as api:
        _run(api, reason)
        deadline = time.monotonic() + 300
        while True:
            for run_id in sorted(_run_ids(api) - before):
                if _tasks(api, run_id).get("train", {}).get("state") in train:
                    return run_id
            assert time.monotonic() < deadline, f"no run got to train {'/'.join(train)} on the batch"
            time.sleep(1)


def _wait_for_every_run(stack: ComposeStack) -> None:
    """Wait until no run of ct_churn is queued or running (a watcher's run after a manual one)."""
    deadline = time.monotonic() + 300
    while True:
        with stack.airflow() as api:
            answer = api.get("/dags/ct_churn/dagRuns", params={"limit": 100}).json()
        if all(run["state"] in FINISHED for run in answer["dag_runs"]):
            return
        assert time.monotonic() < deadline, [run["state"] for run in answer["dag_runs"]]
        time.sleep(2)


def _wait_for_run(stack: ComposeStack, run_id: str, timeout: float = 900) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        with stack.airflow() as api:  # a fresh login each time: the API server may have restarted
            run = api.get(f"/dags/ct_churn/dagRuns/{run_id}").json()
        if run["state"] in FINISHED:
            return run
        assert time.monotonic() < deadline, f"{run_id} still {run['state']} after {timeout:.0f} s"
        time.sleep(5)


def _tasks(api: httpx.Client, run_id: str) -> dict[str, dict[str, Any]]:
    answer = api.get(f"/dags/ct_churn/dagRuns/{run_id}/taskInstances").json()
    return {task["task_id"]: task for task in answer["task_instances"]}


def _seed_batch(stack: ComposeStack, service: str = "airflow-scheduler") -> None:
    """`make data` inside the stack: the next day's churn batch into the landing zone volume."""
    stack.compose("exec", "-T", service, "python", "-m", "tools.datagen", "churn", "--rows", "2000")


def _data_files(stack: ComposeStack) -> list[str]:
    """Every file on the data volume (snapshots, reports, MLflow's artifacts, the prediction log),
    less the dot-files of writes in flight."""
    listing = stack.compose(
        "exec", "-T", "airflow-scheduler", "find", "/opt/ct/data", "-type", "f", "!", "-name", ".*"
    )
    return [line for line in listing.splitlines() if line.startswith("/opt/ct/data/")]


def _versions(stack: ComposeStack) -> list[str]:
    with stack.mlflow() as mlflow:
        found = mlflow.get("/model-versions/search", params={"filter": "name='churn'"}).json()
    return sorted(v["version"] for v in found.get("model_versions", []))


def _champion(stack: ComposeStack) -> dict[str, Any]:
    with stack.mlflow() as mlflow:
        answer = mlflow.get("/registered-models/alias", params={"name": "churn", "alias": "champion"})
    assert answer.status_code == 200, answer.text
    version: dict[str, Any] = answer.json()["model_version"]
    return version


def _served_version(stack: ComposeStack) -> str:
    answer = httpx.post(
        stack.url("serving") + "/v1/models/churn/predict", json={"records": [RECORD]}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][0] in (0, 1)
    version: str = answer.json()["version"]
    return version


def test_every_service_comes_up_healthy(stack: ComposeStack) -> None:
    seconds = stack.up()
    say(f"`docker compose up -d` to every service healthy: {seconds:.0f} s")
    services = {s["Service"]: s for s in stack.states()}
    assert {"postgres", "airflow-init", "airflow-apiserver", "airflow-scheduler", "mlflow", "serving"} <= set(
        services
    )
    assert services["airflow-init"]["ExitCode"] == 0


def test_anonymous_and_wrong_logins_are_refused(stack: ComposeStack) -> None:
    assert stack.airflow_token(password="not-the-password").status_code == 401
    assert httpx.get(stack.url("airflow") + "/api/v2/dags", timeout=30).status_code == 401
    mlflow_anonymous = httpx.get(
        stack.url("mlflow") + "/api/2.0/mlflow/registered-models/search", timeout=30
    ).status_code
    assert mlflow_anonymous == 401
    mlflow_wrong = httpx.get(
        stack.url("mlflow") + "/api/2.0/mlflow/registered-models/search", auth=("admin", "wrong"), timeout=30
    ).status_code
    assert mlflow_wrong == 401
    reload_url = stack.url("serving") + "/v1/models/churn/reload"
    assert httpx.post(reload_url, timeout=30).status_code == 401
    assert httpx.post(reload_url, headers={"Authorization": "Bearer wrong"}, timeout=30).status_code == 403
    with stack.airflow() as api:  # the admin from .env is let in
        assert api.get("/dags/ct_churn").json()["dag_id"] == "ct_churn"


def test_the_image_loads_every_dag_and_plugin(stack: ComposeStack) -> None:
    """Everything installed in the image imports in the running components."""
    with stack.airflow() as api:
        assert api.get("/importErrors").json()["total_entries"] == 0
        assert api.get("/plugins/importErrors").json()["total_entries"] == 0
        plugins = {plugin["name"] for plugin in api.get("/plugins").json()["plugins"]}
    assert "continuous_training" in plugins, plugins
    providers = stack.compose(
        "exec", "-T", "airflow-scheduler", "airflow", "providers", "list", "-o", "plain"
    )
    for provider in ("apache-airflow-providers-fab", "apache-airflow-providers-celery"):
        assert provider in providers, providers


def test_a_run_promotes_and_the_service_serves_the_champion(stack: ComposeStack) -> None:
    before = _existing_runs(stack)
    _seed_batch(stack)
    with stack.airflow() as api:
        assert api.patch("/dags/ct_churn", json={"is_paused": False}).status_code == 200
    run_id = _run_for_batch(stack, "compose e2e: first batch", before, train=("running", "success", "failed"))
    run = _wait_for_run(stack, run_id)
    _wait_for_every_run(stack)  # the other trigger of the same batch trains nothing
    with stack.airflow() as api:
        tasks = _tasks(api, run_id)
    assert run["state"] == "success", {t: v["state"] for t, v in tasks.items()}
    assert tasks["deploy"]["state"] == "success"
    champion = _champion(stack)
    assert champion["version"] == "1" and _versions(stack) == ["1"]
    deadline = time.monotonic() + 120
    while _served_version(stack) != champion["version"]:
        assert time.monotonic() < deadline, "the service never served the champion"
        time.sleep(2)
    say(f"run {run_id} promoted churn v{champion['version']}; serving answers with it")
    # The plugin's pages sit behind the FAB login: the run's validation report and the CT view.
    tags = {tag["key"]: tag["value"] for tag in champion.get("tags", [])}
    report = f"{stack.url('airflow')}/ct-reports/churn/{tags['ct.data_version']}/"
    assert httpx.get(report, timeout=30).status_code == 401
    assert httpx.get(stack.url("airflow") + "/continuous-training/", timeout=30).status_code == 401
    with stack.airflow() as api:
        token = api.headers["Authorization"]
    answer = httpx.get(report, headers={"Authorization": token}, timeout=30)
    assert answer.status_code == 200 and "Validation of churn" in answer.text
    view = httpx.get(
        stack.url("airflow") + "/continuous-training/", headers={"Authorization": token}, timeout=60
    )
    assert view.status_code == 200 and f"champion: version {champion['version']}" in view.text, view.text[
        :2000
    ]


def test_a_scheduler_restart_mid_run_still_finishes_with_one_version_at_most(stack: ComposeStack) -> None:
    before, runs = _versions(stack), _existing_runs(stack)
    _seed_batch(stack)
    run_id = _run_for_batch(stack, "compose e2e: scheduler restart", runs)
    stack.compose("restart", "airflow-scheduler")
    say("restarted airflow-scheduler while train was running")
    run = _wait_for_run(stack, run_id)
    _wait_for_every_run(stack)
    with stack.airflow() as api:
        tasks = _tasks(api, run_id)
    assert run["state"] == "success", {t: (v["state"], v["try_number"]) for t, v in tasks.items()}
    after = _versions(stack)
    assert len(after) - len(before) <= 1, (before, after)
    say(f"run finished after the restart; train took {tasks['train']['try_number']} tries; versions {after}")


def test_down_and_up_keep_runs_models_champion_and_data(stack: ComposeStack) -> None:
    with stack.airflow() as api:
        runs_before = api.get("/dags/ct_churn/dagRuns").json()["total_entries"]
    champion, versions, files = _champion(stack), _versions(stack), _data_files(stack)
    assert any("/snapshots/" in name for name in files), files[:20]
    stack.compose("down")
    seconds = stack.up()
    say(f"down + up: healthy again in {seconds:.0f} s")
    with stack.airflow() as api:
        assert api.get("/dags/ct_churn/dagRuns").json()["total_entries"] == runs_before
    assert _versions(stack) == versions
    assert _champion(stack)["version"] == champion["version"]
    missing = set(files) - set(_data_files(stack))
    assert not missing, sorted(missing)[:20]
    deadline = time.monotonic() + 120
    while True:
        try:
            if _served_version(stack) == champion["version"]:
                break
        except (httpx.HTTPError, AssertionError):
            pass
        assert time.monotonic() < deadline, "the restarted service does not serve the champion"
        time.sleep(2)


def test_the_celery_profile_with_two_workers_runs_the_same_dag(stack: ComposeStack) -> None:
    stack.compose("down")
    stack.set_env(AIRFLOW_EXECUTOR="CeleryExecutor")
    stack.profiles = ("celery",)
    seconds = stack.up("--scale", "airflow-worker=2")
    workers = stack.container_ids("airflow-worker")
    assert len(workers) == 2
    say(f"celery profile with 2 workers healthy in {seconds:.0f} s")
    runs = _existing_runs(stack)
    _seed_batch(stack, service="airflow-worker")
    run_id = _run_for_batch(stack, "compose e2e: celery", runs)
    # MLflow away for a while in the middle of the run: the client backs off and retries.
    stack.compose("stop", "mlflow")
    time.sleep(20)
    stack.compose("start", "mlflow")
    run = _wait_for_run(stack, run_id)
    with stack.airflow() as api:
        tasks = _tasks(api, run_id)
    assert run["state"] == "success", {t: (v["state"], v["try_number"]) for t, v in tasks.items()}
    hosts = {task["hostname"] for task in tasks.values() if task["state"] == "success"}
    assert hosts and hosts <= workers, (hosts, workers)
    say(f"celery run {run_id} succeeded on workers {sorted(hosts)} with MLflow stopped for 20 s")
