"""Closed-loop simulation: replay a seeded stream of days through the CT logic and compare policies.

Fast mode calls the library itself (GX validation suite, ``pipeline_building.split``/``build_pipeline``,
``evaluate.decide``, the online decision of ``include.ct.online``) without Airflow or MLflow, so the
deployment policies (point-estimate gate, statistical gate, gate + shadow, gate + canary) are measured
under covariate drift, a concept change, a broken batch, training/serving skew and late labels
against baselines on the same stream.
The full mode (``bench/simulation.py``) runs the gated policy through real Airflow runs, an MLflow
server and the prediction service, and turns each run into the same ``DayRecord``
(``pipeline_record``) beside the same baselines (``LibraryPolicies``).

    python -m simulation --days 60 --rows-per-day 2000 --seed 7 --skew-feature support_calls --fast
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

from include.ct.config import PipelineConfig, find_pipeline_config
from simulation.claims import claims
from simulation.policies import (
    LibraryPolicies,
    add_training_arguments,
    training_overrides,
    with_params,
    with_training,
)
from simulation.records import POLICIES, DayRecord, SimulationResult
from simulation.report import day_cell, log_to_mlflow, write_report
from simulation.scenario import Scenario, stream

log = logging.getLogger(__name__)


def run_fast(
    config: PipelineConfig, scenario: Scenario, *, model_params: dict[str, Any] | None = None
) -> SimulationResult:
    """Fast mode: every policy on the same stream through library calls (no Airflow, no MLflow).

    ``model_params`` overrides estimator params (e.g. a smaller ``max_iter`` for quick runs).
    """
    config = with_params(config, model_params)
    started = time.perf_counter()
    policies = LibraryPolicies(config, scenario)
    records: list[DayRecord] = []
    for today in stream(config, scenario):
        day_records = policies.step(today)
        records.extend(day_records)
        _log_day(scenario, today.day, day_records)
    return SimulationResult.of(config, scenario, "fast", records, started)


def _log_day(scenario: Scenario, day: int, records: list[DayRecord]) -> None:
    parts = [
        f"{record.policy} {day_cell(record)}"
        for record in sorted(records, key=lambda r: POLICIES.index(r.policy))
    ]
    events = f" [{', '.join(records[0].events)}]" if records and records[0].events else ""
    log.info("day %d/%d%s: %s", day, scenario.days, events, " | ".join(parts))


def main(argv: list[str] | None = None) -> int:
    """``python -m simulation --fast``: run every policy on one stream and write the report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pipeline", default="churn", help="pipeline config name")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--rows-per-day", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--out", default="bench/simulation-fast", help="folder for simulation.md and the plots"
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help="library calls, no Airflow (required here; the full mode is python -m bench.simulation)",
    )
    parser.add_argument("--max-iter", type=int, help="override the estimator's max_iter (quicker runs)")
    add_training_arguments(parser)
    parser.add_argument(
        "--concept",
        choices=("flip", "label_drift"),
        default="flip",
        help="the concept change: other features drive churn (flip) or the same ones reweighted",
    )
    parser.add_argument(
        "--skew-feature", help="the feature the training/serving skew hits (default: the first numeric)"
    )
    parser.add_argument(
        "--skew-factor", type=float, default=7 / 30, help="its training values are multiplied by this"
    )
    parser.add_argument("--mlflow", action="store_true", help="also log to MLflow (MLFLOW_TRACKING_URI)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (implies --mlflow)")
    args = parser.parse_args(argv)
    if not args.fast:
        parser.error(
            "only --fast runs here: the full mode (real Airflow runs, MLflow server, prediction "
            "service) is `python -m bench.simulation`"
        )
    config = with_training(find_pipeline_config(args.pipeline), training_overrides(args))
    scenario = Scenario(
        days=args.days,
        rows_per_day=args.rows_per_day,
        seed=args.seed,
        concept_kind=args.concept,
        skew_feature=args.skew_feature,
        skew_factor=args.skew_factor,
    )
    params = {"max_iter": args.max_iter} if args.max_iter else None
    result = run_fast(config, scenario, model_params=params)
    report = write_report(result, args.out)
    print(f"wrote {report} ({result.seconds:.0f} s)")
    for claim in claims(result):
        mark = {True: "holds", False: "DOES NOT HOLD", None: "count"}[claim.holds]
        print(f"  [{mark}] {claim.statement}: {claim.detail}")
    if args.mlflow or args.tracking_uri:
        paths = [report, report.with_name("simulation.json"), *sorted(report.parent.glob("simulation_*.png"))]
        run_id = log_to_mlflow(result, paths, args.tracking_uri)
        print(f"logged to MLflow run {run_id}")
    return 0


def progress_logging(progress_log: logging.Logger = log) -> None:
    """One progress line per day on ``progress_log``; other libraries only warn (GX pins some of
    its loggers at INFO)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)
    progress = logging.StreamHandler()
    progress.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    progress_log.addHandler(progress)
    progress_log.setLevel(logging.INFO)
    progress_log.propagate = False


if __name__ == "__main__":
    progress_logging()
    sys.exit(main())
