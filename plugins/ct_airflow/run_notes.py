"""Why a run exists, shown where users look: the Airflow run note and the MLflow run's tags.

``describe_trigger`` turns a run's type, conf and triggering Asset events into (kind, reason);
the operators tag it on the MLflow run, and the listener below writes it as the run's note when
the scheduler starts the run, so the Airflow grid shows the reason of every scheduled,
data-arrival, backfill and manual run. A note someone already wrote is never replaced.
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
    trigger form) win; otherwise they follow from the run type and the Asset events' payloads."""
    kind = str(conf.get("trigger") or RUN_TYPE_TRIGGERS.get(run_type, run_type))
    reason = str(conf.get("reason") or (params or {}).get("reason") or "")
    if not reason and run_type == "asset_triggered":
        reasons: list[str] = []
        for payload in asset_payloads:
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
