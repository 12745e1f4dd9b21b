"""Faults in the orchestration layer, through a real scheduler, triggerer, dag-processor and
api-server: workers killed mid-train, two pipelines promoting at once, a schedule tick colliding
with a data-arrival event, and the metadata PostgreSQL restarted in the middle of a run.

The metadata database lives on a private PostgreSQL server this module starts (initdb on a free
port), so it can be stopped and started without touching the machine's shared server.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mlflow import MlflowClient

from include.ct.config import find_pipeline_config
from include.ct.registry.registry import ABANDONED
from testbed.airflow_stack import AirflowStack, airflow_stack
from testbed.services import REPO_ROOT, MlflowServer, copy_config
from tests.helpers.private_postgres import PrivatePostgres, private_postgres
from tests.reliability.conftest import Ledger
from tools import datagen

pytestmark = pytest.mark.integration

CHURN = REPO_ROOT / "include/pipelines/churn.yaml"
FAST_WATCH = "  poll_seconds: 2\n  settle_seconds: 1\n"
PIPELINES = ("alpha", "beta", "clock")


@pytest.fixture(scope="module")
def metadata_server() -> Iterator[PrivatePostgres]:
    with private_postgres() as server:
        yield server


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, metadata_server: PrivatePostgres, mlflow_server: MlflowServer
) -> Iterator[AirflowStack]:
    """``alpha`` and ``beta`` start on data arrival only; ``clock`` also runs every minute."""
    tmp_path = tmp_path_factory.mktemp("orchestration")
    pipelines = tmp_path / "pipelines"
    for name in PIPELINES:
        copy_config(
            CHURN,
            pipelines,
            f"{name}.yaml",
            **{
                "name: churn": f"name: {name}",
                "landing/churn": f"landing/{name}",
                'schedule: "@daily"': 'schedule: "* * * * *"' if name == "clock" else "schedule: null",
                f"  path: landing/{name}\n": f"  path: landing/{name}\n" + FAST_WATCH,
                "max_slice_drop: 0.05": "max_slice_drop: 1.0",
                "min_improvement: 0.0": "min_improvement: -1.0",  # every run promotes (not a gate test)
                "delay_seconds: 20 ": "delay_seconds: 2 ",
            },
        )
    database = metadata_server.create_database("airflow")
    with pytest.MonkeyPatch.context() as patch:
        env = {
            "CT_PIPELINES_DIR": str(pipelines),
            "CT_DATA_DIR": str(tmp_path / "data"),
            "MLFLOW_TRACKING_URI": mlflow_server.url,
            # A worker that dies without a word is noticed after 30 s (default 5 min).
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        }
        for key, value in env.items():
            patch.setenv(key, value)
        with airflow_stack(database, tmp_path / "airflow", env) as running:
            for name in PIPELINES:
                running.wait_for_dag(f"ct_{name}")
            for name in ("alpha", "beta"):
                running.cli("dags", "unpause", f"ct_{name}")
            for name in ("alpha", "beta"):
                running.wait_for_watcher(f"ct_{name}")
            yield running


@pytest.fixture(scope="module")
def client(mlflow_server: MlflowServer) -> MlflowClient:
    return MlflowClient(mlflow_server.url)


def wait_until(what: str, check: Callable[[], Any], stack: AirflowStack, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        stack._check_alive()
        time.sleep(0.3)
    raise TimeoutError(f"{what} within {timeout} s\n{stack.logs()}")


def new_run(stack: AirflowStack, dag_id: str, seen: int) -> str:
    """The run_id of the first run of ``dag_id`` after the ``seen`` earlier ones."""
    runs = wait_until(f"a new run of {dag_id}", lambda: stack.runs(dag_id)[seen:], stack)
    return str(runs[0][0])


def training_runs(client: MlflowClient, dag_id: str, run_id: str) -> list[Any]:
    experiment = client.get_experiment_by_name(dag_id)
    assert experiment is not None
    return list(client.search_runs([experiment.experiment_id], f"tags.`ct.run_id` = '{run_id}'"))


def train_in_progress(
    stack: AirflowStack, client: MlflowClient, dag_id: str, run_id: str, attempt: int
) -> Any:
    """The training process once attempt ``attempt`` of ``train`` has opened its own MLflow run
    (each attempt that gets that far opens one)."""
    ti = stack.task_instance(dag_id, run_id, "train")
    if not ti or ti[1] != "running" or ti[2] != attempt or client.get_experiment_by_name(dag_id) is None:
        return None
    runs = sorted(training_runs(client, dag_id, run_id), key=lambda run: run.info.start_time)
    if len(runs) != attempt or runs[-1].info.status != "RUNNING":
        return None
    return stack.task_process(ti[0])


def test_workers_killed_mid_train_retry_without_orphans(
    stack: AirflowStack, client: MlflowClient, reliability: Ledger
) -> None:
    """Attempt 1: the training process is SIGKILLed (what the OOM killer does). Attempt 2: the whole
    worker, supervisor and task, is SIGKILLed, so nothing reports back and only the missing
    heartbeat tells. Attempt 3 trains, and the run ends with one model version and no run stuck."""
    config = find_pipeline_config("alpha")
    seen = len(stack.runs("ct_alpha"))
    datagen.write_batch(config, rows=10_000)
    run_id = new_run(stack, "ct_alpha", seen)

    task = wait_until(
        "attempt 1 training", lambda: train_in_progress(stack, client, "ct_alpha", run_id, 1), stack
    )
    task.send_signal(signal.SIGKILL)
    task = wait_until(
        "attempt 2 training", lambda: train_in_progress(stack, client, "ct_alpha", run_id, 2), stack
    )
    worker = task.parent()
    assert worker is not None and "LocalExecutor" in " ".join(worker.cmdline())  # the supervisor
    for process in (worker, task):
        process.send_signal(signal.SIGKILL)

    runs = stack.wait_for_runs("ct_alpha", seen + 1, timeout=600)
    assert runs[seen][:2] == (run_id, "success"), stack.logs()
    assert stack.task_instance("ct_alpha", run_id, "train")[2] == 3  # type: ignore[index]

    by_status: dict[str, list[Any]] = {}
    for run in training_runs(client, "ct_alpha", run_id):
        by_status.setdefault(run.info.status, []).append(run)
    assert sorted(by_status) == ["FINISHED", "KILLED"], by_status  # nothing left RUNNING
    assert len(by_status["FINISHED"]) == 1 and len(by_status["KILLED"]) == 2
    assert all(ABANDONED in run.data.tags for run in by_status["KILLED"])
    versions = client.search_model_versions("name = 'alpha'")
    assert [v.run_id for v in versions] == [by_status["FINISHED"][0].info.run_id]  # no orphan version
    assert client.get_model_version_by_alias("alpha", "champion").version == versions[0].version
    snapshot = stack.xcom("ct_alpha", run_id, "extract")
    assert sum(batch["rows"] for batch in snapshot["batches"]) == 10_000  # the whole batch, read once
    reliability.record(
        "fault",
        "training process SIGKILLed, then the whole worker SIGKILLed (real scheduler)",
        "third attempt trained; 2 dead MLflow runs marked KILLED, 1 model version, champion moved once",
        inputs=2,
    )


def test_two_pipelines_promote_at_the_same_time(
    stack: AirflowStack, client: MlflowClient, reliability: Ledger
) -> None:
    """Batches for alpha and beta land together: the runs overlap, and each champion alias ends
    on its own pipeline's new version, moved by its own run."""
    seen = {name: len(stack.runs(f"ct_{name}")) for name in ("alpha", "beta")}
    before = {name: _champion(client, name) for name in ("alpha", "beta")}
    for name in ("alpha", "beta"):
        datagen.write_batch(find_pipeline_config(name), rows=3000)
    run_ids = {name: new_run(stack, f"ct_{name}", seen[name]) for name in ("alpha", "beta")}
    for name in ("alpha", "beta"):
        runs = stack.wait_for_runs(f"ct_{name}", seen[name] + 1, timeout=600)
        assert runs[seen[name]][:2] == (run_ids[name], "success"), stack.logs()

    windows = {name: _task_window(stack, f"ct_{name}", run_ids[name], "deploy") for name in ("alpha", "beta")}
    for name in ("alpha", "beta"):
        champion = client.get_model_version_by_alias(name, "champion")
        assert champion.tags["ct.run_id"] == run_ids[name]
        assert champion.tags["ct.pipeline"] == name
        assert champion.version != (before[name] or {}).get("version")
        assert len(client.search_model_versions(f"name = '{name}' and run_id = '{champion.run_id}'")) == 1
    overlapped = min(w[1] for w in windows.values()) > max(w[0] for w in windows.values())
    reliability.record(
        "concurrency",
        "two pipelines register and move their champion aliases at the same time",
        f"each alias on its own new version (deploy tasks {'overlapped' if overlapped else 'back to back'})",
        inputs=2,
    )


def test_a_schedule_tick_and_a_data_arrival_at_once_train_once(
    stack: AirflowStack, client: MlflowClient, reliability: Ledger
) -> None:
    """``clock`` runs every minute and watches its landing zone: a batch dropped just before the
    minute starts an asset-triggered and a scheduled run within seconds of each other; the batch
    is trained on once, by whichever extracts first."""
    config = find_pipeline_config("clock")
    stack.cli("dags", "unpause", "ct_clock")  # its latest tick runs at once and finds nothing
    try:
        stack.wait_for_watcher("ct_clock")
        # 10 s before a tick: the watcher announces the batch just before the schedule fires.
        time.sleep((50 - datetime.now(UTC).second) % 60)
        batch = datagen.write_batch(config, rows=3000)
        next_tick = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        tick = f"scheduled__{next_tick:%Y-%m-%dT%H:%M:%S}"

        def both_fired() -> bool:  # a tick's run is created once the runs before it finished
            runs = stack.runs("ct_clock")
            return any(k == "asset_triggered" for _, _, k in runs) and any(r >= tick for r, _, _ in runs)

        wait_until("an asset-triggered run and the next tick's run", both_fired, stack, timeout=300)
        runs = stack.wait_for_runs("ct_clock", len(stack.runs("ct_clock")), timeout=600)
    finally:
        stack.cli("dags", "pause", "ct_clock")
    assert {state for _, state, _ in runs} == {"success"}, (runs, stack.logs())
    consumed = [run for run, _, _ in runs if stack.xcom("ct_clock", run, "extract")]
    assert len(consumed) == 1, runs  # one extraction, hence one training
    assert [b["file"] for b in stack.xcom("ct_clock", consumed[0], "extract")["batches"]] == [batch.name]
    versions = client.search_model_versions("name = 'clock'")
    assert len(versions) == 1 and versions[0].tags["ct.run_id"] == consumed[0]
    reliability.record(
        "concurrency",
        "a schedule tick and a data-arrival event on the same batch",
        f"{len(runs)} runs; the {dict((r, k) for r, _, k in runs)[consumed[0]]} one trained, 1 model version",
    )


def test_metadata_database_restarted_during_a_run(
    stack: AirflowStack, metadata_server: PrivatePostgres, client: MlflowClient, reliability: Ledger
) -> None:
    """Airflow's PostgreSQL goes down (every connection dropped) while ``train`` runs and comes
    back 20 s later. Components that exit on losing it are started again, as compose's
    ``restart: unless-stopped`` does; the run finishes and promotes."""
    config = find_pipeline_config("beta")
    seen = len(stack.runs("ct_beta"))
    datagen.write_batch(config, rows=10_000)
    run_id = new_run(stack, "ct_beta", seen)
    wait_until("training", lambda: train_in_progress(stack, client, "ct_beta", run_id, 1), stack)
    stack.supervise = True
    try:
        metadata_server.stop("fast")
        time.sleep(20)
        metadata_server.start()
        runs = stack.wait_for_runs("ct_beta", seen + 1, timeout=600)
    finally:
        stack.supervise = False
    assert runs[seen][:2] == (run_id, "success"), stack.logs()
    champion = client.get_model_version_by_alias("beta", "champion")
    assert champion.tags["ct.run_id"] == run_id
    assert len(client.search_model_versions(f"name = 'beta' and run_id = '{champion.run_id}'")) == 1
    restarted = ", ".join(f"{name} x{count}" for name, count in sorted(stack.restarts.items())) or "none"
    reliability.record(
        "fault",
        "Airflow's metadata PostgreSQL stopped for 20 s during training, then started",
        f"the run finished and promoted once the database was back (components restarted: {restarted})",
    )


def _champion(client: MlflowClient, name: str) -> dict[str, str] | None:
    try:
        return {"version": str(client.get_model_version_by_alias(name, "champion").version)}
    except Exception:  # noqa: BLE001 - no model or no alias yet
        return None


def _task_window(stack: AirflowStack, dag_id: str, run_id: str, task_id: str) -> tuple[datetime, datetime]:
    ((start, end),) = stack.query(
        "SELECT start_date, end_date FROM task_instance WHERE dag_id = %s AND run_id = %s AND task_id = %s",
        dag_id,
        run_id,
        task_id,
    )
    return start, end
