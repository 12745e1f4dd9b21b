"""The CT steps without an orchestrator: the floor (one process) and scale (one process per stage).

    python -m bench.pipeline floor [--sizes 10000,100000,1000000] [--repeats 3]
    python -m bench.pipeline scale [--sizes 1000000,5000000,10000000] [--repeats 3]

Both call the library exactly as the Airflow operators do (extract, validate, train, evaluate,
register, deploy) against a real MLflow server and prediction service started on free local
ports in a temp dir, and merge their figures into ``bench/results/pipeline.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.measure import (
    BATCH_FORMAT,
    CPU_FIELDS,
    REPO_ROOT,
    RESULTS_DIR,
    cpu_usage,
    cpu_used_since,
    summarize,
    write_result,
)
from bench.serving import stop, wait_for
from testbed.services import MLFLOW_SERVER_ENV, free_port, mlflow_server_command

STAGES = ("extract", "validate", "train", "evaluate", "register", "deploy")
VENV_BIN = Path(sys.executable).parent
# The gate's margin for the benchmark runs, as the DAG's ``min_improvement`` param can set it:
# every repeat is promoted (unless a slice guard objects), so register and deploy are timed too.
BENCH_MARGIN = -1.0
PEAK_KEY = "_stage_peak_rss_mib"


# --- pure parts -------------------------------------------------------------------------------


def growth_exponent(seconds_by_rows: dict[int, float]) -> float | None:
    """Least-squares slope of log(seconds) against log(rows): 1.0 is linear growth."""
    points = [
        (math.log(rows), math.log(sec)) for rows, sec in seconds_by_rows.items() if sec > 0 and rows > 0
    ]
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def growth_exponents(sizes: dict[str, Any]) -> dict[str, float | None]:
    """Growth exponent of the total and of each stage over the scale sizes measured."""
    points: dict[str, dict[int, float]] = {}
    for rows, figure in sizes.items():
        points.setdefault("total", {})[int(rows)] = figure["total_s"]["median"]
        for stage, values in figure["stages"].items():
            points.setdefault(stage, {})[int(rows)] = values["seconds"]["median"]
    return {stage: growth_exponent(by_rows) for stage, by_rows in points.items()}


def merge_results(existing: dict[str, Any], section: str, figures: dict[str, Any]) -> dict[str, Any]:
    """``existing`` results with ``figures`` merged into ``section`` size by size (a size measured
    again replaces its old figures; other sizes and sections are kept; no machine key)."""
    merged = {key: value for key, value in existing.items() if key != "machine"}
    sizes = {**(merged.get(section) or {}).get("sizes", {}), **figures.get("sizes", {})}
    merged[section] = {**figures, "sizes": dict(sorted(sizes.items(), key=lambda item: int(item[0])))}
    if "growth_exponent" in figures:
        merged[section]["growth_exponent"] = growth_exponents(merged[section]["sizes"])
    return merged


def read_existing(results_dir: Path = RESULTS_DIR) -> dict[str, Any]:
    """The current ``pipeline.json``, or nothing."""
    path = results_dir / "pipeline.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def own_peak_rss_mib() -> float | None:
    """This process's own high-water RSS in MiB (VmHWM: unlike ru_maxrss, not inherited at fork)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the local stack ------------------------------------------------------------------------


@contextlib.contextmanager
def local_stack(work: Path, pipeline: str, pipelines_dir: Path | None = None) -> Iterator[dict[str, str]]:
    """MLflow server and prediction service on free local ports; yields the environment to use."""
    mlflow_port, serving_port = free_port(), free_port()
    token = secrets.token_urlsafe(16)
    env = {
        "CT_DATA_DIR": str(work / "data"),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "GX_ANALYTICS_ENABLED": "false",
        "CT_CODE_VERSION": "bench",
        "CT_SERVING_URL": f"http://127.0.0.1:{serving_port}",
        "CT_SERVING_RELOAD_TOKEN": token,
        "PYTHONPATH": str(REPO_ROOT),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    if pipelines_dir is not None:
        env["CT_PIPELINES_DIR"] = str(pipelines_dir)
    os.environ.update(env)
    if pipelines_dir is None:
        os.environ.pop("CT_PIPELINES_DIR", None)
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(
            subprocess.Popen(
                mlflow_server_command(work, mlflow_port),
                env={**os.environ, **MLFLOW_SERVER_ENV},
                stdout=(logs / "mlflow.log").open("wb"),
                stderr=subprocess.STDOUT,
                cwd=work,
            )
        )
        wait_for(f"http://127.0.0.1:{mlflow_port}/health", processes[0], timeout=300)
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "include.ct_serving", "serve"],
                env={
                    **os.environ,
                    "CT_SERVING_HOST": "127.0.0.1",
                    "CT_SERVING_PORT": str(serving_port),
                    "CT_SERVING_PIPELINES": pipeline,
                    "CT_SERVING_POLL_SECONDS": "0",
                },
                stdout=(logs / "serving.log").open("wb"),
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )
        )
        wait_for(f"http://127.0.0.1:{serving_port}/health", processes[1], timeout=300)
        yield env
    finally:
        for process in reversed(processes):
            stop(process)


# --- the stages, as the operators call them -------------------------------------------------


def run_stage(stage: str, pipeline: str, state: dict[str, Any]) -> dict[str, Any]:
    """Run one CT stage of ``pipeline`` as its operator does; returns ``state`` with its XCom added."""
    from include.ct.config import find_pipeline_config
    from include.ct.registry.registry import Lineage, code_version

    config = find_pipeline_config(pipeline)
    run_id = state["run_id"]
    if stage == "extract":
        from include.ct.data.extract import extract

        return {**state, "snapshot": extract(config).to_dict()}
    if stage == "validate":
        from include.ct.data.extract import Snapshot
        from include.ct.data.validate import validate_snapshot
        from include.ct.monitoring.drift import snapshot_value_skew

        snapshot = Snapshot.from_dict(state["snapshot"])
        outcome = validate_snapshot(config, snapshot)
        skew = snapshot_value_skew(config, snapshot)
        return {**state, "validated": {"success": outcome.success, "drifted": skew["drifted"]}}
    lineage = Lineage(
        pipeline=config.name,
        dag_id=config.dag_id,
        run_id=run_id,
        data_version=state["snapshot"]["data_version"],
        code_version=code_version(),
        trigger="bench",
        reason="benchmark",
    )
    if stage == "train":
        from include.ct.steps import run_step

        return {**state, "trained": run_step("train", config, {"lineage": asdict(lineage)})}
    trained = state["trained"]
    if stage == "evaluate":
        from include.ct.steps import run_step

        request = {
            "run_id": trained["run_id"],
            "test_path": trained["test_path"],
            "min_improvement": BENCH_MARGIN,
        }
        return {**state, "decision": run_step("evaluate", config, request)}
    if not state["decision"]["promote"]:
        return state  # the operators skip register and deploy when the gate rejects
    if stage == "register":
        from include.ct.registry.deploy import register_candidate

        lineage = Lineage(**{**asdict(lineage), "data_version": trained["training_data_version"]})
        candidate = register_candidate(
            config,
            trained["run_id"],
            trained["test_path"],
            decision=state["decision"]["summary"],
            lineage=lineage,
        )
        return {**state, "registered": candidate.to_dict()}
    if stage == "deploy":
        from include.ct.registry.deploy import ServiceClient, deploy_version

        service = ServiceClient.from_env()
        try:
            result = deploy_version(
                config,
                str(state["registered"]["version"]),
                trained["test_path"],
                reason=state["decision"]["summary"],
                service=service,
            )
        finally:
            if service is not None:
                service.close()
        return {**state, "deployed": result.to_dict()}
    raise ValueError(f"unknown stage {stage!r}")


# --- floor: one process ---------------------------------------------------------------------


def floor(sizes: list[int], repeats: int) -> dict[str, Any]:
    """The churn pipeline's stages called in this process, fresh data each repeat."""
    from include.ct.config import find_pipeline_config
    from tools import datagen

    figures: dict[str, Any] = {"pipeline": "churn", "margin": BENCH_MARGIN, "sizes": {}}
    for rows in sizes:
        work = Path(tempfile.mkdtemp(prefix="ct-bench-floor-"))
        pipelines = work / "pipelines"
        pipelines.mkdir()
        # window 1: every repeat trains on its own fresh batch of exactly `rows` rows
        source = (REPO_ROOT / "include" / "pipelines" / "churn.yaml").read_text()
        (pipelines / "churn_floor.yaml").write_text(
            source.replace("name: churn\n", "name: churn_floor\n").replace("window: 30", "window: 1")
        )
        totals: list[float] = []
        stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
        cpu: dict[str, list[dict[str, float]]] = {stage: [] for stage in STAGES}
        peaks: list[float] = []
        try:
            with local_stack(work, "churn_floor", pipelines):
                churn = find_pipeline_config("churn")  # writes to landing/churn, which churn_floor reads
                for repeat in range(repeats):
                    datagen.write_batch(churn, day=repeat + 1, rows=rows, seed=repeat, fmt=BATCH_FORMAT)
                    state: dict[str, Any] = {"run_id": f"bench_{rows}_{repeat}"}
                    started = time.perf_counter()
                    for stage in STAGES:
                        began, usage = time.perf_counter(), cpu_usage()
                        state = run_stage(stage, "churn_floor", state)
                        if stage in ("register", "deploy") and not state["decision"]["promote"]:
                            continue
                        stages[stage].append(time.perf_counter() - began)
                        cpu[stage].append(cpu_used_since(usage))
                    totals.append(time.perf_counter() - started)
                    peaks.append(peak_rss_mib())
                    print(
                        f"floor {rows} #{repeat}: {totals[-1]:.1f} s, {state['decision']['summary']}",
                        flush=True,
                    )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        figures["sizes"][str(rows)] = {
            "total_s": summarize(totals),
            "stages": {stage: summarize(values) for stage, values in stages.items() if values},
            # the same accounting each task process reports (bench/task_rss_plugin.py)
            "cpu": {
                stage: {key: summarize([used[key] for used in runs]) for key in CPU_FIELDS}
                for stage, runs in cpu.items()
                if runs
            },
            "peak_rss_mib": summarize(peaks),
        }
    return figures


# --- scale: one process per stage -----------------------------------------------------------


def run_stage_process(stage: str, pipeline: str, state_path: Path, log_path: Path) -> tuple[float, float]:
    """Run one stage in its own process; (seconds, that process's peak RSS in MiB)."""
    started = time.perf_counter()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.pipeline",
                "stage",
                stage,
                "--pipeline",
                pipeline,
                "--state",
                str(state_path),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"stage {stage} failed ({process.returncode}): see {log_path}")
    # ru_maxrss of a child starts at the parent's RSS when it forked; the child's own VmHWM does not
    state = json.loads(state_path.read_text())
    peak = state.pop(PEAK_KEY, None)
    state_path.write_text(json.dumps(state))
    return seconds, peak if peak is not None else usage.ru_maxrss / 1024


def scale(sizes: list[int], repeats: int) -> dict[str, Any]:
    """The wide workload at each size, every stage in its own process."""
    from bench import workload

    figures: dict[str, Any] = {"features": len(workload.pipeline_config()["features"]), "sizes": {}}
    for rows in sizes:
        work = Path(tempfile.mkdtemp(prefix="ct-bench-scale-"))
        pipelines = work / "pipelines"
        workload.write_config(pipelines)
        totals: list[float] = []
        seconds: dict[str, list[float]] = {stage: [] for stage in STAGES}
        peaks: dict[str, list[float]] = {stage: [] for stage in STAGES}
        try:
            with local_stack(work, workload.NAME, pipelines) as env:
                landing = Path(env["CT_DATA_DIR"]) / "landing" / workload.NAME
                for repeat in range(repeats):
                    workload.write_batch(landing, rows, seed=repeat + 1, name=f"batch_{repeat:04d}")
                    state_path = work / f"state_{repeat}.json"
                    state_path.write_text(json.dumps({"run_id": f"bench_{rows}_{repeat}"}))
                    total = 0.0
                    for stage in STAGES:
                        spent, peak = run_stage_process(
                            stage, workload.NAME, state_path, work / "logs" / "stages.log"
                        )
                        total += spent
                        decision = json.loads(state_path.read_text()).get("decision", {})
                        if stage in ("register", "deploy") and not decision.get("promote"):
                            continue
                        seconds[stage].append(spent)
                        peaks[stage].append(peak)
                        print(f"scale {rows} #{repeat} {stage}: {spent:.1f} s, {peak:.0f} MiB", flush=True)
                    totals.append(total)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        figures["sizes"][str(rows)] = {
            "total_s": summarize(totals),
            "stages": {
                stage: {"seconds": summarize(seconds[stage]), "peak_rss_mib": summarize(peaks[stage])}
                for stage in STAGES
                if seconds[stage]
            },
        }
    figures["growth_exponent"] = growth_exponents(figures["sizes"])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, default in (("floor", "10000,100000,1000000"), ("scale", "1000000,5000000,10000000")):
        command = sub.add_parser(name)
        command.add_argument("--sizes", default=default, help="comma-separated row counts")
        command.add_argument("--repeats", type=int, default=3)
    sub.choices["floor"].add_argument(
        "--section",
        default="floor",
        help="results section to write (floor_after: the floor again after the orchestrated runs)",
    )
    stage = sub.add_parser("stage", help="run one stage (the scale benchmark's child process)")
    stage.add_argument("name", choices=STAGES)
    stage.add_argument("--pipeline", required=True)
    stage.add_argument("--state", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "stage":
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        state = run_stage(args.name, args.pipeline, json.loads(args.state.read_text()))
        args.state.write_text(json.dumps({**state, PEAK_KEY: own_peak_rss_mib()}, default=str))
        return 0
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    figures = floor(sizes, args.repeats) if args.command == "floor" else scale(sizes, args.repeats)
    section = args.section if args.command == "floor" else args.command
    path = write_result("pipeline", merge_results(read_existing(), section, figures))
    print(json.dumps(figures, indent=2, default=str))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
