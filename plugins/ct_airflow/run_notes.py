"""Why a run exists, shown where users look: the Airflow run note and the MLflow run's tags.

``describe_trigger`` turns a run's type, conf and triggering Asset events into (kind, reason);
the operators tag it on the MLflow run, and the listener below writes it as the run's note when
the scheduler starts the run, so the Airflow grid shows the reason of every scheduled,
data-arrival, backfill and manual run. When the run ends, a second line gives the gate's
outcome (promote, reject or inconclusive) and why, and a third the online validation's outcome
(promoted or rolled back) where the pipeline deploys through shadow or canary. A note someone
already wrote is never replaced.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)

RUN_TYPE_TRIGGERS = {
    "asset_triggered": "data_arrival",
    "scheduled": "schedule",
    "backfill": "backfill",
    "manual": "manual",
}
NOTED_DAG_PREFIX = "ct_"
# The trigger form's default reason: Trigger works in one click, and the run note still says why.
MANUAL_REASON = "manual run"


def describe_trigger(
    run_type: str,
    conf: Mapping[str, Any],
    asset_payloads: Iterable[Mapping[str, Any]] = (),
    *,
    run_after: datetime | None = None,
    logical_date: datetime | None = None,
    params: Mapping[str, Any] | None = None,
) -> tuple[str, str]:
    """(kind, reason) of a run: the conf's ``trigger``/``reason`` (set by the monitor or the
    trigger form) win; otherwise they follow from the run type and the Asset events' payloads.
    ``params`` count for manual runs only: every other run carries the form's default."""
    payloads = list(asset_payloads)
    announced = {str(payload["trigger"]) for payload in payloads if payload.get("trigger")}
    from_assets = announced.pop() if run_type == "asset_triggered" and len(announced) == 1 else None
    kind = str(conf.get("trigger") or from_assets or RUN_TYPE_TRIGGERS.get(run_type, run_type))
    reason = str(conf.get("reason") or "")
    if not reason and run_type == "manual":
        reason = str((params or {}).get("reason") or "")
    if not reason and run_type == "asset_triggered":
        reasons: list[str] = []
        for payload in payloads:
            text = payload.get("reason") or (
                f"new data: {', '.join(payload['files'])}" if payload.get("files") else ""
            )
            if text and text not in reasons:
                reasons.append(text)
        reason = "; ".join(reasons) or "new data: asset event"
    if not reason and run_type == "scheduled" and run_after is not None:
        reason = f"scheduled run ({run_after:%Y-%m-%d %H:%M} UTC)"
    if not reason and run_type == "backfill" and logical_date is not None:
        reason = f"backfill of {logical_date:%Y-%m-%d %H:%M} UTC"
    return kind, reason or "triggered by hand"


def run_note(kind: str, reason: str) -> str:
    """The run note shown in the Airflow UI."""
    return f"Trigger: {kind}. {reason}"


@hookimpl
def on_dag_run_running(dag_run: Any, msg: str) -> None:
    """Scheduler side: note why a continuous-training run started, unless it has a note."""
    if not str(dag_run.dag_id).startswith(NOTED_DAG_PREFIX) or dag_run.note:
        return
    payloads = [(event.extra or {}).get("payload") or {} for event in dag_run.consumed_asset_events]
    kind, reason = describe_trigger(
        str(getattr(dag_run.run_type, "value", dag_run.run_type)),
        dag_run.conf or {},
        payloads,
        run_after=dag_run.run_after,
        logical_date=dag_run.logical_date,
    )
    dag_run.note = run_note(kind, reason)
    log.info("%s %s: %s", dag_run.dag_id, dag_run.run_id, dag_run.note)


GATE_TASK = "evaluate"


def gate_note(decision: Mapping[str, Any]) -> str:
    """The note's second line: the gate's outcome and its deciding reason, e.g.
    ``Gate: inconclusive. roc_auc vs champion v3 on the same rows: improvement +0.0004 [...]``."""
    outcome = str(decision.get("outcome") or ("promote" if decision.get("promote") else "reject"))
    reasons = [str(reason) for reason in decision.get("reasons") or []]
    deciding = [r for r in reasons if "improvement" in r or "drops by" in r or "threshold" in r]
    return f"Gate: {outcome}. " + "; ".join(deciding[-2:] or reasons[-1:])


DEPLOY_TASK = "deploy"
ONLINE_OUTCOMES = {"promote": "promoted", "rollback": "rolled back", "staged": "still staged"}


def online_note(online: Mapping[str, Any]) -> str:
    """The note's third line: the outcome, the traffic steps that led to it and why, e.g.
    ``Online: rolled back after canary at 5% -> 25%. guardrail: error rate ...``."""
    outcome = str(online.get("outcome") or "")
    steps = [str(step) for step in online.get("steps") or []]
    path = f" after {' -> '.join(steps)}" if steps and outcome != "staged" else ""
    headline = f"{ONLINE_OUTCOMES.get(outcome, outcome)}{path}"
    return f"Online: {headline}. {online.get('reason') or ''}".strip()


SCORE_TASK = "score"
LOCATE_TASK = "locate"
SUMMARY_TASK = "summary"  # ct_housekeeping: what every pipeline's pass did


def batch_note(scored: Mapping[str, Any], waited_seconds: float = 0.0) -> str:
    """The batch-scoring run's second line, e.g. ``Scored: 500 rows of 2026-12-01 by v3 ...``; an
    input the run waited for says how long."""
    waited = f", landed after a {waited_seconds:.0f} s wait" if waited_seconds else ""
    return (
        f"Scored: {scored.get('rows')} rows of {scored.get('day')} by v{scored.get('model_version')} "
        f"(input {scored.get('input_version')}{waited}) -> {scored.get('output')}"
    )


def _task_value(dag_run: Any, task_id: str, key: str) -> Mapping[str, Any] | None:
    """A task's XCom in this run, read where the scheduler keeps XComs."""
    from airflow.models.xcom import XComModel
    from sqlalchemy.orm import object_session

    session = object_session(dag_run)
    if session is None:
        return None
    query = XComModel.get_many(
        run_id=dag_run.run_id, key=key, dag_ids=dag_run.dag_id, task_ids=task_id, limit=1
    )
    row = session.scalars(query).first()
    value = XComModel.deserialize_value(row) if row is not None else None
    return value if isinstance(value, Mapping) else None


def _gate_decision(dag_run: Any) -> Mapping[str, Any] | None:
    """The evaluate task's result in this run."""
    value = _task_value(dag_run, GATE_TASK, "return_value")
    return value if value is not None and "promote" in value else None


def _add_gate_to_note(dag_run: Any) -> None:
    """Append the gate line to a note this listener wrote; any failure only costs the line."""
    from sqlalchemy import inspect

    if not str(dag_run.dag_id).startswith(NOTED_DAG_PREFIX) or inspect(dag_run).detached:
        return  # not ours, or a run outside the scheduler's session (``airflow dags test``)
    try:
        note = dag_run.note or ""
        if not note.startswith("Trigger:") or "\n" in note:
            return  # someone else's note, or already done
        lines = [note]
        scored = _task_value(dag_run, SCORE_TASK, "return_value")
        if scored is not None and "rows" in scored:
            located = _task_value(dag_run, LOCATE_TASK, "return_value") or {}
            lines.append(batch_note(scored, float(located.get("waited_seconds") or 0)))
        housekeeping = _task_value(dag_run, SUMMARY_TASK, "return_value")
        if housekeeping is not None and housekeeping.get("summary"):
            lines.append(str(housekeeping["summary"]))
        decision = _gate_decision(dag_run)
        if decision is not None:
            lines.append(gate_note(decision))
        online = _task_value(dag_run, DEPLOY_TASK, "online")
        if online is not None:
            lines.append(online_note(online))
        dag_run.note = "\n".join(lines)[:1000]
    except Exception:  # a note is never worth failing the scheduler loop
        log.exception("could not add the gate decision to the note of %s %s", dag_run.dag_id, dag_run.run_id)


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    """Scheduler side: add the gate's outcome (promote, reject, inconclusive), or what a batch
    run scored, to the run note."""
    _add_gate_to_note(dag_run)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    """As on success: a run that failed after the gate still says what the gate decided."""
    _add_gate_to_note(dag_run)
