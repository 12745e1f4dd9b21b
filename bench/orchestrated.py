"""End-to-end continuous-training latency through a real Airflow deployment (issue 6, items 1, 2, 5).

Starts an MLflow server, the prediction service and Airflow 3 (scheduler with LocalExecutor,
dag-processor, triggerer, api-server; metadata on a throwaway PostgreSQL database) in a temp
dir, with a copy of the bundled churn pipeline named ``bench_churn`` (the bundled ``churn`` is
always loaded too, so the copy needs a name of its own) whose landing zone is watched as shipped
(file system events, the default poll as fallback) without settling time (datagen renames
finished files into place), with no schedule and a gate that promotes every new batch. For each
size and repeat it lands a batch, waits for the asset-triggered run and for the prediction
service to serve the new version, and reads per-task durations, scheduler-to-task latencies and
peak RSS of every task process tree (sampled every second, and reported by each task process as
it ends through the bench-only listener in ``bench/task_rss_plugin.py``, so tasks shorter than a
sample are measured too), and each task process's CPU accounting (user and system seconds, page
faults, involuntary context switches), which the floor records per stage too.
Writes ``bench/results/orchestrated.json``; everything it started is stopped at the end.

    python -m bench.orchestrated --sizes 10000,100000,1000000 --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, Self

import psutil

from bench.measure import BATCH_FORMAT, CPU_FIELDS, REPO_ROOT, summarize, write_result

log = logging.getLogger("bench.orchestrated")

PIPELINE = "bench_churn"
DAG_ID = f"ct_{PIPELINE}"
SOURCE_CONFIG = REPO_ROOT / "include" / "pipelines" / "churn.yaml"
STAGES = ("extract", "validate", "train", "evaluate", "register", "deploy")
MIB = 2**20
SAMPLE_SECONDS = 1.0
IDLE_SECONDS = 20.0
# Where bench/task_rss_plugin.py (loaded by the bench's Airflow only) appends each task's peak.
TASK_RSS_LOG_ENV = "CT_BENCH_TASK_RSS_LOG"
# Replacements on the bundled churn.yaml: own name and landing zone (watched at the shipped
# poll_seconds: file system events wake the watcher; no settling, datagen renames into place),
# only data arrival starts runs, train on the new batch alone, and a gate every fresh model passes.
CONFIG_REPLACEMENTS = {
    "\nname: churn\n": f"\nname: {PIPELINE}\n",
    "  path: landing/churn\n": f"  path: landing/{PIPELINE}\n  settle_seconds: 0\n",
    'schedule: "@daily"': "schedule: null",
    "threshold: 0.7 ": "threshold: 0.5 ",
    "min_improvement: 0.0 ": "min_improvement: -1.0 ",
    "max_slice_drop: 0.05 ": "max_slice_drop: 1.0 ",
    "window: 30 ": "window: 1 ",
    "delay_seconds: 20 ": "delay_seconds: 2 ",
}
# Settings of the caller that must not reach the benchmark's processes.
FOREIGN_ENV_PREFIXES = ("AIRFLOW_", "AIRFLOW__", "CT_", "MLFLOW_", "_AIRFLOW")
TASK_TITLE = re.compile(r"airflow worker -- ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


# --- peak RSS of task process trees -------------------------------------------------------------


class ProcInfo(NamedTuple):
    """One process as sampled: enough to rebuild the process tree."""

    pid: int
    ppid: int
    cmdline: str
    rss: int  # peak resident bytes so far (a tree's total: the sum of its members' peaks, an upper bound)


def task_tree_rss(processes: Iterable[ProcInfo]) -> dict[str, int]:
    """Task instance id -> summed RSS of its task process and all its descendants."""
    procs = list(processes)
    children: dict[int, list[ProcInfo]] = {}
    for proc in procs:
        children.setdefault(proc.ppid, []).append(proc)
    totals: dict[str, int] = {}
    for proc in procs:
        match = TASK_TITLE.search(proc.cmdline)
        if not match:
            continue
        total, stack, seen = 0, [proc], set()
        while stack:
            node = stack.pop()
            if node.pid in seen:
                continue
            seen.add(node.pid)
            total += node.rss
            stack.extend(children.get(node.pid, []))
        totals[match.group(1)] = totals.get(match.group(1), 0) + total
    return totals


def _task_reports(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The lines the task processes appended (``bench/task_rss_plugin.py``), unreadable ones skipped."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            yield entry


def read_peaks(path: str | os.PathLike[str]) -> dict[str, int]:
    """Task instance id -> peak bytes reported so far (a retried task keeps its highest)."""
    peaks: dict[str, int] = {}
    for entry in _task_reports(path):
        ti_id, peak = str(entry.get("ti_id")), int(entry.get("peak_bytes") or 0)
        peaks[ti_id] = max(peaks.get(ti_id, 0), peak)
    return peaks


def read_task_cpu(path: str | os.PathLike[str]) -> dict[str, dict[str, float]]:
    """Task instance id -> its process's CPU accounting (``bench.measure.CPU_FIELDS``), as its
    last attempt reported it."""
    return {
        str(entry.get("ti_id")): {key: float(entry["cpu"][key]) for key in CPU_FIELDS}
        for entry in _task_reports(path)
        if isinstance(entry.get("cpu"), dict) and all(key in entry["cpu"] for key in CPU_FIELDS)
    }


def peak_rss_bytes(pid: int) -> int | None:
    """A process's peak resident memory so far (VmHWM), None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def snapshot_processes() -> list[ProcInfo]:
    """Every process on the machine with its peak RSS so far (vanished ones left out).

    Peaks (VmHWM), not current RSS: a sample every second then misses no spike of a live
    process, and the sampler costs ~2% of a core instead of the ~10% that sampling current RSS
    five times a second took from the tasks it measured.
    """
    found = []
    for process in psutil.process_iter(["pid", "ppid", "cmdline"]):
        info = process.info
        peak = peak_rss_bytes(info["pid"])
        if peak is None:
            continue
        found.append(ProcInfo(info["pid"], info["ppid"] or 0, " ".join(info["cmdline"] or []), peak))
    return found


@dataclass
class _Poller:
    """Calls ``poll`` every ``interval`` s in a daemon thread while used as a context manager."""

    interval: float = SAMPLE_SECONDS
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def poll(self) -> None:
        raise NotImplementedError

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._loop, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


@dataclass
class RssSampler(_Poller):
    """Samples task process trees in a thread; keeps each one's peak RSS."""

    peaks: dict[str, int] = field(default_factory=dict)
    first_seen: dict[str, float] = field(default_factory=dict)

    def record(self, totals: dict[str, int], now: float) -> None:
        """Fold one sample into the peaks."""
        for ti_id in totals:
            self.first_seen.setdefault(ti_id, now)
        self.fold_peaks(totals)

    def fold_peaks(self, peaks: dict[str, int]) -> None:
        """Fold in peaks the task processes reported themselves (no sighting time)."""
        for ti_id, rss in peaks.items():
            self.peaks[ti_id] = max(self.peaks.get(ti_id, 0), rss)

    def poll(self) -> None:
        self.record(task_tree_rss(snapshot_processes()), time.time())


# --- what the prediction service serves ---------------------------------------------------------


def deploy_started(logs: Path, seen_runs: set[str]) -> bool:
    """Whether a run not in ``seen_runs`` has started its deploy task: its task log folder exists
    (the supervisor creates it before the task runs). A directory listing, no database query."""
    try:
        entries = list(os.scandir(logs))
    except FileNotFoundError:
        return False
    return any(
        entry.name.startswith("run_id=")
        and entry.name.removeprefix("run_id=") not in seen_runs
        and os.path.isdir(os.path.join(entry.path, "task_id=deploy"))
        for entry in entries
    )


@dataclass(kw_only=True)
class ServingWatcher(_Poller):
    """Polls ``GET /v1/models/<name>`` in a thread and records when each version first answered.

    Only once ``armed()`` has returned true (it is checked every ``interval`` until then): a new
    version can be served only after the deploy task moves the alias, and requests earlier would
    take CPU from the tasks being measured, which the floor's tasks do not share.
    """

    url: str
    interval: float = 0.1
    armed: Callable[[], bool] = lambda: True
    first_served: dict[str, float] = field(default_factory=dict)
    requests: int = 0
    _is_armed: bool = False

    def poll(self) -> None:
        if not self._is_armed:
            if not self.armed():
                return
            self._is_armed = True
        self.requests += 1
        try:
            with urllib.request.urlopen(self.url, timeout=5) as response:
                version = json.loads(response.read()).get("version")
            if version is not None:
                self.first_served.setdefault(str(version), time.time())
        except (OSError, ValueError):
            pass

    def wait_for(self, version: str, timeout: float) -> float | None:
        """When ``version`` first answered, waiting up to ``timeout`` s; None if it never did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if version in self.first_served:
                return self.first_served[version]
            time.sleep(0.1)
        return None


# --- per-run facts from the metadata DB ---------------------------------------------------------


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    return (later - earlier).total_seconds() if later is not None and earlier is not None else None


def execute_seconds(log_lines: Iterable[str]) -> float | None:
    """Seconds the operator's own ``execute`` took, from an Airflow 3 JSON task log: the end of
    the "Pre Execute" group (startup, DAG parse) to the start of "Post Execute" (XCom push)."""
    started: datetime | None = None
    for line in log_lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict) or "timestamp" not in event:
            continue
        at = datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00"))
        if event.get("event") == "::endgroup::" and started is None:
            started = at
        elif event.get("event") == "::group::Post Execute" and started is not None:
            return (at - started).total_seconds()
    return None


def task_facts(
    rows: Iterable[tuple[Any, ...]],
    sampler: RssSampler,
    executes: dict[str, float | None] | None = None,
    cpu: dict[str, dict[str, float]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per task: duration, scheduler-to-task latencies, own execute time, peak RSS and CPU
    accounting, from task_instance rows (task_id, id, state, try_number, scheduled_dttm,
    queued_dttm, start, end)."""
    facts: dict[str, dict[str, Any]] = {}
    for task_id, ti_id, state, try_number, scheduled, queued, start, end in rows:
        used = (cpu or {}).get(str(ti_id), {})
        peak = sampler.peaks.get(str(ti_id))
        seen = sampler.first_seen.get(str(ti_id))
        seconds = _seconds(end, start)
        execute = (executes or {}).get(str(task_id))
        facts[str(task_id)] = {
            "ti_id": str(ti_id),
            "state": state,
            "try_number": try_number,
            "scheduled": scheduled.isoformat() if scheduled else None,
            "start": start.isoformat() if start else None,
            "end": end.isoformat() if end else None,
            "seconds": seconds,
            "execute_s": execute,
            # task start to end, outside the operator's execute: process start-up, parse, XCom
            "outside_execute_s": seconds - execute if seconds is not None and execute is not None else None,
            # scheduled: dependencies met; queued: handed to the executor; start: task process running
            "scheduler_to_task_s": _seconds(start, scheduled or queued),
            "scheduled_to_queued_s": _seconds(queued, scheduled),
            "queued_to_start_s": _seconds(start, queued),
            "process_seen_to_start_s": (
                start.timestamp() - seen if start is not None and seen is not None else None
            ),
            "peak_rss_mib": peak / MIB if peak is not None else None,
            **{key: used.get(key) for key in CPU_FIELDS},
        }
    return facts


def run_overhead(
    arrival: float, served: float | None, tasks: dict[str, dict[str, Any]], run: dict[str, Any]
) -> dict[str, Any]:
    """Where the time between arrival and serving went, outside the tasks' own durations."""
    durations = [t["seconds"] for t in tasks.values() if t["seconds"] is not None]
    total = sum(durations)
    spans = sorted(
        (datetime.fromisoformat(t["start"]), datetime.fromisoformat(t["end"]))
        for t in tasks.values()
        if t["start"] and t["end"]
    )
    gaps = sum(max(0.0, (b[0] - a[1]).total_seconds()) for a, b in itertools.pairwise(spans))
    # of those gaps, the scheduler noticing an upstream finished: its end to the next one scheduled
    edges = sorted(
        (datetime.fromisoformat(t["start"]), datetime.fromisoformat(t["scheduled"]))
        for t in tasks.values()
        if t["start"] and t.get("scheduled")
    )
    ends = [end for _, end in spans]
    noticed = sum(
        max(0.0, (scheduled - ends[i]).total_seconds()) for i, (_, scheduled) in enumerate(edges[1:])
    )
    arrival_dt = datetime.fromtimestamp(arrival, UTC)
    first_start = spans[0][0] if spans else None
    last_end = spans[-1][1] if spans else None
    deploy_end = last_end.timestamp() if last_end is not None else None
    return {
        "tasks_total_s": total,
        "overhead_s": (served - arrival - total) if served is not None else None,
        # to the end of the last task (deploy smoke-tests after the service already serves)
        "arrival_to_last_task_end_s": deploy_end - arrival if deploy_end is not None else None,
        "orchestration_s": deploy_end - arrival - total if deploy_end is not None else None,
        "arrival_to_event_s": _seconds(run.get("event_at"), arrival_dt),
        "event_to_run_s": _seconds(run.get("run_created"), run.get("event_at")),
        "run_to_first_task_s": _seconds(first_start, run.get("run_created")),
        "between_tasks_s": gaps,
        "upstream_end_to_scheduled_s": noticed,
        "last_task_to_serving_s": (served - last_end.timestamp()) if served and last_end else None,
    }


# --- aggregation into the result's shape --------------------------------------------------------


def _summary(values: Iterable[float | None]) -> dict[str, Any] | None:
    kept = [float(v) for v in values if v is not None]
    return summarize(kept) if kept else None


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per size: summaries of the successful runs' figures, per stage, plus every raw run."""
    sizes: dict[str, Any] = {}
    for size in sorted({int(run["rows"]) for run in runs}):
        mine = [run for run in runs if int(run["rows"]) == size]
        good = [run for run in mine if run.get("arrival_to_serving_s") is not None]
        stages: dict[str, Any] = {}
        for stage in STAGES:
            facts = [run["tasks"][stage] for run in good if stage in run.get("tasks", {})]
            if not facts:
                continue
            stages[stage] = {
                key: _summary(fact.get(key) for fact in facts)
                for key in (
                    "seconds",
                    "peak_rss_mib",
                    "scheduler_to_task_s",
                    "queued_to_start_s",
                    "execute_s",
                    "outside_execute_s",
                    *CPU_FIELDS,
                )
            }
        sizes[str(size)] = {
            "successful_runs": len(good),
            "failed_runs": len(mine) - len(good),
            "arrival_to_serving_s": _summary(run["arrival_to_serving_s"] for run in good),
            "tasks_total_s": _summary(run["overhead"]["tasks_total_s"] for run in good),
            "overhead_s": _summary(run["overhead"]["overhead_s"] for run in good),
            "overhead_ratio": _summary(
                run["overhead"]["overhead_s"] / run["overhead"]["tasks_total_s"]
                for run in good
                if run["overhead"]["tasks_total_s"]
            ),
            "overhead_parts": {
                key: _summary(run["overhead"].get(key) for run in good)
                for key in (
                    "orchestration_s",
                    "arrival_to_event_s",
                    "event_to_run_s",
                    "run_to_first_task_s",
                    "between_tasks_s",
                    "upstream_end_to_scheduled_s",
                    "last_task_to_serving_s",
                )
            },
            "stages": stages,
            "runs": mine,
        }
    return {"pipeline": "churn", "dag_id": DAG_ID, "sizes": sizes}


# --- the stack ----------------------------------------------------------------------------------


def bench_env(workdir: Path) -> dict[str, str]:
    """This process's environment minus foreign Airflow/MLflow/CT settings, plus the bench's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV_PREFIXES)}
    env.update(
        {
            "PYTHONPATH": str(REPO_ROOT),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(workdir / "plugins"),
            TASK_RSS_LOG_ENV: str(workdir / "task_rss.jsonl"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "CT_DATA_DIR": str(workdir / "data"),
            "CT_PIPELINES_DIR": str(workdir / "pipelines"),
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "GX_ANALYTICS_ENABLED": "false",
        }
    )
    return env


def bench_plugins_folder(workdir: Path) -> Path:
    """The shipped plugins plus the bench's task RSS listener, linked into one folder."""
    folder = workdir / "plugins"
    folder.mkdir(parents=True, exist_ok=True)
    for entry in (*(REPO_ROOT / "plugins").iterdir(), REPO_ROOT / "bench" / "task_rss_plugin.py"):
        if entry.name != "__pycache__" and not (folder / entry.name).exists():
            (folder / entry.name).symlink_to(entry)
    return folder


@dataclass
class Bench:
    """The running services the measurements need."""

    stack: Any  # testbed.airflow_stack.AirflowStack
    serving_url: str
    sampler: RssSampler


@contextlib.contextmanager
def running_bench(workdir: Path) -> Iterator[Bench]:
    """MLflow, the prediction service and Airflow, with ct_bench_churn unpaused and watching.

    Inside the block ``os.environ`` is the bench's (``bench_env``, as the services got it);
    the caller's environment is back once the block ends, however it ends.
    """
    from testbed.airflow_stack import airflow_stack
    from testbed.services import copy_config, start_mlflow_server, start_prediction_service, stop
    from testbed.services import throwaway_database as database

    missing = [old for old in CONFIG_REPLACEMENTS if old not in SOURCE_CONFIG.read_text()]
    if missing:
        raise RuntimeError(f"{SOURCE_CONFIG} changed: cannot set up the bench pipeline ({missing} not found)")
    copy_config(SOURCE_CONFIG, workdir / "pipelines", f"{PIPELINE}.yaml", **CONFIG_REPLACEMENTS)
    bench_plugins_folder(workdir)
    env = bench_env(workdir)  # before clearing: it starts from this environment (PATH, HOME)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(_replace_environ, dict(os.environ))  # runs last
        _replace_environ(env)
        mlflow = start_mlflow_server(workdir / "mlflow")
        cleanup.callback(_stop_group, mlflow.process, stop)
        os.environ["MLFLOW_TRACKING_URI"] = mlflow.url
        service = start_prediction_service(
            workdir / "serving", {"CT_SERVING_PIPELINES": PIPELINE, "CT_SERVING_POLL_SECONDS": "5"}
        )
        cleanup.callback(stop, service.process)
        log.info("MLflow at %s, prediction service at %s", mlflow.url, service.url)
        metadata = cleanup.enter_context(database())
        extra = {"CT_SERVING_URL": service.url, "CT_SERVING_RELOAD_TOKEN": service.token}
        stack = cleanup.enter_context(airflow_stack(metadata, workdir / "airflow", extra))
        log.info("Airflow api-server at %s", stack.env["AIRFLOW__API__PORT"])
        stack.wait_for_dag(DAG_ID)
        stack.cli("dags", "unpause", DAG_ID)
        stack.wait_for_watcher(DAG_ID)
        log.info("%s unpaused and its asset watcher running", DAG_ID)
        sampler = cleanup.enter_context(RssSampler())
        yield Bench(stack, f"{service.url}/v1/models/{PIPELINE}", sampler)


def _replace_environ(env: dict[str, str]) -> None:
    os.environ.clear()
    os.environ.update(env)


def _stop_group(process: Any, stop: Any) -> None:
    """Stop a process that leads its own process group, and whatever it left in the group."""
    stop(process)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def idle_cpu_percent(processes: dict[str, Any], seconds: float) -> dict[str, float]:
    """CPU of each component's process tree while nothing runs, in % of one core: the standing
    cost of its polling settings (scheduler idle sleep, watcher poll, DAG refresh)."""

    def cpu_seconds(pid: int) -> float:
        try:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0.0
        for proc in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    before = {name: cpu_seconds(process.pid) for name, process in processes.items()}
    time.sleep(seconds)
    used = {name: cpu_seconds(process.pid) - before[name] for name, process in processes.items()}
    return {name: round(cpu / seconds * 100, 1) for name, cpu in used.items()}


# --- one measured run ---------------------------------------------------------------------------

TASK_ROWS_SQL = (
    "SELECT task_id, id, state, try_number, scheduled_dttm, queued_dttm, start_date, end_date "
    "FROM task_instance WHERE dag_id = %s AND run_id = %s"
)


def measure_run(bench: Bench, rows: int, day: int, repeat: int) -> dict[str, Any]:
    """Land one batch of ``rows`` rows, follow its run to the served model, return the facts."""
    from include.ct.config import find_pipeline_config
    from tools import datagen

    stack = bench.stack
    config = find_pipeline_config(PIPELINE)
    seen = {run_id for run_id, _, _ in stack.runs(DAG_ID)}
    # datagen generates the churn stream only for a config named churn; it lands in our zone.
    generator = config.model_copy(update={"name": "churn"})
    logs = Path(stack.home) / "logs" / f"dag_id={DAG_ID}"
    armed = functools.partial(deploy_started, logs, seen)
    with ServingWatcher(url=bench.serving_url, armed=armed) as watcher:
        written = time.time()
        batch = datagen.write_batch(generator, rows=rows, day=day, fmt=BATCH_FORMAT)
        arrival = time.time()
        log.info("%d rows (repeat %d): %s written in %.1f s", rows, repeat, batch.name, arrival - written)
        timeout = 900 + rows / 1000
        run_id, state = _wait_for_new_run(stack, seen, timeout)
        register = stack.xcom(DAG_ID, run_id, "register") or {}
        version = str(register["version"]) if register.get("version") is not None else None
        served = watcher.wait_for(version, 60) if version and state == "success" else None
    log.info("serving polled %d times", watcher.requests)
    executes = {}
    for stage in STAGES:
        task_log = _last_attempt_log(stack, run_id, stage)
        executes[stage] = execute_seconds(task_log.read_text().splitlines()) if task_log else None
    bench.sampler.fold_peaks(read_peaks(os.environ[TASK_RSS_LOG_ENV]))
    cpu = read_task_cpu(os.environ[TASK_RSS_LOG_ENV])
    tasks = task_facts(stack.query(TASK_ROWS_SQL, DAG_ID, run_id), bench.sampler, executes, cpu)
    run_row = stack.query(
        "SELECT r.queued_at, r.start_date, r.end_date, r.run_after, "
        "(SELECT max(e.timestamp) FROM asset_event e JOIN dagrun_asset_event dre "
        " ON dre.event_id = e.id WHERE dre.dag_run_id = r.id) "
        "FROM dag_run r WHERE r.dag_id = %s AND r.run_id = %s",
        DAG_ID,
        run_id,
    )[0]
    facts = {"run_created": run_row[0], "event_at": run_row[4]}
    record: dict[str, Any] = {
        "rows": rows,
        "repeat": repeat,
        "batch": batch.name,
        "run_id": run_id,
        "state": state,
        "arrived_at": datetime.fromtimestamp(arrival, UTC).isoformat(),
        "served_version": version if served is not None else None,
        "arrival_to_serving_s": served - arrival if served is not None else None,
        "run_duration_s": _seconds(run_row[2], run_row[1]),
        "tasks": tasks,
        "overhead": run_overhead(arrival, served, tasks, facts),
    }
    if served is None:
        record["failure"] = _failure(stack, run_id, tasks)
    _log_run(record)
    return record


def _wait_for_new_run(stack: Any, seen: set[str], timeout: float) -> tuple[str, str]:
    """The first run not in ``seen``, once it has finished: (run_id, state).

    Checked every 2 s: each check is a new database connection (a PostgreSQL backend forked),
    and a run's end is read from the database afterwards, so a later look changes no figure.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run_id, state, _ in stack.runs(DAG_ID):
            if run_id not in seen and state in ("success", "failed"):
                return run_id, state
        stack._check_alive()
        time.sleep(2)
    raise TimeoutError(f"no finished run of {DAG_ID} within {timeout} s\n{stack.logs()}")


def _last_attempt_log(stack: Any, run_id: str, task_id: str) -> Path | None:
    """The log file of the last attempt of one task of one run, if there is one."""
    folder = Path(stack.home) / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={task_id}"
    found = sorted(folder.glob("attempt=*.log"), key=lambda path: int(re.sub(r"\D", "", path.name) or 0))
    return found[-1] if found else None


def _failure(stack: Any, run_id: str, tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What went wrong in a run that served nothing new: task states and the failed tasks' log tails."""
    logs: dict[str, str] = {}
    for task_id, fact in tasks.items():
        if fact["state"] not in ("success", "skipped"):
            task_log = _last_attempt_log(stack, run_id, task_id)
            logs[task_id] = task_log.read_text()[-4000:] if task_log else "(no log)"
    return {"states": {task: fact["state"] for task, fact in tasks.items()}, "logs": logs}


def _fmt(value: float | None, unit: str = "s") -> str:
    return "-" if value is None else f"{value:.2f}{unit}"


def _log_run(record: dict[str, Any]) -> None:
    for stage in STAGES:
        fact = record["tasks"].get(stage)
        if fact is None:
            continue
        log.info(
            "  %-8s %-8s %8s (execute %7s)  sched->task %7s  peak %9s",
            stage,
            fact["state"],
            _fmt(fact["seconds"]),
            _fmt(fact["execute_s"]),
            _fmt(fact["scheduler_to_task_s"]),
            _fmt(fact["peak_rss_mib"], " MiB"),
        )
    overhead = record["overhead"]
    log.info(
        "%d rows (repeat %d): run %s %s, arrival->serving %s (tasks %s, overhead %s)",
        record["rows"],
        record["repeat"],
        record["run_id"],
        record["state"],
        _fmt(record["arrival_to_serving_s"]),
        _fmt(overhead["tasks_total_s"]),
        _fmt(overhead["overhead_s"]),
    )


# --- entry point --------------------------------------------------------------------------------


def _raise_on_sigterm() -> None:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="rows per batch, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--warmup-rows", type=int, default=2000, help="rows of an unrecorded first run (0: none)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs) afterwards")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    _raise_on_sigterm()
    workdir = Path(tempfile.mkdtemp(prefix="ct-bench-orchestrated-"))
    log.info("work dir %s", workdir)
    runs: list[dict[str, Any]] = []
    idle: dict[str, float] = {}
    try:
        with running_bench(workdir) as bench:
            day = 0
            if args.warmup_rows:
                # Unrecorded: warms the LocalExecutor workers' imports and leaves a champion, so
                # every measured run has the same shape (evaluate scores a champion too).
                day += 1
                log.info("warm-up run (not recorded)")
                measure_run(bench, args.warmup_rows, day, 0)
            idle = idle_cpu_percent(bench.stack.processes, IDLE_SECONDS)
            log.info("idle CPU, %% of a core: %s", idle)
            for rows in sizes:
                for repeat in range(1, args.repeats + 1):
                    day += 1
                    runs.append(measure_run(bench, rows, day, repeat))
    finally:
        if runs:
            payload = {"sampling_s": SAMPLE_SECONDS, "idle_cpu_percent": idle, **aggregate(runs)}
            path = write_result("orchestrated", payload)
            log.info("wrote %s", path)
        if not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if all(run.get("arrival_to_serving_s") is not None for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
