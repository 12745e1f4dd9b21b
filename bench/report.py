"""The benchmark report: every ``bench/results/*.json`` into ``bench/report.md`` and ``bench/report.json``.

Each figure is the median (min-max) of its runs with the run count; each target is judged from
the data ("met", "missed" or "not measured" with the command that measures it).

    python -m bench.report
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.measure import REPO_ROOT, RESULTS_DIR, machine, read_results, summarize

REPORT_MD = REPO_ROOT / "bench" / "report.md"
NOTES = REPO_ROOT / "bench" / "notes.md"
LEGACY_SERVING = REPO_ROOT / "bench" / "serving.json"
SMALL = "10000"
LARGE = "1000000"
# Issue 29: with `strategy: direct`, the live service's staging load as the infra check.
ARRIVAL_LIMITS_S = {SMALL: 5.0, LARGE: 18.0}
HUGE = "10000000"
PEAK_LIMIT_MIB = 8 * 1024
# The floor is measured before the orchestrated runs and, at the largest size, again after them.
FLOOR_PASSES = ("floor", "floor_after")

COMMANDS = {
    "orchestrated": "python -m bench.orchestrated --sizes 10000,100000,1000000 --repeats 5",
    "floor": "python -m bench.pipeline floor --sizes 10000,100000,1000000 --repeats 3",
    "scale": "python -m bench.pipeline scale --sizes 1000000,5000000,10000000 --repeats 3",
    "validation": "python -m bench.validation --rows 1000000 --repeats 11",
    "dag_parse": "python -m bench.dag_parse --repeats 3",
    "serving": "OMP_NUM_THREADS=1 python -m bench.serving",
    "batch": "python -m bench.batch --sizes 1000000,10000000 --repeats 3",
}
BATCH_REPORT_MD = REPO_ROOT / "bench" / "batch.md"
BATCH_RSS_LIMIT_MIB = 2 * 1024
BATCH_FLOOR_RATIO = 1.3
BATCH_RSS_GROWTH = 1.25  # "flat as rows grow": the largest size's peak within this of the smallest's


@dataclass
class Target:
    """One target of the benchmark issue, judged from the measured data."""

    name: str
    status: str  # met | missed | not measured
    value: str
    command: str


def fmt(summary: Any, unit: str = "s", digits: int = 2) -> str:
    """``median (min-max, n runs)`` of a summary; a bare number as it is; missing as a dash."""
    if summary is None:
        return "-"
    suffix = f" {unit}" if unit else ""
    if isinstance(summary, int | float):
        return f"{summary:.{digits}f}{suffix}"
    runs = len(summary.get("runs") or [])
    low, high = summary["min"], summary["max"]
    return f"{summary['median']:.{digits}f}{suffix} ({low:.{digits}f}-{high:.{digits}f}, n={runs})"


def median(summary: Any) -> float | None:
    """The median of a summary (or the number itself), None when not measured."""
    if summary is None:
        return None
    if isinstance(summary, int | float):
        return float(summary)
    return float(summary["median"])


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _sizes(data: Any) -> list[str]:
    return sorted((data or {}).keys(), key=int)


def _serving(results: dict[str, Any]) -> dict[str, Any] | None:
    if "serving" in results:
        return dict(results["serving"])
    if LEGACY_SERVING.exists():
        return dict(json.loads(LEGACY_SERVING.read_text()))
    return None


def _load_row(serving: dict[str, Any], server: str, rows: int = 1, concurrency: int = 16) -> Any:
    for row in serving.get("load") or []:
        if row["server"] == server and row["rows"] == rows and row["concurrency"] == concurrency:
            return row
    return None


# --- targets ------------------------------------------------------------------------------------


def _judge(name: str, command: str, value: float | None, ok: Callable[[float], bool], shown: str) -> Target:
    if value is None:
        return Target(name, "not measured", "-", command)
    return Target(name, "met" if ok(value) else "missed", shown, command)


def floor_passes(results: dict[str, Any], size: str) -> tuple[Any, Any]:
    """The floor's total at ``size`` rows before and after the orchestrated runs (None if not run)."""
    before, after = (_get(results, "pipeline", section, "sizes", size, "total_s") for section in FLOOR_PASSES)
    return before, after


def pooled_floor(results: dict[str, Any], size: str) -> dict[str, Any] | None:
    """The floor's total at ``size`` rows over every pass: the one before the orchestrated runs and,
    where measured, the one after them, so a host that drifted between them weighs on both sides."""
    passes = floor_passes(results, size)
    runs = [float(run) for summary in passes if summary for run in summary.get("runs") or []]
    if not runs:
        return None
    before, after = (median(summary) for summary in passes)
    return {**summarize(runs), "before_s": before, "after_s": after}


def overhead_at(results: dict[str, Any], size: str) -> dict[str, float] | None:
    """Orchestrated arrival-to-serving against the one-process floor at ``size`` rows."""
    orchestrated = _get(results, "orchestrated", "sizes", size)
    pooled = pooled_floor(results, size)
    floor = median(pooled)
    arrival = median(_get(orchestrated, "arrival_to_serving_s"))
    if not floor or not pooled or arrival is None:
        return None
    tasks = median(_get(orchestrated, "tasks_total_s"))
    count = max(len(_get(orchestrated, "stages") or {}), 1)
    passes = {
        f"floor_{label}_s": pooled[f"{label}_s"] for label in ("before", "after") if pooled[f"{label}_s"]
    }
    return {
        "floor_s": floor,
        **passes,
        "arrival_to_serving_s": arrival,
        "ratio": arrival / floor,
        "overhead_fraction": arrival / floor - 1,
        "tasks_ratio": tasks / floor if tasks is not None else float("nan"),
        "overhead_per_task_s": (arrival - floor) / count,
        "tasks": count,
    }


def _validation_share_target(results: dict[str, Any], arrival: float | None) -> Target:
    """GX validation of 1M rows as a share of arrival to serving at 1M rows; the pandas ratio shown."""
    validation = median(_get(results, "validation", "gx_s"))
    ratio = _get(results, "validation", "ratio")
    share = validation / arrival if validation is not None and arrival else None
    shown = ""
    if share is not None:
        shown = f"{share:.1%} ({validation:.2f} s of {arrival:.1f} s)"
        if ratio is not None:
            shown += f"; {ratio:.1f}x plain pandas"
    return _judge(
        "validation at most 10% of arrival to serving at 1M rows",
        f"{COMMANDS['validation']} && {COMMANDS['orchestrated']}",
        share,
        lambda v: v <= 0.10,
        shown,
    )


def _at_most(limit: float) -> Callable[[float], bool]:
    return lambda value: value <= limit


def _direct_deploy_targets(results: dict[str, Any]) -> list[Target]:
    """Data arrival to the new champion serving, with `strategy: direct`, within its limit per size."""
    found = []
    for size, limit in ARRIVAL_LIMITS_S.items():
        arrival = median(_get(results, "orchestrated", "sizes", size, "arrival_to_serving_s"))
        found.append(
            _judge(
                f"direct deploy: arrival to the new champion serving <= {limit:g} s at {int(size):,} rows",
                COMMANDS["orchestrated"],
                arrival,
                _at_most(limit),
                f"{arrival:.1f} s" if arrival is not None else "",
            )
        )
    return found


def targets(results: dict[str, Any]) -> list[Target]:
    """Every target of the issue, computed from the results."""
    found: list[Target] = []
    over = overhead_at(results, LARGE)
    shown = ""
    if over:
        seconds = f"{over['arrival_to_serving_s']:.1f} s against {over['floor_s']:.1f} s"
        if "floor_before_s" in over and "floor_after_s" in over:
            seconds += (
                f"; floor {over['floor_before_s']:.1f} s before Airflow, {over['floor_after_s']:.1f} s after"
            )
        shown = f"{over['overhead_fraction']:.0%} ({seconds})"
    found.append(
        _judge(
            "orchestration overhead < 25% of the floor at 1M rows",
            f"{COMMANDS['floor']} && {COMMANDS['orchestrated']}",
            over["overhead_fraction"] if over else None,
            lambda v: v < 0.25,
            shown,
        )
    )
    arrival = median(_get(results, "orchestrated", "sizes", LARGE, "arrival_to_serving_s"))
    found.append(
        _judge(
            "data arrival to serving new champion < 90 s at 1M rows",
            COMMANDS["orchestrated"],
            arrival,
            lambda v: v < 90,
            f"{arrival:.1f} s" if arrival is not None else "",
        )
    )
    found.extend(_direct_deploy_targets(results))
    found.append(_validation_share_target(results, arrival))
    found.append(_dag_parse_target(results))
    peaks = [
        median(_get(stage, "peak_rss_mib"))
        for stage in (_get(results, "pipeline", "scale", "sizes", HUGE, "stages") or {}).values()
    ]
    peak = max((p for p in peaks if p is not None), default=None)
    found.append(
        _judge(
            "peak memory < 8 GiB per task at 10M rows",
            COMMANDS["scale"],
            peak,
            lambda v: v < PEAK_LIMIT_MIB,
            f"{peak / 1024:.2f} GiB" if peak is not None else "",
        )
    )
    found.extend(_serving_targets(results))
    found.extend(batch_targets(results))
    return found


def batch_targets(results: dict[str, Any]) -> list[Target]:
    """Batch scoring: in-process time against the floor, its peak memory, Spark's rows."""
    sizes = _get(results, "batch", "sizes") or {}
    ordered = _sizes(sizes)
    ratios = {
        size: median(_get(sizes[size], "in_process", "seconds")) / floor  # type: ignore[operator]
        for size in ordered
        if (floor := median(_get(sizes[size], "floor", "seconds")))
        and median(_get(sizes[size], "in_process", "seconds"))
    }
    worst = max(ratios.values(), default=None)
    shown = ", ".join(f"{ratio:.2f}x at {int(size):,} rows" for size, ratio in ratios.items())
    peaks = {
        size: peak
        for size in ordered
        if (peak := median(_get(sizes[size], "in_process", "peak_rss_mib"))) is not None
    }
    flat = None
    if HUGE in peaks and len(peaks) >= 2:
        smallest = peaks[min(peaks, key=int)]
        flat = peaks[HUGE] if peaks[HUGE] <= smallest * BATCH_RSS_GROWTH else float("inf")
    peak_shown = ", ".join(f"{peak / 1024:.2f} GiB at {int(size):,} rows" for size, peak in peaks.items())
    compared = [_get(sizes[size], "spark_equals_in_process") for size in ordered]
    compared = [c for c in compared if c is not None]
    identical = (1.0 if all(c.get("identical") for c in compared) else 0.0) if compared else None
    spark_shown = ", ".join(
        f"{int(size):,} rows {'identical' if c.get('identical') else 'differ in ' + str(c.get('differing'))}"
        for size, c in zip(ordered, compared, strict=False)
    )
    return [
        _judge(
            f"batch scoring in-process within {BATCH_FLOOR_RATIO}x of the floor (read + predict)",
            COMMANDS["batch"],
            worst,
            lambda v: v <= BATCH_FLOOR_RATIO,
            shown,
        ),
        _judge(
            "batch scoring peak RSS < 2 GiB at 10M rows and flat as rows grow",
            COMMANDS["batch"],
            flat,
            lambda v: v < BATCH_RSS_LIMIT_MIB,
            peak_shown,
        ),
        _judge(
            "Spark local output equals the in-process output",
            COMMANDS["batch"],
            identical,
            lambda v: v == 1.0,
            spark_shown,
        ),
    ]


def section_batch(results: dict[str, Any]) -> list[str]:
    lines = ["## 7. Batch scoring: in-process engine and Spark against the floor", ""]
    data = results.get("batch")
    if not data or not data.get("sizes"):
        return lines + _missing("1M and 10M rows scored", "batch")
    lines += [
        "The scale workload (24 features) scored by one registered model, each run in a fresh process. "
        "floor: `read_parquet` of the whole table and `predict_proba`; in_process: the score task's "
        "engine (chunks, written as the day's partition); validate: the validate task's GX schema "
        f"check, chunk by chunk; spark: `spark-submit --master {data.get('spark_master', 'local[2]')}`, "
        "JVM start included.",
        "",
        "| rows | step | seconds | rows/s | peak RSS MiB |",
        "|---|---|---|---|---|",
    ]
    for size in _sizes(data["sizes"]):
        for step in ("floor", "in_process", "validate", "spark"):
            facts = data["sizes"][size].get(step) or {}
            lines.append(
                f"| {int(size):,} | {step} | {fmt(facts.get('seconds'))} | "
                f"{fmt(facts.get('rows_per_s'), '', 0)} | {fmt(facts.get('peak_rss_mib'), '', 0)} |"
            )
    return [*lines, ""]


def write_batch_report(results_dir: Path = RESULTS_DIR, output: Path = BATCH_REPORT_MD) -> Path:
    """The batch benchmark alone, dated, as ``bench/batch.md`` (``make bench`` also puts it in the
    full report)."""
    results = {name: data for name, data in read_results(results_dir).items() if name == "batch"}
    info = results["batch"].get("machine") or machine() if results else machine()
    lines = [
        "# Batch scoring benchmark",
        "",
        f"Produced by `{COMMANDS['batch']}` on {info.get('date')}. Every figure: median (min-max, n = runs).",
        "",
        *_machine_lines(info),
        "| target | status | measured |",
        "|---|---|---|",
    ]
    for target in batch_targets(results):
        lines.append(f"| {target.name} | {target.status} | {target.value} |")
    lines += ["", *section_batch(results)]
    output.write_text("\n".join(lines).rstrip() + "\n")
    return output


def _dag_parse_target(results: dict[str, Any]) -> Target:
    """Judged on ``airflow dags report`` (the DAG processor's own timing, as the issue asks)."""
    files = _get(results, "dag_parse", "files") or {}
    report = _get(results, "dag_parse", "airflow_dags_report") or []
    slowest = max((float(row["seconds"]) for row in report if "seconds" in row), default=None)
    cold = max((m for m in (median(summary) for summary in files.values()) if m is not None), default=None)
    shown = f"slowest {slowest:.3f} s" if slowest is not None else ""
    if cold is not None:
        shown += f" (cold interpreter import, Airflow's own modules included: {cold:.3f} s)"
    return _judge("every DAG file parses < 0.5 s", COMMANDS["dag_parse"], slowest, lambda v: v < 0.5, shown)


def _serving_targets(results: dict[str, Any]) -> list[Target]:
    serving = _serving(results) or {}
    ours, theirs = _load_row(serving, "ct-serving"), _load_row(serving, "mlflow models serve")
    speedup = ours["qps"] / theirs["qps"] if ours and theirs and theirs["qps"] else None
    p99 = float(ours["p99_ms"]) if ours else None
    failed = _get(serving, "swaps", "failed_requests")
    # judged on the median of the rounds' paired ratios (bench.serving's shadow_cost)
    qps_share = _get(serving, "online", "shadow", "paired", "qps_ratio")
    added_p50 = _get(serving, "online", "shadow", "paired", "p50_added_ms_median")
    canary_failed = _get(serving, "online", "canary", "failed_requests")
    return [
        _judge(
            "shadow at 100%: champion QPS at least 90% of shadow off (1 row, concurrency 16)",
            COMMANDS["serving"],
            qps_share,
            lambda v: v >= 0.9,
            f"{qps_share:.0%}" if qps_share is not None else "",
        ),
        _judge(
            "shadow at 100%: at most +1 ms on p50 (1 row, concurrency 16)",
            COMMANDS["serving"],
            added_p50,
            lambda v: v <= 1,
            f"{added_p50:+.2f} ms" if added_p50 is not None else "",
        ),
        _judge(
            "canary steps and rollback under load: 0 failed requests",
            COMMANDS["serving"],
            float(canary_failed) if canary_failed is not None else None,
            lambda v: v == 0,
            f"{canary_failed} failed" if canary_failed is not None else "",
        ),
        _judge(
            "serving 3x the QPS of mlflow models serve (1 row, concurrency 16)",
            COMMANDS["serving"],
            speedup,
            lambda v: v >= 3,
            f"{speedup:.1f}x" if speedup is not None else "",
        ),
        _judge(
            "serving p99 < 25 ms (1 row, concurrency 16)",
            COMMANDS["serving"],
            p99,
            lambda v: v < 25,
            f"{p99:.1f} ms" if p99 is not None else "",
        ),
        _judge(
            "hot swaps under load: 0 failed requests",
            COMMANDS["serving"],
            float(failed) if failed is not None else None,
            lambda v: v == 0,
            f"{failed} failed" if failed is not None else "",
        ),
    ]


# --- sections -----------------------------------------------------------------------------------


def _missing(what: str, key: str) -> list[str]:
    return [f"Not measured: run `{COMMANDS[key]}` ({what}).", ""]


def section_latency(results: dict[str, Any]) -> list[str]:
    lines = ["## 1. End-to-end latency: data arrival to the new champion serving", ""]
    sizes = _get(results, "orchestrated", "sizes")
    if not sizes:
        return lines + _missing("real scheduler, 10k/100k/1M rows", "orchestrated")
    lines += [
        "Seconds: the task's start to end in Airflow. Peak RSS: the task process's own peak, as it "
        "reported it on finishing, or its process tree's (children included) sampled every second "
        "when that is higher; both count the preloaded libraries' shared copy-on-write pages.",
        "",
    ]
    for size in _sizes(sizes):
        data = sizes[size]
        lines += [
            f"**{int(size):,} rows**: arrival to serving {fmt(data.get('arrival_to_serving_s'))}; "
            f"tasks {fmt(data.get('tasks_total_s'))}; orchestration overhead {fmt(data.get('overhead_s'))}.",
            "",
            "| stage | seconds | peak RSS MiB | scheduler to task s |",
            "|---|---|---|---|",
        ]
        for stage, facts in (data.get("stages") or {}).items():
            lines.append(
                f"| {stage} | {fmt(facts.get('seconds'))} | {fmt(facts.get('peak_rss_mib'), '', 0)} | "
                f"{fmt(facts.get('scheduler_to_task_s'))} |"
            )
        lines.append("")
    return lines


def section_overhead(results: dict[str, Any]) -> list[str]:
    lines = ["## 2. Orchestration overhead: Airflow against the same steps in one process", ""]
    floor = _get(results, "pipeline", "floor", "sizes")
    if not floor:
        return lines + _missing("the floor", "floor")
    lines += [
        "| rows | floor total | floor peak RSS MiB | arrival to serving | ratio | tasks / floor | "
        "overhead per task |",
        "|---|---|---|---|---|---|---|",
    ]
    for size in _sizes(floor):
        over = overhead_at(results, size)
        peak = fmt(floor[size].get("peak_rss_mib"), "", 0)
        lines.append(
            f"| {int(size):,} | {fmt(pooled_floor(results, size))} | {peak} | "
            + (
                f"{over['arrival_to_serving_s']:.1f} s | {over['ratio']:.2f}x | {over['tasks_ratio']:.2f}x | "
                f"{over['overhead_per_task_s']:.2f} s |"
                if over
                else "not measured | - | - | - |"
            )
        )
    for size in _sizes(_get(results, "pipeline", "floor_after", "sizes")):
        before, after = floor_passes(results, size)
        lines += [
            "",
            f"At {int(size):,} rows the floor was measured before the orchestrated runs, {fmt(before)}, "
            f"and again after them, {fmt(after)}; the floor total above pools both passes, so a host "
            "whose speed drifted during the bench weighs on both sides of the ratio.",
        ]
    lines += ["", "Floor stages (seconds):", "", "| rows | " + " | ".join(_floor_stages(floor)) + " |"]
    lines.append("|---|" + "---|" * len(_floor_stages(floor)))
    for size in _sizes(floor):
        stages = floor[size].get("stages") or {}
        lines.append(
            f"| {int(size):,} | " + " | ".join(fmt(stages.get(s)) for s in _floor_stages(floor)) + " |"
        )
    if not _get(results, "orchestrated", "sizes"):
        lines += ["", *_missing("the orchestrated side", "orchestrated")]
    return [*lines, *_overhead_parts(results), *_cpu_by_stage(results), ""]


CPU_COLUMNS = {
    "user_s": ("user CPU s", 2, 1),
    "system_s": ("system CPU s", 2, 1),
    "minor_faults": ("page faults (k)", 0, 1e-3),
    "involuntary_switches": ("preempted (k)", 1, 1e-3),
}


def _cpu_by_stage(results: dict[str, Any]) -> list[str]:
    """Each stage's CPU accounting as a task process against the floor's, at the largest size
    both measured: where a step's extra seconds in a task go (kernel time, faults, lost cores)."""
    floor = _get(results, "pipeline", "floor", "sizes") or {}
    tasks = _get(results, "orchestrated", "sizes") or {}
    both = [size for size in _sizes(floor) if floor[size].get("cpu") and size in tasks]
    if not both:
        return []
    size = both[-1]
    floor_cpu, task_stages = floor[size]["cpu"], tasks[size].get("stages") or {}
    header = " | ".join(f"{label}: task / floor" for label, _, _ in CPU_COLUMNS.values())
    lines = [
        "",
        f"CPU accounting per stage at {int(size):,} rows, a task's process against the same step in "
        "the floor's process (medians; register's infra check runs in a child, counted in neither):",
        "",
        f"| stage | {header} |",
        "|---|" + "---|" * len(CPU_COLUMNS),
    ]
    for stage in floor_cpu:
        cells = []
        for key, (_, digits, scale) in CPU_COLUMNS.items():
            pair = [median(_get(task_stages, stage, key)), median(_get(floor_cpu, stage, key))]
            cells.append(" / ".join("-" if v is None else f"{v * scale:.{digits}f}" for v in pair))
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return lines


OVERHEAD_PARTS = {
    "arrival_to_event_s": "arrival to asset event (watcher, then the triggerer's 1 s loop)",
    "event_to_run_s": "event to DAG run",
    "run_to_first_task_s": "run to first task",
    "between_tasks_s": "between tasks",
    "upstream_end_to_scheduled_s": "of which: upstream end to next scheduled",
    "last_task_to_serving_s": "last task end to serving (negative: served before deploy ended)",
}


def _overhead_parts(results: dict[str, Any]) -> list[str]:
    """Where the orchestrated time outside the tasks goes, and what the idle stack costs."""
    sizes = _get(results, "orchestrated", "sizes") or {}
    if not sizes:
        return []
    names = _sizes(sizes)
    lines = [
        "",
        "Where the time outside the tasks goes (seconds, median of the runs):",
        "",
        "| part | " + " | ".join(f"{int(size):,} rows" for size in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for key, label in OVERHEAD_PARTS.items():
        values = [median(_get(sizes, size, "overhead_parts", key)) for size in names]
        lines.append(f"| {label} | " + " | ".join("-" if v is None else f"{v:.2f}" for v in values) + " |")
    idle = _get(results, "orchestrated", "idle_cpu_percent")
    if idle:
        shown = ", ".join(f"{name} {value:.1f}%" for name, value in idle.items())
        lines += ["", f"CPU of the idle Airflow components (% of one core, between runs): {shown}."]
    return lines


def _floor_stages(floor: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for data in floor.values():
        names += [s for s in data.get("stages") or {} if s not in names]
    return names


def section_scale(results: dict[str, Any]) -> list[str]:
    lines = ["## 3. Scale: time and peak memory per stage", ""]
    scale = _get(results, "pipeline", "scale")
    if not scale or not scale.get("sizes"):
        return lines + _missing("1M, 5M, 10M rows", "scale")
    lines += [
        f"Generated data with {scale.get('features', '?')} features; each stage in its own process.",
        "",
    ]
    lines += ["| rows | stage | seconds | peak RSS MiB |", "|---|---|---|---|"]
    for size in _sizes(scale["sizes"]):
        data = scale["sizes"][size]
        for stage, facts in (data.get("stages") or {}).items():
            lines.append(
                f"| {int(size):,} | {stage} | {fmt(facts.get('seconds'))} | "
                f"{fmt(facts.get('peak_rss_mib'), '', 0)} |"
            )
        lines.append(f"| {int(size):,} | **total** | {fmt(data.get('total_s'))} | |")
    exponents = scale.get("growth_exponent") or {}
    growth = {stage: value for stage, value in exponents.items() if value is not None}
    if growth:
        shown = ", ".join(f"{stage} {value:.2f}" for stage, value in growth.items())
        lines += ["", f"Growth exponent (time ~ rows^k; 1 is linear): {shown}."]
    else:
        lines += ["", "Growth exponent: needs two or more sizes measured."]
    return [*lines, ""]


def section_validation(results: dict[str, Any]) -> list[str]:
    lines = ["## 4. Validation throughput: the GX suite against plain pandas", ""]
    data = results.get("validation")
    if not data:
        return lines + _missing("GX against pandas on 1M rows", "validation")
    lines += [
        f"{data['rows']:,} clean churn rows, GX and pandas taking turns. GX as the pipeline runs it "
        "(`Batch.validate` + Data Docs): "
        f"{fmt(data['gx_s'])} = {data['gx_rows_per_s']:,.0f} rows/s; "
        + (f"without Data Docs {fmt(data['gx_without_docs_s'])}; " if data.get("gx_without_docs_s") else "")
        + f"the same rules in plain pandas: {fmt(data['pandas_s'], 's', 3)} = "
        f"{data['pandas_rows_per_s']:,.0f} rows/s. Ratio **{data['ratio']:.1f}x**.",
        "",
    ]
    if data.get("fixed_s"):
        lines += [f"GX on 1,000 rows (its fixed cost per batch): {fmt(data['fixed_s'])}.", ""]
    return lines


def section_dag_parse(results: dict[str, Any]) -> list[str]:
    lines = ["## 5. DAG parse time and scheduler-to-task latency", ""]
    data = results.get("dag_parse")
    if not data:
        lines += _missing("parse time per DAG file", "dag_parse")
    else:
        report = {row["file"]: row for row in data.get("airflow_dags_report") or []}
        lines += ["| file | cold import | `airflow dags report` | DAGs | tasks |", "|---|---|---|---|---|"]
        for name in sorted(set(data.get("files") or {}) | set(report)):
            row = report.get(name, {})
            seconds = f"{row['seconds']:.3f} s" if "seconds" in row else "-"
            dags = (
                ", ".join(row.get("dags") or [])
                if isinstance(row.get("dags"), list)
                else row.get("dags", "-")
            )
            lines.append(
                f"| {name} | {fmt((data.get('files') or {}).get(name), 's', 3)} | {seconds} | {dags} | "
                f"{row.get('task_num', '-')} |"
            )
        lines += [
            "",
            "Cold import: a fresh interpreter with the Airflow SDK loaded executes the file. "
            "`airflow dags report`: the DAG processor's own timing, in one process for all files.",
            "",
        ]
    sizes = _get(results, "orchestrated", "sizes") or {}
    latencies = [
        (size, stage, facts.get("scheduler_to_task_s"))
        for size in _sizes(sizes)
        for stage, facts in (sizes[size].get("stages") or {}).items()
    ]
    if latencies:
        lines += ["| rows | task | scheduler to task |", "|---|---|---|"]
        lines += [f"| {int(size):,} | {stage} | {fmt(value)} |" for size, stage, value in latencies]
        lines.append("")
    else:
        lines += _missing("scheduler-to-task latency", "orchestrated")
    return lines


def section_serving(results: dict[str, Any]) -> list[str]:
    lines = ["## 6. Serving", ""]
    serving = _serving(results)
    if not serving:
        return lines + _missing("this service against mlflow models serve", "serving")
    lines += [
        "| server | rows/request | concurrency | requests | QPS | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in serving.get("load") or []:
        lines.append(
            f"| {r['server']} | {r['rows']} | {r['concurrency']} | {r['requests']} | {r['qps']} | "
            f"{r['p50_ms']} | {r['p99_ms']} | {r['errors']} |"
        )
    swaps = serving.get("swaps") or {}
    if swaps:
        lines += [
            "",
            f"Hot swaps under load: {swaps.get('swaps')} swaps, {swaps.get('requests')} requests, "
            f"{swaps.get('failed_requests')} failed, p99 {swaps.get('p99_ms')} ms; a reload took "
            f"{swaps.get('reload_s_median')} s (median). Details: `bench/serving.md`.",
        ]
    online = serving.get("online") or {}
    if online:
        shadow, off = online["shadow"]["shadow"], online["shadow"]["off"]
        canary = online["canary"]
        ratio = _get(online, "shadow", "paired", "qps_ratio")
        paired = f"; the median of the rounds' paired QPS ratios was {ratio:.0%}" if ratio is not None else ""
        lines += [
            "",
            f"Online validation: with a challenger in shadow at 100% the champion served "
            f"{shadow['qps']} QPS (p50 {shadow['p50_ms']} ms) against {off['qps']} QPS "
            f"(p50 {off['p50_ms']} ms) with none (concurrency 16, single row, medians of turns{paired}); a "
            f"canary staged, stepped to {canary['steps'][-1]:.0%} and rolled back under load failed "
            f"{canary['failed_requests']} of {canary['requests']} requests.",
        ]
    return [*lines, ""]


def section_bounds(results: dict[str, Any]) -> list[str]:
    notes = [
        f"- **{name}**: {data['profile_note']}"
        for name, data in sorted(results.items())
        if isinstance(data, dict) and data.get("profile_note")
    ]
    if NOTES.exists():
        notes += ["", NOTES.read_text().strip()]
    if not notes:
        return []
    return ["## What bounds the rest", "", *notes, ""]


def _machine_lines(info: dict[str, Any]) -> list[str]:
    versions = ", ".join(f"{name} {v}" for name, v in (info.get("versions") or {}).items())
    return [
        f"Machine: {info.get('cpus')} CPUs ({info.get('cpu')}), {info.get('memory_gib')} GiB, "
        f"Python {info.get('python')}; {versions}.",
        "",
    ]


def render(results: dict[str, Any], info: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The Markdown report and its JSON twin (targets, figures and the machine)."""
    judged = targets(results)
    dates = sorted({str(_get(data, "machine", "date")) for data in results.values() if _get(data, "machine")})
    lines = [
        "# Benchmarks: how fast data becomes a served model",
        "",
        "Produced by `make bench` (`python -m bench.suite`, then `python -m bench.report`). Every "
        "figure: median (min-max, n = runs).",
        "",
        *_machine_lines(info),
        f"Results measured on: {', '.join(dates) or 'nothing yet'}.",
        "",
        "## Targets",
        "",
        "| target | status | measured |",
        "|---|---|---|",
    ]
    for target in judged:
        shown = target.value if target.status != "not measured" else f"run `{target.command}`"
        lines.append(f"| {target.name} | {target.status} | {shown} |")
    lines.append("")
    for section in (
        section_latency,
        section_overhead,
        section_scale,
        section_validation,
        section_dag_parse,
        section_serving,
        section_batch,
        section_bounds,
    ):
        lines += section(results)
    payload = {
        "machine": info,
        "targets": [asdict(t) for t in judged],
        "overhead": {
            size: overhead_at(results, size) for size in _sizes(_get(results, "pipeline", "floor", "sizes"))
        },
        "results": {name: _without_raw_runs(data) for name, data in results.items()},
    }
    return "\n".join(lines).rstrip() + "\n", payload


def _without_raw_runs(data: Any) -> Any:
    """Results without per-run records (``runs`` lists of dicts), small enough to commit."""
    if isinstance(data, dict):
        return {
            key: _without_raw_runs(value)
            for key, value in data.items()
            if not (key == "runs" and isinstance(value, list) and value and isinstance(value[0], dict))
        }
    if isinstance(data, list):
        return [_without_raw_runs(item) for item in data]
    return data


def write_report(results_dir: Path = RESULTS_DIR, output: Path = REPORT_MD) -> Path:
    """Render every result in ``results_dir`` to ``output`` (Markdown) and its ``.json`` twin."""
    results = read_results(results_dir)
    text, payload = render(results, machine())
    output.write_text(text)
    output.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    parser.add_argument("--output", type=Path, default=REPORT_MD)
    args = parser.parse_args(argv)
    path = write_report(args.results, args.output)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
