"""The whole benchmark suite, one ``python -m bench.<name>`` process each, then the report.

python -m bench.suite           # make bench: full sizes, 3 runs each or more, a soak of 365 days
python -m bench.suite --quick   # make bench-quick: small sizes, 1 run, a smoke check
python -m bench.suite --only validation dag_parse
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from bench.measure import REPO_ROOT
from bench.report import write_report

# Run in this order: the floor, the orchestrated runs it is compared with, and the floor again
# at the largest size, so the overhead is judged against a floor measured on both sides of the
# orchestrated runs: a host whose speed drifts (a shared VM) shows as a gap between the two.
# Validation runs 11 times, GX and pandas taking turns: each run is a fraction of a second, and
# the pandas floor's median of 3 moved by a third between reports (two slow runs out of three).
# The orchestrated runs repeat 5 times: a run's arrival waits up to 1 s for the triggerer to hand
# the watcher's event to Airflow (its fixed loop), a lottery that moves a 10k-row run by a fifth.
FULL: dict[str, list[str]] = {
    "serving": ["serving"],
    "validation": ["validation", "--rows", "1000000", "--repeats", "11"],
    "dag_parse": ["dag_parse", "--repeats", "3"],
    "floor": ["pipeline", "floor", "--sizes", "10000,100000,1000000", "--repeats", "3"],
    "orchestrated": ["orchestrated", "--sizes", "10000,100000,1000000", "--repeats", "5"],
    "floor_after": ["pipeline", "floor", "--sizes", "1000000", "--repeats", "3", "--section", "floor_after"],
    "scale": ["pipeline", "scale", "--sizes", "1000000,5000000,10000000", "--repeats", "3"],
    "batch": ["batch", "--sizes", "1000000,10000000", "--repeats", "3"],
    "soak": ["soak", "--days", "365"],
}
QUICK: dict[str, list[str]] = {
    "serving": ["serving", "--seconds", "2", "--swaps", "2"],
    "validation": ["validation", "--rows", "100000", "--repeats", "1"],
    "dag_parse": ["dag_parse", "--repeats", "1"],
    "floor": ["pipeline", "floor", "--sizes", "10000", "--repeats", "1"],
    "orchestrated": ["orchestrated", "--sizes", "10000", "--repeats", "1"],
    "floor_after": ["pipeline", "floor", "--sizes", "10000", "--repeats", "1", "--section", "floor_after"],
    "scale": ["pipeline", "scale", "--sizes", "100000,200000", "--repeats", "1"],
    "batch": ["batch", "--sizes", "100000,200000", "--repeats", "1"],
    "soak": ["soak", "--days", "5"],
}
# Serving measures scikit-learn predict under threads: one OpenMP thread, as it is served.
ENV: dict[str, dict[str, str]] = {"serving": {"OMP_NUM_THREADS": "1"}}


def run(name: str, args: list[str]) -> tuple[int, float]:
    """Run one benchmark module in its own process; (exit code, seconds)."""
    command = [sys.executable, "-m", f"bench.{args[0]}", *args[1:]]
    print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **ENV.get(name, {})}
    code = subprocess.run(command, cwd=REPO_ROOT, env=env, check=False).returncode
    return code, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes and one run each")
    parser.add_argument("--only", nargs="+", choices=list(FULL), help="run only these benchmarks")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    outcomes: dict[str, tuple[int, float]] = {}
    for name, command in plan.items():
        if args.only and name not in args.only:
            continue
        outcomes[name] = run(name, command)
    path = write_report()
    print("\n=== summary")
    for name, (code, seconds) in outcomes.items():
        print(f"{name}: {'ok' if code == 0 else f'FAILED (exit {code})'} in {seconds:.0f} s")
    print(f"report: {path} and {path.with_suffix('.json')}")
    return 1 if any(code for code, _ in outcomes.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
