"""Batch scoring: the in-process engine and Spark local mode against a one-process floor.

    python -m bench.batch --sizes 1000000,10000000 --repeats 3

On the scale benchmark's wide workload (24 mixed features), with one model registered in a real
MLflow store (SQLite), each size is scored, in a fresh process per run:
- floor: ``pd.read_parquet`` of the whole table, then the fitted Pipeline's ``predict_proba``;
- in_process: ``score_day``, the engine the batch DAG's score task runs (chunks, one file each);
- validate: the day's GX schema check, chunk by chunk (the validate task);
- spark: ``spark-submit --master local[2]`` of the Spark job, then its rows compared with the
  in-process engine's, exactly.
Seconds and the process's own peak RSS go to ``bench/results/batch.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench import workload
from bench.measure import REPO_ROOT, summarize, write_result
from bench.pipeline import own_peak_rss_mib
from bench.report import write_batch_report

KEY = "row_id"
FIRST_DAY = date(2026, 12, 1)
TRAIN_ROWS = 200_000
STAGES = ("floor", "in_process", "validate", "compare")
SPARK_MASTER = "local[2]"
LOOPBACK = "127.0.0.1"  # Spark's driver and block manager listen here, not on the host's address


def batch_config() -> dict[str, Any]:
    """The wide workload's pipeline with a ``batch:`` section keyed by ``row_id``."""
    return {
        **workload.pipeline_config(),
        "batch": {"key": [KEY], "chunk_rows": 100_000, "dual_scoring": False},
    }


def write_input(folder: Path, rows: int, *, seed: int) -> Path:
    """``rows`` workload rows with a unique key and no label, as one Parquet file, chunk by chunk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "table.parquet"
    writer: pq.ParquetWriter | None = None
    try:
        for index, start in enumerate(range(0, rows, workload.CHUNK_ROWS)):
            frame = workload.generate(min(workload.CHUNK_ROWS, rows - start), seed=seed * 1000 + index)
            frame = frame.drop(columns=["label"])
            frame.insert(0, KEY, range(start, start + len(frame)))
            table = pa.Table.from_pandas(frame, preserve_index=False)
            writer = writer or pq.ParquetWriter(target, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    return target


def register_model(work: Path) -> str:
    """Fit the workload's Pipeline, log it with its signature to MLflow and make it champion."""
    import mlflow

    from include.ct.config import find_pipeline_config
    from include.ct.modeling.pipeline_building import build_pipeline, coerce_features
    from include.ct.modeling.train import log_pipeline_model
    from include.ct.registry import registry

    config = find_pipeline_config(workload.NAME)
    frame = workload.generate(TRAIN_ROWS, seed=99)
    features = coerce_features(config, frame)
    model = build_pipeline(config).fit(features, frame["label"])
    client = registry.client()
    experiment = client.create_experiment("bench_batch", artifact_location=str(work / "artifacts"))
    with mlflow.start_run(experiment_id=experiment):
        info = log_pipeline_model(model, features.head(5))
    version = mlflow.register_model(info.model_uri, config.registered_model_name)
    registry.set_champion_alias(config, str(version.version))
    return str(version.version)


def run_stage(stage: str, state: dict[str, Any]) -> dict[str, Any]:
    """One measured stage, in this (fresh) process; returns its figures."""
    from include.ct.batch import checks, inputs, scoring
    from include.ct.config import find_pipeline_config

    config = find_pipeline_config(workload.NAME)
    day = date.fromisoformat(state["day"])
    batch = inputs.locate_input(config, day)
    if stage == "floor":
        import pandas as pd

        from include.ct.modeling.pipeline_building import coerce_features

        model = scoring.load_model(config, scoring.resolve_champion(config)).model
        started = time.perf_counter()
        frame = pd.read_parquet(batch.files[0])
        probabilities = model.predict_proba(coerce_features(config, frame))
        return {"seconds": time.perf_counter() - started, "rows": len(probabilities)}
    if stage == "validate":
        started = time.perf_counter()
        checks.validate_input(config, batch)
        return {"seconds": time.perf_counter() - started}
    if stage == "in_process":
        resolved = scoring.resolve_champion(config)
        served = scoring.load_model(config, resolved)
        started = time.perf_counter()
        result = scoring.score_day(config, resolved, batch, "bench", served=served)
        return {"seconds": time.perf_counter() - started, "rows": result.rows, "output": result.output}
    if stage == "compare":
        return compare(state["in_process_copy"], state["spark_output"])
    raise ValueError(f"unknown stage {stage!r}")


def compare(expected_dir: str, actual_dir: str) -> dict[str, Any]:
    """Whether two partitions hold the same rows (sorted by key), column by column, exactly."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    tables = []
    for folder in (expected_dir, actual_dir):
        table = pq.read_table(folder).drop_columns(["scoring_run_id"])
        tables.append(table.take(pc.sort_indices(table, sort_keys=[(KEY, "ascending")])))
    expected, actual = tables
    differing = [
        name
        for name in expected.column_names
        if name not in actual.column_names or not expected[name].cast(actual[name].type).equals(actual[name])
    ]
    return {
        "rows": expected.num_rows,
        "identical": not differing and expected.num_rows == actual.num_rows,
        "differing": differing,
    }


def child(stage: str, state: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run ``stage`` in a fresh interpreter; its figures with the process's own peak RSS (MiB)."""
    state_path = work / "state.json"
    state_path.write_text(json.dumps(state))
    with (work / "bench.log").open("ab") as log:
        subprocess.run(
            [sys.executable, "-m", "bench.batch", "stage", stage, "--state", str(state_path)],
            check=True,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    figures: dict[str, Any] = json.loads(state_path.read_text())["result"]
    return figures


def spark(state: dict[str, Any], work: Path) -> dict[str, Any]:
    """``spark-submit`` the scoring job (``local[2]``); its wall time, JVM start included."""
    from include.ct.batch import inputs, scoring
    from include.ct.batch.partitions import work_dir
    from include.ct.batch.spark_job import write_request
    from include.ct.config import find_pipeline_config

    config = find_pipeline_config(workload.NAME)
    day = date.fromisoformat(state["day"])
    request_path = work_dir(config, day) / "spark_request.json"
    request = write_request(
        request_path, scoring.resolve_champion(config), inputs.locate_input(config, day), "bench"
    )
    binary = Path(sys.executable).with_name("spark-submit")
    started = time.perf_counter()
    with (work / "bench.log").open("ab") as log:
        subprocess.run(
            [
                str(binary),
                "--master",
                SPARK_MASTER,
                str(REPO_ROOT / "include/ct/batch/spark_job.py"),
                "--pipeline",
                workload.NAME,
                "--request",
                str(request_path),
            ],
            check=True,
            cwd=work,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": LOOPBACK},
        )
    seconds = time.perf_counter() - started
    result = json.loads(Path(request["result"]).read_text())
    return {"seconds": seconds, "rows": result["rows"], "output": result["output"]}


def measure(sizes: list[int], repeats: int, work: Path) -> dict[str, Any]:
    """Every engine at every size; the Spark output compared with the in-process one."""
    from include.ct.batch.partitions import input_root, partition_name
    from include.ct.config import find_pipeline_config

    pipelines = work / "pipelines"
    pipelines.mkdir(parents=True, exist_ok=True)
    import yaml

    (pipelines / f"{workload.NAME}.yaml").write_text(yaml.safe_dump(batch_config(), sort_keys=False))
    os.environ.update(
        {
            "CT_PIPELINES_DIR": str(pipelines),
            "CT_DATA_DIR": str(work / "data"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
            "PYTHONPATH": str(REPO_ROOT),
        }
    )
    version = register_model(work)
    config = find_pipeline_config(workload.NAME)
    results: dict[str, Any] = {"model_version": version, "spark_master": SPARK_MASTER, "sizes": {}}
    for number, rows in enumerate(sizes):
        day = FIRST_DAY + timedelta(days=number)
        write_input(input_root(config) / partition_name(day), rows, seed=number)
        state = {"day": day.isoformat()}
        runs: dict[str, list[dict[str, Any]]] = {
            name: [] for name in ("floor", "in_process", "validate", "spark")
        }
        for repeat in range(repeats):
            for name in ("floor", "in_process", "validate"):
                runs[name].append(child(name, state, work))
                print(f"{rows} rows, run {repeat + 1}: {name} {runs[name][-1]['seconds']:.1f} s", flush=True)
            copy = work / f"in_process_{rows}"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(runs["in_process"][-1]["output"], copy)
            runs["spark"].append(spark(state, work))
            print(f"{rows} rows, run {repeat + 1}: spark {runs['spark'][-1]['seconds']:.1f} s", flush=True)
        same = child(
            "compare",
            {**state, "in_process_copy": str(copy), "spark_output": runs["spark"][-1]["output"]},
            work,
        )
        results["sizes"][str(rows)] = {
            name: {
                "seconds": summarize([run["seconds"] for run in measured]),
                **(
                    {"peak_rss_mib": summarize([run["peak_rss_mib"] for run in measured])}
                    if measured and "peak_rss_mib" in measured[0]
                    else {}
                ),
                "rows_per_s": summarize([rows / run["seconds"] for run in measured]),
            }
            for name, measured in runs.items()
        }
        results["sizes"][str(rows)]["spark_equals_in_process"] = same
        shutil.rmtree(input_root(config) / partition_name(day), ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")
    stage = sub.add_parser("stage", help="one measured stage (a child process)")
    stage.add_argument("name", choices=STAGES)
    stage.add_argument("--state", type=Path, required=True)
    parser.add_argument("--sizes", default="1000000,10000000", help="comma-separated row counts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.command == "stage":
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        state = json.loads(args.state.read_text())
        figures = run_stage(args.name, state)
        args.state.write_text(
            json.dumps({**state, "result": {**figures, "peak_rss_mib": own_peak_rss_mib()}})
        )
        return 0
    import tempfile

    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    with tempfile.TemporaryDirectory(prefix="ct-bench-batch-") as scratch:
        work = args.work or Path(scratch)
        results = measure(sizes, args.repeats, work)
    path = write_result("batch", results)
    report = write_batch_report()
    print(report.read_text())
    print(f"wrote {path} and {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
