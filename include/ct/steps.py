"""The heavy steps (train, evaluate) behind one entry point, run in the worker or in a container.

A pipeline's ``runtime`` decides where: in-process, the operator calls ``run_step``; with
``runtime: {type: docker}`` Airflow's DockerOperator runs this module's CLI in the project's
image. Request and result travel as small JSON files in artifact storage, so both
paths execute the same code on the same inputs and return the same XCom.

    python -m include.ct.steps train --pipeline churn --request R.json --result OUT.json
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

from include.ct.config import PipelineConfig, find_pipeline_config
from include.ct.storage import pipeline_paths, write_json_atomic

log = logging.getLogger(__name__)

STEPS = ("train", "evaluate")


def run_step(step: str, config: PipelineConfig, request: dict[str, Any]) -> dict[str, Any]:
    """Run ``step`` for ``config`` with the operator's ``request``; returns the step's XCom."""
    if step == "train":
        from include.ct.modeling.train import train_challenger
        from include.ct.registry.registry import Lineage

        return train_challenger(config, Lineage(**request["lineage"])).to_dict()
    if step == "evaluate":
        from include.ct.modeling.evaluate import evaluate_challenger

        decision = evaluate_challenger(
            config,
            request["run_id"],
            request["test_path"],
            min_improvement=request.get("min_improvement"),
        )
        return decision.to_dict()
    raise ValueError(f"unknown step {step!r}; expected one of {STEPS}")


def exchange_paths(config: PipelineConfig, run_id: str, step: str) -> tuple[Path, Path]:
    """(request, result) files of one step of one Airflow run, in the pipeline's artifact storage."""
    safe_run = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)
    folder = pipeline_paths(config).artifacts / "steps" / safe_run
    return folder / f"{step}.request.json", folder / f"{step}.result.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one continuous-training step (container entry point).")
    parser.add_argument("step", choices=STEPS)
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--request", type=Path, required=True, help="JSON written by the operator")
    parser.add_argument("--result", type=Path, required=True, help="where to write the step's JSON result")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = find_pipeline_config(args.pipeline)
    request = json.loads(args.request.read_text())
    log.info("step %s of %s starting (request %s)", args.step, config.name, args.request)
    result = run_step(args.step, config, request)
    write_json_atomic(args.result, result)
    log.info("step %s of %s done: %s", args.step, config.name, args.result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
