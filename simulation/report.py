"""The simulation's report: markdown, plots, JSON, and the same logged to MLflow."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from simulation.claims import claims, days_label, periods
from simulation.deployment_claims import audits, labels_spent, promotions, skewed_challengers, stable_period
from simulation.records import (
    ALWAYS_DEPLOY,
    GATE_OUTCOMES,
    GATE_RECORDS,
    GATED,
    GATED_CANARY,
    GATED_SHADOW,
    LEVEL0,
    NOT_PROMOTED,
    ONLINE_POLICIES,
    ORACLE,
    PIPELINE_POLICIES,
    POINT_GATE,
    POLICIES,
    POLICY_LABELS,
    DayRecord,
    SimulationResult,
    fmt,
    mean_of,
)

REPORT_NAME = "simulation.md"


def write_report(result: SimulationResult, out_dir: Path | str) -> Path:
    """Write ``simulation.md``, the PNG plots and ``simulation.json`` into ``out_dir``; return the report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(result, out)
    scenario = result.scenario
    full = result.mode == "full"
    direction = "higher is better" if result.higher_is_better else "lower is better"
    lines = [
        f"# Closed-loop simulation: {result.pipeline} ({result.mode} mode)",
        "",
        (f"Run on {result.date}. " if result.date else "")
        + f"{scenario.days} days x {scenario.rows_per_day} rows, seed {scenario.seed}; metric "
        f"`{result.metric}` ({direction}); ran in {result.seconds:.0f} s. Pipeline settings: "
        + ", ".join(f"{key} `{value}`" for key, value in result.settings.items())
        + ".",
        *_full_mode_lines(result),
        "",
        "Each day the model each policy serves is scored on that day's labelled traffic *before* "
        "anything trains on it. Then the batches whose labels arrived are validated with the "
        "pipeline's GX suite (a failing one is quarantined and the run trains nothing), and each "
        "policy acts: **gated** trains on the config's window of accepted snapshots (one per run) or, "
        "with `training.recent_windows`, on the newest of them that best predict the newest rows, "
        "with the time-aware split and the real `evaluate.decide` gate; **always_deploy** trains the same "
        "model and deploys it unconditionally; **level0** keeps the day-1 model; **oracle** trains on "
        "the first part of the day's own traffic and is scored on the rest (an upper bound on "
        "adapting; with one day of data, a pipeline with more data can beat it in stable periods). "
        + (
            "**point_gate** trains the same model and gates it on point estimates "
            "(`promotion.confidence` unset); **gated_shadow** and **gated_canary** gate it like "
            "gated, then stage it as the service would (shadow: it scores the requests, the champion "
            "answers; canary: it answers its share, sticky by id) and the library's online decision "
            "(`include.ct.online.decision.decide`) judges it at each day's end on the labels that "
            "arrived; their runs wait while a version is under validation. "
            if result.policy(GATED_SHADOW)
            else ""
        )
        + (
            "Fast mode: library calls, no Airflow, no MLflow, no prediction service."
            if result.mode == "fast"
            else ""
        ),
        "",
        "## Events",
        "",
        "| day | event |",
        "|---:|---|",
        *(f"| {day} | {label} |" for day, label in scenario.event_marks()),
        "",
        "## Claims",
        "",
        "| | claim | measured |",
        "|---|---|---|",
    ]
    for claim in claims(result):
        mark = {True: "✓", False: "✗", None: "#"}[claim.holds]
        lines.append(f"| {mark} | {claim.statement} | {claim.detail} |")
    lines += [
        "",
        "✓ holds, ✗ does not hold on this stream, # a count (no pass mark).",
        "",
        f"## Mean {result.metric} per policy",
        "",
    ]
    spans = periods(scenario)
    lines.append(
        "| policy | "
        + " | ".join(f"{label} ({days_label(lo, hi)})" for label, lo, hi in spans)
        + " | all days | new versions |"
    )
    lines.append("|---|" + "---:|" * (len(spans) + 2))
    present = [name for name in POLICIES if result.policy(name)]
    for name in present:
        rows = result.policy(name)
        cells = [fmt(mean_of([r.value for r in rows if lo <= r.day <= hi])) for _, lo, hi in spans]
        versions = "daily" if name == ORACLE else str(sum(r.new_version for r in rows))
        overall = fmt(mean_of([r.value for r in rows]))
        lines.append(f"| {POLICY_LABELS[name]} | {' | '.join(cells)} | {overall} | {versions} |")
    lines += deployment_lines(result)
    lines += ["", "## Plots", "", *(f"![{p.stem}]({p.name})" for p in plots), "", "## Gate decisions", ""]
    lines += ["| day | decision | reasons |", "|---:|---|---|"]
    for record in result.policy(GATED):
        if record.outcome in GATE_OUTCOMES:
            why = "; ".join(record.decision_reasons) if record.decision_reasons else record.reason
            lines.append(f"| {record.day} | {record.outcome} | {why} |")
    lines += ["", "## Days", ""]
    others = [name for name in present if name != GATED]
    lines += [
        f"Each cell: {result.metric} on the day's traffic and the version that served it, then what "
        "happened at the day's end: + a new champion, x the gate rejected, ? the gate could not tell "
        "(inconclusive), S staged for online "
        "validation, P promoted online, R rolled back online, Q quarantined. Gate: gated's decision "
        "after the day's run (challenger vs champion on the gate's held-out rows).",
        "",
        "| day | events | gated | gate | trained on days | "
        + " | ".join(others)
        + " |"
        + (" DAG run |" if full else ""),
        "|---:|---|---|---|---|" + "---|" * len(others) + ("---:|" if full else ""),
    ]
    by_day: dict[int, dict[str, DayRecord]] = {}
    for record in result.records:
        by_day.setdefault(record.day, {})[record.policy] = record
    for day in sorted(by_day):
        row = by_day[day]
        gate = row[GATED]
        if gate.outcome in ("promoted", *NOT_PROMOTED):
            word = {record: said for said, record in GATE_RECORDS.items()}[gate.outcome]
            verdict = f"{word} {fmt(gate.challenger_value)}"
            verdict += f" vs {fmt(gate.champion_value)}" if gate.champion_value is not None else ""
        else:
            verdict = gate.outcome
        lines.append(
            f"| {day} | {', '.join(gate.events)} | {day_cell(gate)} | {verdict} | "
            f"{day_span(gate.training_days)} | "
            + " | ".join(day_cell(row[name]) for name in others)
            + " |"
            + (f" {fmt(gate.run_seconds, 0)} s |" if full else "")
        )
    report = out / REPORT_NAME
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "simulation.json").write_text(
        json.dumps({**result.to_dict(), "claims": [asdict(c) for c in claims(result)]}, indent=1),
        encoding="utf-8",
    )
    return report


def day_cell(record: DayRecord) -> str:
    """A policy's day in the day table: its quality, the version serving, and what it did."""
    marks = {"promote": " P", "rollback": " R"}.get(record.online_action, "")
    marks += {
        "promoted": " +",
        "deployed": " +",
        "rejected": " x",
        "inconclusive": " ?",
        "staged": " S",
        "quarantined": " Q",
    }.get(record.outcome, "")
    share = f" ({record.challenger_share:.0%} canary)" if record.challenger_share else ""
    return f"{fmt(record.value)} v{record.served_version}{share}{marks}"


def deployment_lines(result: SimulationResult) -> list[str]:
    """The deployment policies side by side (fast mode, where they all ran)."""
    names = [
        name for name in (POINT_GATE, GATED, GATED_SHADOW, GATED_CANARY, ALWAYS_DEPLOY) if result.policy(name)
    ]
    if GATED_SHADOW not in names:
        return []
    first, last = stable_period(result.scenario)
    lines = [
        "",
        "## Deployment policies",
        "",
        "Bad promotions: new champions significantly worse than the version they replaced on the "
        "next 3 days' traffic (paired interval at the gate's confidence; promotions with 3 days "
        "after them). Skewed challenger: under the training/serving skew event, a version "
        "trained and gated while the offline feature was in the other unit (live traffic never "
        "is). Labels spent: labelled pairs the online decisions read.",
        "",
        f"| policy | promotions | in the stable period (days {first}-{last}) | bad promotions | "
        f"mean {result.metric} | skewed challenger | labels spent |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for name in names:
        rows = result.policy(name)
        judged = audits(rows)
        bad = sum(bool(a["significantly_worse"]) for a in judged)
        skewed = "; ".join(
            f"v{s.version}: {s.fate}"
            + ("" if s.decided_day is None else f" after {s.decided_day - s.staged_day} d")
            + f", max share {s.max_share:.0%}"
            for s in skewed_challengers(result, name)
        )
        lines.append(
            f"| {POLICY_LABELS[name]} | {promotions(rows)} | {promotions(rows, first, last)} | "
            f"{bad} of {len(judged)} | {fmt(mean_of([r.value for r in rows]))} | {skewed or '-'} | "
            f"{labels_spent(rows) if name in ONLINE_POLICIES else '-'} |"
        )
    return lines


def day_span(days: Sequence[int]) -> str:
    """Days as compact ranges: [1, 2, 3, 7] -> "1-3, 7"."""
    spans: list[list[int]] = []
    for day in sorted(days):
        if spans and day == spans[-1][1] + 1:
            spans[-1][1] = day
        else:
            spans.append([day, day])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _full_mode_lines(result: SimulationResult) -> list[str]:
    """How a full-mode run was done and how long it took (empty in fast mode)."""
    if result.mode != "full":
        return []
    info = result.run_info
    runs = [r.run_seconds for r in result.policy(GATED) if r.run_seconds is not None]
    days = result.scenario.days
    versions = ", ".join(
        f"{name} {info[key]}" for name, key in (("Airflow", "airflow"), ("MLflow", "mlflow")) if key in info
    )
    return [
        "",
        "Full mode: the **gated** policy is the real pipeline `"
        + str(info.get("pipeline", result.pipeline))
        + "`. Each day the day's traffic is sent to the prediction service process "
        "(`python -m include.ct_serving serve`, `POST /v1/models/<name>/predict`) and scored on "
        "its answers; then the batches whose labels arrived land as CSV files in the landing "
        "zone and one real Airflow run (`airflow dags test`, SQLite metadata DB) extracts, "
        "validates, trains, evaluates, gates, registers and deploys against a `mlflow server` "
        "process (SQLite store, local artifacts); the deploy task reloads the service and "
        "smoke-tests it over HTTP. What happened is read back from Airflow's task states, the "
        "MLflow runs and model versions, and the data folders. The baselines are library "
        f"computations on the same stream{' (' + versions + ')' if versions else ''}.",
        "",
        f"Timing: {result.seconds:.0f} s in all, {info.get('setup_seconds', 0):.0f} s of it starting "
        f"the services; {(result.seconds - info.get('setup_seconds', 0)) / days:.0f} s per simulated "
        f"day; DAG runs median {fmt(_median(runs), 0)} s, max {fmt(max(runs, default=None), 0)} s"
        + (
            f"; {info['cpu_seconds_per_day']:.0f} CPU-seconds per day (harness and DAG runs, not the servers)"
            if "cpu_seconds_per_day" in info
            else ""
        )
        + (f"; {info['cpus']} CPUs" if "cpus" in info else "")
        + (f", load average {info['load_average']} at the end" if "load_average" in info else "")
        + ".",
    ]


def _median(values: list[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def write_plots(result: SimulationResult, out_dir: Path) -> list[Path]:
    """Quality over time per policy and served version over time, events marked; returns the PNGs."""
    from include.ct.modeling.plots import pyplot

    plt = pyplot()
    scenario = result.scenario
    styles = {
        POINT_GATE: (0, (1, 1)),
        GATED: "-",
        GATED_SHADOW: (0, (5, 1)),
        GATED_CANARY: (0, (3, 1, 1, 1)),
        ALWAYS_DEPLOY: "--",
        LEVEL0: ":",
        ORACLE: "-.",
    }

    def mark_events(ax: Any) -> None:
        if scenario.label_delay_start is not None:
            ax.axvspan(
                scenario.label_delay_start - 0.5,
                min(scenario.days, scenario.label_delay_start + scenario.label_delay_length - 1) + 0.5,
                color="grey",
                alpha=0.15,
            )
        for day, label in scenario.event_marks():
            ax.axvline(day, color="grey", linewidth=0.8, linestyle="--")
            ax.text(
                day,
                1.0,
                f" {label}",
                rotation=90,
                va="top",
                ha="left",
                fontsize=7,
                transform=ax.get_xaxis_transform(),
            )

    fig, ax = plt.subplots(figsize=(11, 5))
    for name in POLICIES:
        rows = [r for r in result.policy(name) if r.value is not None]
        if not rows:
            continue
        ax.plot(
            [r.day for r in rows],
            [r.value for r in rows],
            linestyle=styles[name],
            label=POLICY_LABELS[name],
            linewidth=1.4,
            marker="." if name == GATED else None,
        )
    promoted = [r for r in result.policy(GATED) if r.outcome == "promoted" and r.day < scenario.days]
    served_next = {r.day: r.value for r in result.policy(GATED)}
    points = [(r.day + 1, served_next.get(r.day + 1)) for r in promoted]
    ax.scatter(
        [d for d, v in points if v is not None],
        [v for _, v in points if v is not None],
        marker="^",
        color="green",
        zorder=3,
        label="gated: first day of a promoted version",
    )
    mark_events(ax)
    ax.set_xlabel("day")
    ax.set_ylabel(f"{result.metric} on the day's traffic")
    ax.set_title(f"{result.pipeline}: served model quality per policy ({result.mode} mode)")
    ax.legend(fontsize=8, loc="lower left")
    quality = _save(plt, fig, out_dir / "simulation_quality.png")

    fig, ax = plt.subplots(figsize=(11, 3.5))
    for name in PIPELINE_POLICIES:
        rows = result.policy(name)
        if not rows:
            continue
        ax.step(
            [r.day for r in rows],
            [r.served_version for r in rows],
            where="post",
            linestyle=styles[name],
            label=POLICY_LABELS[name],
        )
    rejected = [r.day for r in result.policy(GATED) if r.outcome in NOT_PROMOTED]
    version = {r.day: r.served_version for r in result.policy(GATED)}
    ax.scatter(
        rejected,
        [version[d] for d in rejected],
        marker="x",
        color="red",
        zorder=3,
        label="gated: challenger not promoted",
    )
    mark_events(ax)
    ax.set_xlabel("day")
    ax.set_ylabel("served version")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=4)
    versions = _save(plt, fig, out_dir / "simulation_versions.png")
    return [quality, versions]


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def log_to_mlflow(
    result: SimulationResult,
    paths: list[Path],
    tracking_uri: str | None = None,
    *,
    experiment: str = "ct_simulation",
) -> str:
    """Log the report files, per-day metrics and the claims to an MLflow run; return its run id.

    Uses its own client (``tracking_uri``, else ``MLFLOW_TRACKING_URI``): no global MLflow state.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    scenario = result.scenario
    run = client.create_run(
        experiment_id,
        run_name=f"{result.pipeline}-{result.mode}-{scenario.days}d-seed{scenario.seed}",
        tags={"ct.pipeline": result.pipeline, "ct.simulation_mode": result.mode},
    )
    run_id = str(run.info.run_id)
    stamp = int(time.time() * 1000)
    metrics = [
        Metric(f"{r.policy}_{result.metric}", r.value, stamp, r.day)
        for r in result.records
        if r.value is not None
    ] + [Metric(f"{r.policy}_served_version", float(r.served_version), stamp, r.day) for r in result.records]
    summary: dict[str, float] = {"seconds": result.seconds}
    for claim in claims(result):
        if claim.value is not None:
            summary[f"claim_{claim.key}"] = claim.value
        if claim.holds is not None:
            summary[f"claim_{claim.key}_holds"] = float(claim.holds)
    for name in POLICIES:
        if (mean := mean_of([r.value for r in result.policy(name)])) is not None:
            summary[f"mean_{name}_{result.metric}"] = mean
    metrics += [Metric(key, value, stamp, 0) for key, value in summary.items()]
    params = [Param(k, str(v)) for k, v in {**scenario.model_dump(), **result.settings}.items()]
    try:
        client.log_batch(run_id, params=params, tags=[RunTag("ct.claims", _claims_line(result))])
        for start in range(0, len(metrics), 1000):  # the tracking API takes at most 1000 per batch
            client.log_batch(run_id, metrics=metrics[start : start + 1000])
        for path in paths:
            client.log_artifact(run_id, str(path), artifact_path="simulation")
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)
    return run_id


def _claims_line(result: SimulationResult) -> str:
    marks = {True: "holds", False: "fails", None: "count"}
    return "; ".join(f"{c.key}: {marks[c.holds]} ({c.detail})" for c in claims(result))[:5000]
