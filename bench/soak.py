"""Soak: a compressed year of one pipeline through the library's real paths, housekept daily.

    python -m bench.soak --days 365

Every simulated day: a batch lands, is extracted and validated; the prediction service's log
writer (``PredictionLog``) logs a day of traffic in many small files, as its flushes leave them,
and labels arrive for part of it; every ``--train-every`` days a challenger is trained,
registered and deployed (MLflow in a SQLite store); the monitor assesses; housekeeping runs with
the pipeline's ``retention`` defaults. Files get the simulated day's times, so every age-based
rule sees a year pass. Per day: disk use, file count, the monitor's assess time, housekeeping's
time and an inventory of the retained log (every row written inside the window read back
exactly once). Writes ``bench/results/soak.json``, ``bench/soak.md`` and plots in ``bench/soak/``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.measure import REPO_ROOT, machine, summarize, write_result

DAY0 = datetime(2026, 1, 1, tzinfo=UTC)
PLOTS = REPO_ROOT / "bench" / "soak"
REPORT = REPO_ROOT / "bench" / "soak.md"
GC_EVERY_DAYS = 7
FLAT_DAY_OVER_DAY = 0.10  # disk use after the longest horizon: within 10% day over day
FLAT_ASSESS = 1.5  # assess time: the last month's median within 1.5x of the month after the horizon


def _stamp(path: Path, when: datetime) -> None:
    """Give ``path`` (and everything under it) the simulated time ``when``."""
    seconds = when.timestamp()
    targets = [path, *path.rglob("*")] if path.is_dir() else [path]
    for target in targets:
        os.utime(target, (seconds, seconds))


def _disk(root: Path) -> tuple[int, int]:
    sizes = [path.stat().st_size for path in root.rglob("*") if path.is_file()]
    return sum(sizes), len(sizes)


def log_traffic(
    config: Any, day: datetime, *, files_per_hour: int, rows_per_file: int, seed: int
) -> dict[str, int]:
    """A day of served predictions through ``PredictionLog``: one file per flush, stamped with
    the simulated hour; returns how many rows each day folder received."""
    from include.ct.monitoring.prediction_log import PredictionLog, prediction_log_dir
    from tools import datagen

    root = prediction_log_dir()
    assert root is not None
    features = datagen.churn_batch(rows_per_file * files_per_hour * 24, day=seed, seed=seed)[
        config.feature_names
    ]
    records = features.to_dict(orient="records")
    before = set(root.rglob("part-*.parquet"))
    log = PredictionLog(root, flush_seconds=3600, flush_rows=rows_per_file)
    log.start()
    for index in range(files_per_hour * 24):
        at = day + timedelta(minutes=index * 60 / files_per_hour)
        chunk = records[index * rows_per_file : (index + 1) * rows_per_file]
        ids = [f"{day:%Y%m%d}-{index}-{i}" for i in range(len(chunk))]
        log.append(config.name, "1", at, chunk, ids, [0] * len(chunk), [[0.6, 0.4]] * len(chunk))
        while log.written < (index + 1) * rows_per_file:  # one flush per append: one file each
            time.sleep(0.001)
    log.close()
    import pyarrow.parquet as pq

    for path in set(root.rglob("part-*.parquet")) - before:
        first = pq.read_table(path, columns=["predicted_at"])["predicted_at"][0].as_py()
        _stamp(path, first + timedelta(seconds=2))
    return {day.strftime("%Y-%m-%d"): rows_per_file * files_per_hour * 24}


def soak(
    days: int, *, batch_rows: int, files_per_hour: int, rows_per_file: int, train_every: int, work: Path
) -> dict[str, Any]:
    """Run the compressed year; per-day figures."""
    import pandas as pd

    from include.ct.config import find_pipeline_config
    from include.ct.data.extract import extract
    from include.ct.data.validate import validate_snapshot
    from include.ct.housekeeping.registry_cleanup import BACKEND_STORE_ENV
    from include.ct.housekeeping.run import housekeep
    from include.ct.modeling.train import train_challenger
    from include.ct.monitoring.monitor import assess, labels_dir
    from include.ct.monitoring.prediction_log import read_prediction_log
    from include.ct.registry import registry
    from include.ct.registry.deploy import deploy_version, register_candidate
    from include.ct.storage import data_dir, pipeline_paths
    from tools import datagen

    config = find_pipeline_config("churn")
    config = config.model_copy(update={"training": config.training.model_copy(update={"window": 7})})
    paths = pipeline_paths(config)
    written: dict[str, int] = {}
    series: list[dict[str, Any]] = []
    retention = config.retention
    for number in range(days):
        today = DAY0 + timedelta(days=number)
        started = time.perf_counter()
        batch = datagen.write_batch(config, day=number, rows=batch_rows, seed=number)
        snapshot = extract(config)
        validate_snapshot(config, snapshot)
        for path in (
            paths.snapshots / snapshot.data_version,
            paths.reports / snapshot.data_version,
            paths.archive / snapshot.data_version,
        ):
            if path.exists():
                _stamp(path, today)
        del batch
        if number % train_every == 0:
            lineage = registry.Lineage(
                pipeline=config.name,
                dag_id=config.dag_id,
                run_id=f"soak__{number}",
                data_version=snapshot.data_version,
            )
            trained = train_challenger(config, lineage)
            _stamp(Path(trained.test_path).parent, today)
            candidate = register_candidate(
                config, trained.run_id, trained.test_path, decision="soak", lineage=lineage
            )
            deploy_version(config, candidate.version, trained.test_path, reason="soak", service=None)
        written.update(
            log_traffic(
                config, today, files_per_hour=files_per_hour, rows_per_file=rows_per_file, seed=number
            )
        )
        labels = labels_dir(config)
        labels.mkdir(parents=True, exist_ok=True)
        label_file = labels / f"labels-{today:%Y%m%d}.csv"
        ids = [f"{today:%Y%m%d}-{index}-0" for index in range(files_per_hour * 24)]
        pd.DataFrame({"prediction_id": ids, config.target: [number % 2] * len(ids)}).to_csv(
            label_file, index=False
        )
        _stamp(label_file, today + timedelta(hours=23))
        pipeline_seconds = time.perf_counter() - started

        # mlflow gc starts a CLI process (seconds): weekly here, daily in the DAG
        if number % GC_EVERY_DAYS == 0:
            os.environ[BACKEND_STORE_ENV] = os.environ["MLFLOW_TRACKING_URI"]
        else:
            os.environ.pop(BACKEND_STORE_ENV, None)
        evening = today + timedelta(hours=23, minutes=30)
        clock = time.perf_counter()
        assess(config, now=evening)
        assess_s = time.perf_counter() - clock
        clock = time.perf_counter()
        report = housekeep(config, now=evening)
        housekeeping_s = time.perf_counter() - clock

        window_start = evening - timedelta(days=retention.prediction_log_days - 1)
        logged = read_prediction_log(config.name, since=window_start.replace(hour=0, minute=0))
        counts = (
            logged["predicted_at"].dt.strftime("%Y-%m-%d").value_counts().to_dict() if len(logged) else {}
        )
        expected = {day: rows for day, rows in written.items() if day >= window_start.strftime("%Y-%m-%d")}
        lost = sum(max(rows - counts.get(day, 0), 0) for day, rows in expected.items())
        duplicated = int(logged["prediction_id"].duplicated().sum()) if len(logged) else 0
        disk, files = _disk(data_dir())
        mlflow_bytes, mlflow_files = _disk(work / "mlruns") if (work / "mlruns").exists() else (0, 0)
        series.append(
            {
                "day": number,
                "disk_bytes": disk + mlflow_bytes,
                "files": files + mlflow_files,
                "log_files": sum(1 for _ in (data_dir() / "predictions").rglob("*.parquet")),
                "assess_s": round(assess_s, 3),
                "housekeeping_s": round(housekeeping_s, 3),
                "pipeline_s": round(pipeline_seconds, 3),
                "freed_bytes": report.bytes_freed,
                "compacted_files": report.files_compacted,
                "rows_lost": lost,
                "rows_duplicated": duplicated,
                "versions": len(
                    registry.client().search_model_versions(f"name = '{config.registered_model_name}'")
                ),
            }
        )
        if number % 10 == 0 or number == days - 1:
            last = series[-1]
            print(
                f"day {number}: {last['disk_bytes'] / 2**20:.1f} MiB in {last['files']} files, "
                f"assess {assess_s:.2f} s, housekeeping {housekeeping_s:.2f} s, "
                f"lost {lost}, duplicated {duplicated}",
                flush=True,
            )
    horizon = int(max(retention.prediction_log_days, retention.reports_days, retention.quarantine_days))
    return {
        "days": days,
        "batch_rows": batch_rows,
        "log_rows_per_day": files_per_hour * 24 * rows_per_file,
        "log_files_per_day": files_per_hour * 24,
        "train_every_days": train_every,
        "horizon_days": horizon,
        "retention": retention.model_dump(),
        "series": series,
        "assess_s": summarize([row["assess_s"] for row in series]),
    }


def judge(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(target, status, measured) of the soak's three targets."""
    series = result["series"]
    horizon = result["horizon_days"]
    after = [row for row in series if row["day"] > horizon + 1]
    rows: list[tuple[str, str, str]] = []
    if len(after) < 2:
        rows.append(
            (
                "disk use flat after the retention horizon (within 10% day over day)",
                "not measured",
                f"needs more than {horizon + 2} days",
            )
        )
        rows.append(("assess time flat", "not measured", f"needs more than {horizon + 2} days"))
    else:
        changes = [
            abs(b["disk_bytes"] - a["disk_bytes"]) / a["disk_bytes"] for a, b in itertools.pairwise(after)
        ]
        worst = max(changes)
        rows.append(
            (
                "disk use flat after the retention horizon (within 10% day over day)",
                "met" if worst <= FLAT_DAY_OVER_DAY else "missed",
                f"largest day-over-day change after day {horizon + 1}: {worst:.1%}",
            )
        )
        import statistics

        first = statistics.median(row["assess_s"] for row in after[:30])
        last = statistics.median(row["assess_s"] for row in after[-30:])
        rows.append(
            (
                "assess time flat",
                "met" if last <= first * FLAT_ASSESS else "missed",
                f"median {first:.2f} s in the month after the horizon, {last:.2f} s in the last month",
            )
        )
    lost = sum(row["rows_lost"] + row["rows_duplicated"] for row in series)
    rows.append(
        (
            "0 rows lost or duplicated inside the retained window",
            "met" if lost == 0 else "missed",
            f"{lost} rows over {len(series)} daily inventories",
        )
    )
    return rows


def plot(result: dict[str, Any]) -> list[Path]:
    """Disk use, file counts and assess time per day, as PNGs beside the report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    PLOTS.mkdir(parents=True, exist_ok=True)
    days = [row["day"] for row in result["series"]]
    made = []
    for key, title, scale in (
        ("disk_bytes", "Disk use (MiB)", 2**20),
        ("files", "Files on disk", 1),
        ("assess_s", "Monitor assess time (s)", 1),
    ):
        figure, axis = plt.subplots(figsize=(7, 3))
        axis.plot(days, [row[key] / scale for row in result["series"]])
        axis.axvline(result["horizon_days"], color="grey", linestyle="--", label="longest retention horizon")
        axis.set_xlabel("simulated day")
        axis.set_title(title)
        axis.legend(loc="upper left")
        figure.tight_layout()
        path = PLOTS / f"{key}.png"
        figure.savefig(path, dpi=90)
        plt.close(figure)
        made.append(path)
    return made


def write_report(result: dict[str, Any], info: dict[str, Any]) -> Path:
    series = result["series"]
    lines = [
        "# Soak benchmark: a compressed year with housekeeping",
        "",
        f"Produced by `python -m bench.soak --days {result['days']}` on {info.get('date')}. Machine: "
        f"{info.get('cpus')} CPUs ({info.get('cpu')}), {info.get('memory_gib')} GiB.",
        "",
        f"Per simulated day: a {result['batch_rows']}-row batch extracted and validated, "
        f"{result['log_rows_per_day']} predictions logged in {result['log_files_per_day']} files, labels for "
        f"some, a new champion every {result['train_every_days']} days, the monitor's assess and a "
        f"housekeeping pass with the default retention (longest horizon {result['horizon_days']} days; "
        f"`mlflow gc` every {GC_EVERY_DAYS} days, as it starts a process of its own).",
        "",
        "| target | status | measured |",
        "|---|---|---|",
        *[f"| {name} | {status} | {value} |" for name, status, value in judge(result)],
        "",
        "| day | disk MiB | files | log files | assess s | housekeeping s | freed MiB | versions |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in series:
        if row["day"] % 30 == 0 or row["day"] == len(series) - 1:
            lines.append(
                f"| {row['day']} | {row['disk_bytes'] / 2**20:.1f} | {row['files']} | {row['log_files']} | "
                f"{row['assess_s']:.2f} | {row['housekeeping_s']:.2f} | "
                f"{row['freed_bytes'] / 2**20:.1f} | {row['versions']} |"
            )
    lines += [
        "",
        "![disk](soak/disk_bytes.png)",
        "![files](soak/files.png)",
        "![assess](soak/assess_s.png)",
        "",
    ]
    REPORT.write_text("\n".join(lines))
    return REPORT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--batch-rows", type=int, default=500)
    parser.add_argument("--files-per-hour", type=int, default=6)
    parser.add_argument("--rows-per-file", type=int, default=40)
    parser.add_argument("--train-every", type=int, default=30)
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="ct-soak-") as scratch:
        work = Path(scratch)
        os.environ.update(
            {
                "CT_DATA_DIR": str(work / "data"),
                "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
                "CT_PREDICTION_LOG_DIR": "",
            }
        )
        os.environ.pop("CT_PIPELINES_DIR", None)
        previous = Path.cwd()
        os.chdir(work)  # MLflow's default artifact root (./mlruns) lands in the scratch folder
        try:
            result = soak(
                args.days,
                batch_rows=args.batch_rows,
                files_per_hour=args.files_per_hour,
                rows_per_file=args.rows_per_file,
                train_every=args.train_every,
                work=work,
            )
        finally:
            os.chdir(previous)
        shutil.rmtree(work / "data", ignore_errors=True)
    write_result("soak", result)
    plot(result)
    path = write_report(result, machine())
    print(path.read_text())
    print(json.dumps([list(row) for row in judge(result)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
