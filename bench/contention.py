"""The floor beside an idle Airflow: how much Airflow's standing processes alone slow the steps.

Part of explaining the orchestration overhead (issue 6): starts the orchestrated bench's stack
(MLflow, the prediction service, Airflow with ``ct_bench_churn`` unpaused) and triggers nothing,
measures the idle components' CPU, then runs the floor (``bench.pipeline``'s, in a child process
with the caller's environment) beside it. Compare its stages with the floor's in
``bench/results/pipeline.json``: what grows is contention, not orchestration. ``--pause NAME``
stops that component (SIGSTOP, its children too) while the floor runs, to tell which one costs
what. Writes ``bench/results/contention.json``; not one of the report's targets, so ``make bench``
skips it.

    python -m bench.contention --rows 1000000 --repeats 3 [--pause scheduler]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from bench.measure import write_result
from bench.orchestrated import IDLE_SECONDS, idle_cpu_percent, running_bench

FLOOR_CODE = (
    "import json, sys; from bench.pipeline import floor; "
    "print(json.dumps(floor([int(sys.argv[1])], int(sys.argv[2]))))"
)


@contextlib.contextmanager
def paused(pids: list[int]) -> Iterator[None]:
    """SIGSTOP these processes and their children until the block ends, then SIGCONT them."""
    tree: list[psutil.Process] = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(pid)
            tree += [root, *root.children(recursive=True)]
    stopped = []
    try:
        for proc in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGSTOP)
                stopped.append(proc)
        yield
    finally:
        for proc in stopped:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGCONT)


def floor_beside_airflow(rows: int, repeats: int, pause: list[str] | None = None) -> dict[str, Any]:
    """The floor's figures at ``rows`` rows, measured while an idle Airflow stack runs, with the
    components named in ``pause`` stopped meanwhile."""
    caller_env = dict(os.environ)  # inside running_bench os.environ is the stack's
    workdir = Path(tempfile.mkdtemp(prefix="ct-bench-contention-"))
    try:
        with running_bench(workdir) as bench:
            idle = idle_cpu_percent(bench.stack.processes, IDLE_SECONDS)
            unknown = set(pause or []) - set(bench.stack.processes)
            if unknown:
                raise ValueError(
                    f"no such component {sorted(unknown)}; there are {sorted(bench.stack.processes)}"
                )
            with paused([bench.stack.processes[name].pid for name in pause or []]):
                done = subprocess.run(
                    [sys.executable, "-c", FLOOR_CODE, str(rows), str(repeats)],
                    env=caller_env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if done.returncode != 0:
        raise RuntimeError(f"the floor beside Airflow failed:\n{done.stderr[-4000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return {"idle_cpu_percent": idle, "paused": pause or [], "floor_beside_idle_airflow": figures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--pause", action="append", default=[], metavar="COMPONENT", help="e.g. scheduler; repeatable"
    )
    args = parser.parse_args(argv)
    path = write_result("contention", floor_beside_airflow(args.rows, args.repeats, args.pause))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
