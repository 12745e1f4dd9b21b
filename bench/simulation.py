"""Closed-loop simulation, full mode: the gated policy is the real pipeline, run day by day.

Starts its own ``mlflow server`` (SQLite store, local artifacts), the prediction service and an
Airflow home (SQLite metadata DB) in a work dir, all on 127.0.0.1 with free ports. Each simulated
day it sends the day's traffic to the service over HTTP and scores the answers, lands the batches
whose labels arrived as CSV files, runs ``airflow dags test ct_sim_churn`` and reads back what the
run did (Airflow task states, MLflow runs and versions, the data folders). The baselines are the
library computations of ``simulation.closed_loop`` on the same stream. Writes ``bench/simulation.md``
with its plots and logs them to MLflow. Every process it started is stopped at the end, also on
an error or Ctrl-C.

    python -m bench.simulation                       # 60 days x 2000 rows (make simulate)
    python -m bench.simulation --days 4 --rows-per-day 800 --event broken_day=3 --out /tmp/sim
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from bench.serving import wait_for
from include.ct.config import (
    BUNDLED_PIPELINES_DIR,
    PipelineConfig,
    load_pipeline_config,
)
from include.ct.data.extract import BATCH_SUFFIXES, accepted_versions
from include.ct.data.samples import EPOCH
from include.ct.modeling.metrics import compute_metrics
from include.ct.registry import registry
from include.ct.storage import pipeline_paths
from simulation.claims import claims
from simulation.closed_loop import progress_logging
from simulation.full_mode import PipelineRun, pipeline_record
from simulation.policies import (
    LibraryPolicies,
    add_training_arguments,
    training_overrides,
    window_days,
    with_params,
    with_training,
)
from simulation.records import (
    BASELINES,
    NOT_PROMOTED,
    POLICIES,
    DayRecord,
    SimulationResult,
    fmt,
    settings_of,
)
from simulation.report import log_to_mlflow, write_report
from simulation.scenario import DayBatch, Scenario, stream
from simulation.scoring import Answers, Scored
from testbed.services import MLFLOW_SERVER_ENV, free_port, mlflow_server_command

log = logging.getLogger("bench.simulation")

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SOURCE_PIPELINE = "churn"  # the stream's generator (datagen.churn_batch) and the config copied
PIPELINE = "sim_churn"
MAX_BATCH = 1000  # CT_SERVING_MAX_BATCH given to the service: traffic goes in requests this size
RUN_TIMEOUT_SECONDS = 3600.0
# Settings of the caller that must not reach the simulation's processes (they would point Airflow,
# MLflow or the pipelines at someone else's databases and folders).
FOREIGN_ENV_PREFIXES = ("AIRFLOW_", "AIRFLOW__", "CT_", "MLFLOW_", "_AIRFLOW")


# --- processes ------------------------------------------------------------------------------


def stop_group(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Stop a process started with ``start_new_session=True`` and every child in its group."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError):  # workers the leader left behind
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


@dataclass
class Stack:
    """The simulation's own services and folders: MLflow, the prediction service, an Airflow home."""

    workdir: Path
    env: dict[str, str]  # every child process runs with exactly this environment
    mlflow_url: str
    serving_url: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def airflow_db(self) -> Path:
        return self.workdir / "airflow" / "airflow.db"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def start(
        self, name: str, command: list[str], env: Mapping[str, str] | None = None, output: Path | None = None
    ) -> None:
        """Start a process in its own process group, its output to ``output`` (``logs/<name>.log``)."""
        with (output or self.logs / f"{name}.log").open("ab") as sink:
            self.processes[name] = subprocess.Popen(
                command,
                env={**self.env, **(env or {})},
                cwd=self.workdir,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def run(self, name: str, command: list[str], output: Path, timeout: float) -> int:
        """Run a command to the end (tracked, so Ctrl-C stops it too); returns its exit code."""
        self.start(name, command, output=output)
        process = self.processes[name]
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.error("%s ran over %.0f s: stopped (see %s)", name, timeout, output)
            return -1
        finally:
            stop_group(process)
            self.processes.pop(name, None)

    def stop(self) -> None:
        """Stop every process this stack started, newest first."""
        for name in reversed(list(self.processes)):
            stop_group(self.processes.pop(name))


def simulation_env(workdir: Path, pipelines_dir: Path) -> dict[str, str]:
    """The environment of the simulation's processes: the caller's, minus its Airflow/MLflow/CT
    settings, plus a private Airflow home, data folder and pipelines folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV_PREFIXES)}
    airflow_home = workdir / "airflow"
    env.update(
        {
            "PYTHONPATH": str(REPO_ROOT),
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "CT_DATA_DIR": str(workdir / "data"),
            "CT_PIPELINES_DIR": str(pipelines_dir),
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "GX_ANALYTICS_ENABLED": "false",
            # Two threads of OpenMP per fit on a shared 2-core box oversubscribe it (10x slower fits
            # seen here); every process of the simulation, and the harness, fits on one thread.
            "OMP_NUM_THREADS": "1",
        }
    )
    return env


@contextlib.contextmanager
def running_stack(workdir: Path, pipelines_dir: Path) -> Iterator[Stack]:
    """Start MLflow, migrate Airflow's DB and start the prediction service; stop them all on exit."""
    for folder in ("mlflow", "airflow", "data", "logs"):
        (workdir / folder).mkdir(parents=True, exist_ok=True)
    mlflow_port, serving_port = free_port(), free_port()
    token = secrets.token_urlsafe(24)
    stack = Stack(
        workdir=workdir,
        env=simulation_env(workdir, pipelines_dir),
        mlflow_url=f"http://127.0.0.1:{mlflow_port}",
        serving_url=f"http://127.0.0.1:{serving_port}",
    )
    stack.env.update(
        {
            "MLFLOW_TRACKING_URI": stack.mlflow_url,
            "CT_SERVING_URL": stack.serving_url,
            "CT_SERVING_RELOAD_TOKEN": token,
        }
    )
    try:
        stack.start(
            "mlflow",
            mlflow_server_command(workdir / "mlflow", mlflow_port),
            MLFLOW_SERVER_ENV,
        )
        stack.start("airflow-db-migrate", [str(VENV_BIN / "airflow"), "db", "migrate"])
        wait_for(f"{stack.mlflow_url}/health", stack.processes["mlflow"], timeout=300)
        stack.start(
            "serving",
            [sys.executable, "-m", "include.ct_serving", "serve"],
            {
                "CT_SERVING_HOST": "127.0.0.1",
                "CT_SERVING_PORT": str(serving_port),
                "CT_SERVING_PIPELINES": PIPELINE,
                "CT_SERVING_POLL_SECONDS": "5",
                "CT_SERVING_MAX_BATCH": str(MAX_BATCH),
            },
        )
        migrate = stack.processes["airflow-db-migrate"]
        if migrate.wait(timeout=900) != 0:
            raise RuntimeError(f"airflow db migrate failed: see {stack.logs / 'airflow-db-migrate.log'}")
        stack.processes.pop("airflow-db-migrate")
        wait_for(f"{stack.serving_url}/health", stack.processes["serving"], timeout=300)
        yield stack
    finally:
        stack.stop()


@contextlib.contextmanager
def environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block (the harness's own library calls), then restore."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _raise_on_sigterm() -> None:
    """A SIGTERM ends the run like Ctrl-C, so every service is stopped on the way out."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


# --- the pipeline and the stream ------------------------------------------------------------


def write_pipeline_config(
    folder: Path, *, training: Mapping[str, Any] | None = None, model_params: Mapping[str, Any] | None = None
) -> Path:
    """A copy of the bundled churn config named ``sim_churn`` (own landing zone, DAG and model)."""
    source = BUNDLED_PIPELINES_DIR / f"{SOURCE_PIPELINE}.yaml"
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    data["name"] = PIPELINE
    data["description"] = f"Closed-loop simulation copy of {source.name}"
    data["source"] = {**data.get("source", {}), "path": f"landing/{PIPELINE}", "watch": False}
    data["schedule"] = None
    data["tags"] = [*data.get("tags", []), "simulation"]
    if training:
        data["training"] = {**data.get("training", {}), **training}
    if model_params:
        data["model"] = {**data["model"], "params": {**data["model"].get("params", {}), **model_params}}
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{PIPELINE}.yaml"
    target.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    load_pipeline_config(target)  # a bad override fails here, not inside Airflow
    return target


def land(config: PipelineConfig, batch: DayBatch) -> Path:
    """Drop a day's batch (as upstream sent it, maybe broken) into the landing zone atomically."""
    landing = pipeline_paths(config).landing
    landing.mkdir(parents=True, exist_ok=True)
    target = landing / f"day_{batch.day:04d}.csv"
    partial = landing / f".{target.name}.partial"  # extract ignores dot files
    batch.batch.to_csv(partial, index=False)
    partial.rename(target)
    return target


def pending_files(config: PipelineConfig) -> list[str]:
    """Batch files waiting in the landing zone (what extract will take)."""
    landing = pipeline_paths(config).landing
    if not landing.is_dir():
        return []
    return sorted(
        p.name
        for p in landing.iterdir()
        if p.is_file() and p.suffix.lower() in BATCH_SUFFIXES and not p.name.startswith((".", "_"))
    )


# --- one day: traffic, landing, the DAG run, what it did ------------------------------------


def serve_traffic(http: Any, config: PipelineConfig, traffic: pd.DataFrame) -> tuple[Answers | None, int]:
    """Send the day's requests (features only) to the service; its answers and the serving version.

    Before the first champion the service has nothing to serve (503): (None, 0).
    """
    features = config.feature_names
    predicted: list[Any] = []
    probabilities: list[list[float]] = []
    classes: list[Any] | None = None
    versions: set[str] = set()
    for start in range(0, len(traffic), MAX_BATCH):
        body = (
            traffic[features].iloc[start : start + MAX_BATCH].to_json(orient="records", double_precision=15)
        )
        response = http.post(
            f"/v1/models/{config.name}/predict",
            content=b'{"records": ' + body.encode() + b"}",
            headers={"Content-Type": "application/json"},
        )
        if response.status_code == 503:
            return None, 0
        response.raise_for_status()
        answer = response.json()
        versions.add(str(answer["version"]))
        predicted.extend(answer["predictions"])
        probabilities.extend(answer.get("probabilities") or [])
        classes = answer.get("classes", classes)
    if len(versions) > 1:
        log.warning("the service switched versions mid-traffic: %s", sorted(versions))
    return (
        Answers(traffic.index, predicted, probabilities or None, classes),
        int(max(versions, key=int)),
    )


def score(config: PipelineConfig, answers: Any, frame: pd.DataFrame) -> float | None:
    """The primary metric of ``answers`` on ``frame``'s rows (None when undefined)."""
    if answers is None:
        return None
    value = compute_metrics(config, answers, frame[config.feature_names], frame[config.target])[config.metric]
    return None if value != value else float(value)  # noqa: PLR0124 - NaN


def airflow_run_facts(database: Path, dag_id: str) -> tuple[str, str, dict[str, str], float | None]:
    """(run_id, state, task states, seconds) of the DAG's latest run, from Airflow's SQLite DB.

    The duration spans its task instances: ``dags test`` sets the run's own start to its logical date.
    """
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        row = db.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
        if row is None:
            return "", "missing", {}, None
        run_id, state = row
        where = "FROM task_instance WHERE dag_id = ? AND run_id = ?"
        tasks = db.execute(f"SELECT task_id, COALESCE(state, 'none') {where}", (dag_id, run_id)).fetchall()
        started, ended = db.execute(
            f"SELECT MIN(start_date), MAX(end_date) {where}", (dag_id, run_id)
        ).fetchone()
    seconds = None
    if started and ended:
        seconds = (datetime.fromisoformat(str(ended)) - datetime.fromisoformat(str(started))).total_seconds()
    return str(run_id), str(state), {str(k): str(v) for k, v in tasks}, seconds


def quarantine_reports(config: PipelineConfig) -> dict[str, str]:
    """Quarantined file -> what it broke, from the reports beside the quarantined batches."""
    folder = pipeline_paths(config).quarantine
    found: dict[str, str] = {}
    for path in sorted(folder.glob("*.report.json")) if folder.is_dir() else []:
        report = json.loads(path.read_text(encoding="utf-8"))
        failures = [f"column '{f.get('column')}' rule {f.get('rule')}" for f in report.get("failures", [])]
        found[path.name.removesuffix(".report.json")] = "; ".join(failures[:4]) or "failed validation"
    return found


def training_days(config: PipelineConfig, used_versions: list[str] | None = None) -> list[int]:
    """Traffic days a run trained on: the batches of the snapshots its MLflow run names
    (``ct.training_versions``, the chosen window), else of the config's whole window."""
    from simulation.full_mode import batch_day

    accepted = pipeline_paths(config).accepted
    snapshots = []
    for data_version in accepted_versions(config):
        if used_versions is not None and data_version not in used_versions:
            continue
        marker = json.loads((accepted / f"{data_version}.json").read_text(encoding="utf-8"))
        snapshots.append([d for name in marker.get("batches", []) if (d := batch_day(name)) is not None])
    return window_days(snapshots, None if used_versions is not None else config.training.window)


def mlflow_facts(client: Any, config: PipelineConfig, airflow_run_id: str) -> dict[str, Any]:
    """The training run of an Airflow run and what followed: decision, version, champion."""
    facts: dict[str, Any] = {"champion": None}
    with contextlib.suppress(Exception):
        facts["champion"] = str(
            client.get_model_version_by_alias(config.registered_model_name, "champion").version
        )
    experiment = client.get_experiment_by_name(registry.experiment_name(config))
    if experiment is None:
        return facts
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`ct.run_id` = '{airflow_run_id}'", max_results=20
    )
    decided = [r for r in runs if "ct.decision" in r.data.tags]
    if not decided:
        return facts
    run = decided[0]
    tags = run.data.tags
    facts.update(trigger=tags.get("ct.trigger"), reason=tags.get("ct.reason"), training_run=run.info.run_id)
    if tags.get("ct.training_versions"):
        facts["training_versions"] = tags["ct.training_versions"].split(",")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run.info.run_id, "evaluation/decision.json", tmp)
            facts["decision"] = json.loads(Path(local).read_text(encoding="utf-8"))
        except Exception:  # noqa: BLE001 - fall back on the tags the evaluate step always sets
            summary = tags.get("ct.decision_reason", "")
            facts["decision"] = {
                "promote": tags["ct.decision"] == "promote",
                "reasons": summary.split(": ", 1)[-1].split("; ") if summary else [],
                "challenger": run.data.metrics.get(f"eval_challenger_{config.metric}"),
                "champion": run.data.metrics.get(f"eval_champion_{config.metric}"),
            }
    versions = client.search_model_versions(
        f"name = '{config.registered_model_name}' and run_id = '{run.info.run_id}'"
    )
    if versions:
        newest = max(versions, key=lambda v: int(v.version))
        facts.update(version=str(newest.version), version_tags=dict(newest.tags))
    return facts


def read_run(
    stack: Stack,
    client: Any,
    config: PipelineConfig,
    *,
    pending: list[str],
    quarantined_before: set[str],
    trigger: str,
    reason: str,
    output: Path,
) -> PipelineRun:
    """What the day's DAG run did, from Airflow's DB, MLflow and the data folders."""
    run_id, state, tasks, seconds = airflow_run_facts(stack.airflow_db, config.dag_id)
    quarantined = {f: why for f, why in quarantine_reports(config).items() if f not in quarantined_before}
    facts = mlflow_facts(client, config, run_id) if run_id else {"champion": None}
    error = ""
    if state != "success" and not quarantined:
        error = "\n".join(output.read_text(encoding="utf-8", errors="replace").splitlines()[-40:])
    return PipelineRun(
        run_id=run_id,
        state=state,
        tasks=tasks,
        pending=pending,
        trigger=facts.get("trigger") or trigger,
        reason=facts.get("reason") or reason,
        seconds=seconds,
        quarantined=quarantined,
        decision=facts.get("decision"),
        version=facts.get("version"),
        version_tags=dict(facts.get("version_tags") or {}),
        champion=facts.get("champion"),
        training_days=training_days(config, facts.get("training_versions")) if facts.get("decision") else [],
        error=error,
    )


@dataclass
class _Gated:
    """The harness's memory of the real pipeline between days."""

    served: int = 0  # the version that answered yesterday's traffic
    models: dict[int, Any] = field(default_factory=dict)  # versions loaded to score a predecessor


def _predecessor_value(
    state: _Gated, config: PipelineConfig, served: int, traffic: pd.DataFrame
) -> float | None:
    """After a new version: the version it replaced, loaded from the registry, on today's traffic."""
    if state.served in (0, served) or served == 0:
        return None
    if state.served not in state.models:
        state.models = {
            state.served: registry.load_model(f"models:/{config.registered_model_name}/{state.served}")
        }
    return score(config, Scored(state.models[state.served], traffic, config.feature_names), traffic)


def run_full(
    scenario: Scenario,
    *,
    workdir: Path,
    out: Path,
    training: dict[str, Any] | None = None,
    model_params: dict[str, Any] | None = None,
) -> tuple[SimulationResult, Path]:
    """Full mode: the gated policy through real Airflow runs, MLflow and the prediction service;
    the baselines (level 0, always deploy, oracle) as library computations on the same stream.

    Writes the report into ``out`` and logs it to the simulation's MLflow server before the
    services stop; returns the result and the report's path.
    """
    import httpx
    from mlflow import MlflowClient
    from threadpoolctl import threadpool_limits

    from include.ct.modeling.pipeline_building import split

    started = time.perf_counter()
    pipelines_dir = workdir / "pipelines"
    config_file = write_pipeline_config(pipelines_dir, training=training, model_params=model_params)
    sim_config = load_pipeline_config(config_file)
    base = load_pipeline_config(BUNDLED_PIPELINES_DIR / f"{SOURCE_PIPELINE}.yaml")
    stream_config = with_params(
        with_training(base, training), model_params
    )  # named churn: datagen's churn generator
    if settings_of(stream_config) != settings_of(sim_config):
        raise RuntimeError("the baselines and the pipeline would train different models")
    baselines = LibraryPolicies(stream_config, scenario, BASELINES)
    records: list[DayRecord] = []
    arriving: dict[int, list[DayBatch]] = {}
    gated = _Gated()
    day_cpus: list[float] = []
    run_info: dict[str, Any] = {
        "pipeline": PIPELINE,
        "airflow": package_version("apache-airflow"),
        "mlflow": package_version("mlflow"),
        "scikit-learn": package_version("scikit-learn"),
        "cpus": os.cpu_count(),
        "omp_threads": 1,
    }
    with running_stack(workdir, pipelines_dir) as stack:
        run_info["setup_seconds"] = round(time.perf_counter() - started, 1)
        log.info("services up in %.0f s (work dir %s)", run_info["setup_seconds"], workdir)
        client = MlflowClient(stack.mlflow_url)
        own_env = {
            k: stack.env[k]
            for k in (
                "MLFLOW_TRACKING_URI",
                "CT_DATA_DIR",
                "CT_PIPELINES_DIR",
                "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR",
            )
        }
        with (
            environ(own_env),
            threadpool_limits(limits=1, user_api="openmp"),
            httpx.Client(base_url=stack.serving_url, timeout=120) as http,
        ):
            for today in stream(stream_config, scenario):
                day_started, day_cpu = time.perf_counter(), cpu_seconds()
                day = today.day
                arriving.setdefault(today.labels_day, []).append(today)
                baseline_records = baselines.step(today)

                # 1. The day's traffic, answered by whatever the service serves now.
                answers, served = serve_traffic(http, sim_config, today.traffic)
                _, holdout = split(sim_config, today.traffic)
                value, holdout_value = (
                    score(sim_config, answers, today.traffic),
                    score(sim_config, answers, holdout),
                )
                predecessor = _predecessor_value(gated, sim_config, served, today.traffic)
                gated.served = served

                # 2. The batches whose labels arrive today land; 3. one real DAG run.
                landed = arriving.pop(day, [])
                for batch in landed:
                    land(sim_config, batch)
                pending = pending_files(sim_config)
                trigger = "new_data" if pending else "schedule"
                arrived = f"batches of days {', '.join(str(b.day) for b in landed)} arrived" if landed else ""
                reason = f"simulation day {day}" + (f": {arrived}" if arrived else ": nothing new")
                quarantined_before = set(quarantine_reports(sim_config))
                logical_date = EPOCH + timedelta(days=day + 1)  # after the day's events
                output = stack.logs / f"day_{day:04d}.log"
                exit_code = stack.run(
                    "airflow-dags-test",
                    [
                        str(VENV_BIN / "airflow"),
                        "dags",
                        "test",
                        sim_config.dag_id,
                        logical_date.isoformat(),
                        "-c",
                        json.dumps({"trigger": trigger, "reason": reason}),
                    ],
                    output,
                    RUN_TIMEOUT_SECONDS,
                )

                # 4. What the run did, as the gated policy's record of the day.
                run = read_run(
                    stack,
                    client,
                    sim_config,
                    pending=pending,
                    quarantined_before=quarantined_before,
                    trigger=trigger,
                    reason=reason,
                    output=output,
                )
                record = pipeline_record(
                    run,
                    day=day,
                    value=value,
                    holdout_value=holdout_value,
                    served_version=served,
                    predecessor_value=predecessor,
                    waiting=[(b.day, due) for due, batches in sorted(arriving.items()) for b in batches],
                    events=today.events,
                )
                if record.outcome == "failed":
                    log.warning(
                        "day %d: the run failed (exit %d, see %s): %s", day, exit_code, output, record.reason
                    )
                records.extend([*baseline_records, record])
                cpu = cpu_seconds() - day_cpu
                day_cpus.append(cpu)
                _log_day(scenario, record, baseline_records, time.perf_counter() - day_started, cpu)
        run_info["cpu_seconds_per_day"] = round(sum(day_cpus) / max(1, len(day_cpus)), 1)
        with contextlib.suppress(OSError):
            run_info["load_average"] = round(os.getloadavg()[0], 1)  # others' work inflates wall time
        ordered = sorted(records, key=lambda r: (r.day, POLICIES.index(r.policy)))
        result = SimulationResult.of(sim_config, scenario, "full", ordered, started)
        result.run_info = run_info
        report = write_report(result, out)
        run_id = log_to_mlflow(result, report_files(report), stack.mlflow_url)
        log.info("wrote %s; logged to the simulation's MLflow (%s, run %s)", report, stack.mlflow_url, run_id)
    return result, report


def report_files(report: Path) -> list[Path]:
    """The report, its JSON and its plots: what goes to MLflow."""
    return [report, report.with_name("simulation.json"), *sorted(report.parent.glob("simulation_*.png"))]


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the DAG runs and what they started):
    a measure of a day's work that does not grow when someone else loads the machine."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _log_day(
    scenario: Scenario, gated: DayRecord, baselines: list[DayRecord], seconds: float, cpu: float
) -> None:
    mark = {"quarantined": "QUARANTINED", "failed": "FAILED"}
    outcome = mark.get(gated.outcome, gated.outcome)
    if gated.outcome in ("promoted", *NOT_PROMOTED):
        outcome += f" {fmt(gated.challenger_value)} vs {fmt(gated.champion_value)}"
    others = " | ".join(
        f"{r.policy} {fmt(r.value)} v{r.served_version}" for r in baselines if r.policy != "oracle"
    )
    oracle = next((r for r in baselines if r.policy == "oracle"), None)
    events = f" [{', '.join(gated.events)}]" if gated.events else ""
    log.info(
        "day %d/%d%s: gated %s v%d -> %s (DAG run %s s) | %s | oracle %s | day took %.0f s (%.0f s CPU)",
        gated.day,
        scenario.days,
        events,
        fmt(gated.value),
        gated.served_version,
        outcome,
        fmt(gated.run_seconds, 0),
        others,
        fmt(oracle.value if oracle else None),
        seconds,
        cpu,
    )


# --- command line ---------------------------------------------------------------------------


def parse_events(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` overrides of the scenario's events (``off`` or ``none`` turns one off)."""
    events: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--event {pair!r}: expected KEY=VALUE, e.g. broken_day=3")
        events[key.strip()] = None if value.strip().lower() in ("off", "none", "") else value.strip()
    return events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--rows-per-day", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--out", default=str(REPO_ROOT / "bench"), help="folder for simulation.md and the plots"
    )
    parser.add_argument("--workdir", help="empty folder for the services' state (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, DBs) afterwards")
    add_training_arguments(parser)
    parser.add_argument("--max-iter", type=int, help="the estimator's max_iter (quicker runs)")
    parser.add_argument(
        "--concept",
        choices=("flip", "label_drift"),
        default="flip",
        help="the concept change: other features drive churn (flip) or the same ones reweighted",
    )
    parser.add_argument(
        "--event",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Scenario field, e.g. broken_day=3, concept_day=4, label_delay_start=off (repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        scenario = Scenario(
            days=args.days,
            rows_per_day=args.rows_per_day,
            seed=args.seed,
            concept_kind=args.concept,
            skew_day=None,  # the skew lives in an offline feature view this pipeline does not have
            **parse_events(args.event),
        )
    except ValueError as exc:
        parser.error(str(exc))
    if args.workdir:
        workdir = Path(args.workdir).resolve()
        if workdir.exists() and any(workdir.iterdir()):
            parser.error(f"--workdir {workdir} is not empty: a simulation needs fresh databases")
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="ct-simulation-"))
    caller_tracking_uri = os.environ.get("MLFLOW_TRACKING_URI")
    params = {"max_iter": args.max_iter} if args.max_iter else None
    _raise_on_sigterm()
    log.info(
        "full-mode simulation: %d days x %d rows, work dir %s", scenario.days, scenario.rows_per_day, workdir
    )
    try:
        result, report = run_full(
            scenario,
            workdir=workdir,
            out=Path(args.out),
            training=training_overrides(args),
            model_params=params,
        )
    except KeyboardInterrupt:
        log.error("interrupted: every service was stopped (logs in %s)", workdir / "logs")
        return 130
    finally:
        if args.keep or args.workdir:
            log.info("work dir kept: %s", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if caller_tracking_uri:
        try:
            run_id = log_to_mlflow(result, report_files(report), caller_tracking_uri)
            log.info("logged to MLflow at %s (run %s)", caller_tracking_uri, run_id)
        except Exception as exc:  # noqa: BLE001 - the report is written; say why MLflow missed it
            log.error("could not log to MLflow at %s: %s", caller_tracking_uri, exc)
    print(f"wrote {report} ({result.seconds:.0f} s)")
    for claim in claims(result):
        mark = {True: "holds", False: "DOES NOT HOLD", None: "count"}[claim.holds]
        print(f"  [{mark}] {claim.statement}: {claim.detail}")
    return 0


if __name__ == "__main__":
    progress_logging(log)
    sys.exit(main())
