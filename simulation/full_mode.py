"""Full mode: what one real CT DAG run did, as the same per-day record as fast mode."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulation.policies import no_batch_reason
from simulation.records import GATE_RECORDS, GATED, DayRecord
from simulation.scoring import as_number

_BATCH_DAY = re.compile(r"day_(\d+)")
_FAILED_TASK_STATES = frozenset({"failed", "upstream_failed"})


def batch_day(file_name: str) -> int | None:
    """The traffic day of a landed batch file (``day_0007.csv`` -> 7); None for other names."""
    found = _BATCH_DAY.search(Path(file_name).name)
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class PipelineRun:
    """What one real CT DAG run did, read back from Airflow's metadata DB, MLflow and the data folders."""

    run_id: str
    state: str  # the DAG run's final state: success | failed
    tasks: dict[str, str]  # task_id -> state
    pending: list[str]  # batch files waiting in the landing zone when the run started
    trigger: str  # as given in the run conf (and tagged ct.trigger on the MLflow run)
    reason: str
    seconds: float | None = None  # the DAG run's duration
    quarantined: dict[str, str] = field(default_factory=dict)  # file -> what it broke (its report)
    decision: dict[str, Any] | None = None  # the evaluate step's decision: promote, reasons, values
    version: str | None = None  # the model version registered from the challenger, if any
    version_tags: dict[str, str] = field(default_factory=dict)  # its tags after the run
    champion: str | None = None  # the version holding the champion alias after the run
    training_days: list[int] = field(default_factory=list)  # traffic days in the challenger's window
    error: str = ""  # the end of the run's output when it failed other than at validate


def _value(raw: Any) -> float | None:
    return None if raw is None else as_number(float(raw))


def pipeline_record(
    run: PipelineRun,
    *,
    day: int,
    value: float | None,
    holdout_value: float | None,
    served_version: int,
    predecessor_value: float | None = None,
    waiting: Sequence[tuple[int, int]] = (),
    events: Sequence[str] = (),
) -> DayRecord:
    """The gated policy's record of ``day`` from what its real DAG run did (full mode).

    Same vocabulary as fast mode: quarantined (failed at validate), skipped (nothing new),
    rejected or promoted by the gate; ``failed`` when the run broke elsewhere, e.g. a promoted
    challenger that failed infra validation or was rolled back by the deploy checks.
    """
    common: dict[str, Any] = {
        "policy": GATED,
        "day": day,
        "value": value,
        "holdout_value": holdout_value,
        "served_version": served_version,
        "new_days": sorted(d for f in run.pending if (d := batch_day(f)) is not None),
        "quarantined_days": sorted(d for f in run.quarantined if (d := batch_day(f)) is not None),
        "predecessor_value": predecessor_value,
        "events": list(events),
        "run_seconds": run.seconds,
    }
    if run.quarantined:
        why = "; ".join(f"{name}: {broke}" for name, broke in sorted(run.quarantined.items()))
        reason = f"run failed at validate: the GX suite quarantined {why}"
        return DayRecord(**common, trigger=run.trigger, reason=reason, outcome="quarantined")
    if run.tasks.get("extract") == "skipped" or (run.state == "success" and not run.pending):
        return DayRecord(**common, trigger="none", reason=no_batch_reason(waiting), outcome="skipped")
    decision = run.decision
    if decision is None:
        broken = sorted(task for task, state in run.tasks.items() if state in _FAILED_TASK_STATES)
        reason = f"run {run.state} before a gate decision (tasks {', '.join(broken) or 'none'} failed)"
        if run.error:
            reason += f": {run.error.strip().splitlines()[-1][:300]}"
        return DayRecord(
            **common, trigger=run.trigger, reason=reason, outcome="failed", training_days=run.training_days
        )
    gate: dict[str, Any] = {
        "decision_reasons": [str(r) for r in decision.get("reasons") or []],
        "challenger_value": _value(decision.get("challenger")),
        "champion_value": _value(decision.get("champion")),
        "training_days": run.training_days,
    }
    if not decision.get("promote"):
        kept = GATE_RECORDS.get(str(decision.get("outcome")), "rejected")
        return DayRecord(**common, trigger=run.trigger, reason=run.reason, outcome=kept, **gate)
    if run.version is not None and run.champion == run.version and run.tasks.get("deploy") == "success":
        return DayRecord(**common, trigger=run.trigger, reason=run.reason, outcome="promoted", **gate)
    verdict = run.version_tags.get("ct.decision", "not deployed")
    why = run.version_tags.get("ct.decision_reason", "")
    failed = [task for task in ("register", "deploy") if run.tasks.get(task) in _FAILED_TASK_STATES]
    reason = (
        f"the gate promoted the challenger but version {run.version or '(none)'} did not become "
        f"champion ({verdict}{', ' + ', '.join(failed) + ' failed' if failed else ''})"
        + (f": {why[:300]}" if why else "")
    )
    return DayRecord(**common, trigger=run.trigger, reason=reason, outcome="failed", **gate)
