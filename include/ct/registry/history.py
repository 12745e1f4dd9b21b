"""A pipeline's continuous-training history as the registry records it: champions, gate decisions
and monitoring passes, read back from MLflow's tags and metrics for the CT view in Airflow.

Everything here is read-only and comes from what the steps already record (version tags, run
tags and metrics), so the view can never disagree with MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from include.ct.config import PipelineConfig
from include.ct.registry import registry

if TYPE_CHECKING:
    from mlflow import MlflowClient

DRIFT_PREFIX = "drift_"
MONITORING_KIND = "monitoring"


@dataclass(frozen=True)
class ChampionEntry:
    """One version that held (or holds) the ``champion`` alias."""

    version: str
    registered_at: datetime
    reason: str
    previous: str | None
    run_id: str
    airflow_run_id: str
    data_version: str
    trigger: str
    current: bool
    state: str
    url: str | None
    run_url: str | None


@dataclass(frozen=True)
class GateEntry:
    """One training run and the promotion gate's decision on it."""

    run_id: str
    started_at: datetime
    airflow_run_id: str
    trigger: str
    reason: str
    data_version: str
    decision: str
    decision_reason: str
    challenger: float | None
    champion: float | None
    delta: float | None
    compared_with: str
    url: str | None


@dataclass(frozen=True)
class MonitorEntry:
    """One monitoring pass: the drift scores per source and feature, live quality, the decision."""

    run_id: str
    checked_at: datetime
    decision: str
    reason: str
    drift: dict[str, dict[str, float]]
    live_metric: float | None
    url: str | None


@dataclass(frozen=True)
class PipelineHistory:
    """What the CT view shows for one pipeline."""

    pipeline: str
    dag_id: str
    model: str
    metric: str
    champion: str | None
    champions: list[ChampionEntry] = field(default_factory=list)
    runs: list[GateEntry] = field(default_factory=list)
    monitoring: list[MonitorEntry] = field(default_factory=list)
    model_url: str | None = None
    experiment_url: str | None = None


def pipeline_history(
    config: PipelineConfig, *, limit: int = 20, client: MlflowClient | None = None
) -> PipelineHistory:
    """The last ``limit`` champions, gate decisions and monitoring passes of one pipeline."""
    mlflow_client = client or registry.client()
    name = config.registered_model_name
    champion = registry.get_champion(config)
    current = str(champion.version) if champion is not None else None
    versions = mlflow_client.search_model_versions(f"name = '{name}'", max_results=1000)
    promoted = sorted(
        (
            v
            for v in versions
            if v.tags.get(f"{registry.TAG_PREFIX}promotion_reason") or str(v.version) == current
        ),
        key=lambda v: int(v.version),
        reverse=True,
    )[:limit]
    experiment = mlflow_client.get_experiment_by_name(registry.experiment_name(config))
    experiment_id = experiment.experiment_id if experiment is not None else None
    runs: list[Any] = []
    monitoring: list[Any] = []
    if experiment is not None:
        runs = mlflow_client.search_runs(
            [experiment.experiment_id],
            filter_string="tags.`ct.decision` != ''",
            order_by=["attributes.start_time DESC"],
            max_results=limit * 3,
        )
        monitoring = [r for r in runs if r.data.tags.get("ct.kind") == MONITORING_KIND][:limit]
        runs = [r for r in runs if r.data.tags.get("ct.kind") != MONITORING_KIND][:limit]
    base = registry.ui_base_url()
    return PipelineHistory(
        pipeline=config.name,
        dag_id=config.dag_id,
        model=name,
        metric=config.metric,
        champion=current,
        champions=[_champion_entry(config, v, current, experiment_id) for v in promoted],
        runs=[_gate_entry(config, run) for run in runs],
        monitoring=[_monitor_entry(config, run) for run in monitoring],
        model_url=f"{base}/#/models/{name}" if base else None,
        experiment_url=f"{base}/#/experiments/{experiment.experiment_id}" if base and experiment else None,
    )


def _tag(tags: dict[str, str], key: str) -> str:
    return str(tags.get(f"{registry.TAG_PREFIX}{key}", ""))


def _when(millis: int | None) -> datetime:
    return datetime.fromtimestamp((millis or 0) / 1000, tz=UTC)


def _champion_entry(
    config: PipelineConfig, version: Any, current: str | None, experiment_id: str | None
) -> ChampionEntry:
    tags = dict(version.tags)
    number = str(version.version)
    return ChampionEntry(
        version=number,
        registered_at=_when(version.creation_timestamp),
        reason=_tag(tags, "promotion_reason"),
        previous=_tag(tags, "previous_champion") or None,
        run_id=str(version.run_id or ""),
        airflow_run_id=_tag(tags, "run_id"),
        data_version=_tag(tags, "data_version"),
        trigger=_tag(tags, "trigger"),
        current=number == current,
        state=("champion" if number == current else _tag(tags, "decision") or "replaced"),
        url=registry.model_version_url(config.registered_model_name, number),
        run_url=registry.run_url(experiment_id, version.run_id) if experiment_id and version.run_id else None,
    )


def _gate_entry(config: PipelineConfig, run: Any) -> GateEntry:
    tags = run.data.tags
    metrics = run.data.metrics
    return GateEntry(
        run_id=run.info.run_id,
        started_at=_when(run.info.start_time),
        airflow_run_id=_tag(tags, "run_id"),
        trigger=_tag(tags, "trigger"),
        reason=_tag(tags, "reason"),
        data_version=_tag(tags, "data_version"),
        decision=_tag(tags, "decision"),
        decision_reason=_tag(tags, "decision_reason"),
        challenger=metrics.get(f"eval_challenger_{config.metric}"),
        champion=metrics.get(f"eval_champion_{config.metric}"),
        delta=metrics.get("eval_delta"),
        compared_with=_tag(tags, "compared_with_champion"),
        url=registry.run_url(run.info.experiment_id, run.info.run_id),
    )


def _monitor_entry(config: PipelineConfig, run: Any) -> MonitorEntry:
    """Metric names are ``drift_<source>_<feature>``; sources may hold '_', features are known."""
    tags = run.data.tags
    drift: dict[str, dict[str, float]] = {}
    for key, value in run.data.metrics.items():
        if not key.startswith(DRIFT_PREFIX):
            continue
        rest = key.removeprefix(DRIFT_PREFIX)
        feature = max((f for f in config.features if rest.endswith(f"_{f}")), key=len, default=None)
        if feature is not None:
            drift.setdefault(rest.removesuffix(f"_{feature}"), {})[feature] = value
    return MonitorEntry(
        run_id=run.info.run_id,
        checked_at=_when(run.info.start_time),
        decision=_tag(tags, "decision"),
        reason=_tag(tags, "decision_reason"),
        drift={source: dict(sorted(scores.items())) for source, scores in sorted(drift.items())},
        live_metric=run.data.metrics.get(f"live_{config.metric}"),
        url=registry.run_url(run.info.experiment_id, run.info.run_id),
    )
