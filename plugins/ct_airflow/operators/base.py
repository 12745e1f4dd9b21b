"""What every continuous-training operator shares: its pipeline config, the run's trigger and lineage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

from airflow.sdk import BaseOperator, Context, XComArg

from ct_airflow.run_notes import describe_trigger

# An upstream task's result: its ``.output`` when the DAG is built, the dict it returned at run time.
Upstream: TypeAlias = XComArg | Mapping[str, Any]


def trigger_of(context: Context) -> tuple[str, str]:
    """Why this run exists: (kind, reason), from the run conf, the trigger form or the Asset event."""
    dag_run = context["dag_run"]
    payloads = [
        (event.extra or {}).get("payload") or {}
        for events in (context.get("triggering_asset_events") or {}).values()
        for event in events
    ]
    return describe_trigger(
        str(getattr(dag_run.run_type, "value", dag_run.run_type)),
        dag_run.conf or {},
        payloads,
        run_after=dag_run.run_after,
        logical_date=dag_run.logical_date,
        params=context.get("params") or {},
    )


def run_lineage(pipeline: str, context: Context, data_version: str) -> Any:
    """Where a model or record comes from: this DAG run, its trigger, the data and code versions."""
    from include.ct.registry.registry import Lineage, code_version

    dag_run = context["dag_run"]
    kind, reason = trigger_of(context)
    return Lineage(
        pipeline=pipeline,
        dag_id=dag_run.dag_id,
        run_id=dag_run.run_id,
        data_version=data_version,
        code_version=code_version(),
        trigger=kind,
        reason=reason,
    )


NEW_CHAMPION = "new_champion"  # the trigger kind of runs started by the champion Asset


def announce_champion(context: Context, config: Any, version: str, reason: str) -> None:
    """Say on this task's ``ct_<name>_champion`` Asset event which version became champion and why
    (the event itself is emitted when the task succeeds; batch scoring runs on it)."""
    from airflow.sdk import Asset

    asset = Asset(name=config.champion_asset)
    if asset not in context["task"].outlets:
        return
    context["outlet_events"][asset].extra = {
        "payload": {"trigger": NEW_CHAMPION, "reason": f"new champion: v{version} ({reason})"[:500]},
        "version": version,
    }


def announced_champions(context: Context) -> list[str] | None:
    """The versions the champion Asset events that started this run announced; None for a run no
    Asset event started. A deploy that only staged a challenger announces none."""
    events = [event for events in (context.get("triggering_asset_events") or {}).values() for event in events]
    if not events:
        return None
    return [str(version) for event in events if (version := (event.extra or {}).get("version"))]


# Time for the scheduler to read a deferring worker's exit once its supervisor has noticed it.
SCHEDULER_LOOP_MARGIN_SECONDS = 5.0


def resume_hold_seconds() -> float:
    """How long a trigger holds an event that is ready at once, so the deferring worker's exit
    reaches the scheduler before the resumed try runs (else Airflow 3.3 fails that try as changed
    externally: apache/airflow issue 72716). The worker's supervisor notices the exit within
    ``[workers] min_heartbeat_interval``."""
    from airflow.sdk import conf

    exit_noticed = conf.getfloat("workers", "min_heartbeat_interval", fallback=5.0)
    return exit_noticed + SCHEDULER_LOOP_MARGIN_SECONDS


class PipelineOperator(BaseOperator):
    """A task of one pipeline, whose config it loads by name at run time.

    :param pipeline: the pipeline config's ``name`` (templated).
    """

    template_fields: Sequence[str] = ("pipeline",)
    ui_color = "#e8f4fd"

    def __init__(self, *, pipeline: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipeline = pipeline

    def load_config(self) -> Any:
        from include.ct.config import find_pipeline_config

        return find_pipeline_config(self.pipeline)


class SnapshotOperator(PipelineOperator):
    """An operator that works on the snapshot the extract task returned.

    :param snapshot: the extract task's result (``extract.output``): data version, batches, paths.
    """

    template_fields: Sequence[str] = ("pipeline", "snapshot")

    def __init__(self, *, snapshot: Upstream, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.snapshot = snapshot
