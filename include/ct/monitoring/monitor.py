"""Monitoring: drift of live traffic and new batches, and live quality once labels arrive.

``assess`` compares recent prediction-log traffic and the batches waiting in the landing zone with
the serving champion's training reference (PSI, or KS for numeric features), joins late labels to
logged predictions to measure live quality, and decides whether to retrain. A cooldown keeps
repeated breaches from starting a retraining storm.
"""

from __future__ import annotations

import html
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from include.ct.config import PipelineConfig, metric_higher_is_better
from include.ct.data.extract import pending_batches, read_batch
from include.ct.monitoring.drift import feature_drift, numeric_shares, numeric_values, row_weights
from include.ct.monitoring.prediction_log import read_prediction_log
from include.ct.registry import registry
from include.ct.storage import data_dir, pipeline_paths, write_json_atomic

log = logging.getLogger(__name__)

STATE = "monitor_state.json"


@dataclass
class MonitorReport:
    """One monitoring pass: what was compared, what drifted, live quality and the decision."""

    pipeline: str
    checked_at: str
    champion: str | None
    traffic_rows: int = 0
    batch_rows: int = 0
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    test: str = "psi"
    threshold: float = 0.0
    drifted: dict[str, list[str]] = field(default_factory=dict)
    labelled_rows: int = 0
    live_metric: float | None = None
    champion_metric: float | None = None
    decay: bool = False
    retrain: bool = False
    trigger: str | None = None
    reason: str = ""
    suppressed_by_cooldown: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ks_statistic(profile: dict[str, Any], frame: pd.DataFrame, name: str) -> float | None:
    """Kolmogorov-Smirnov distance on the reference's quantile grid (max CDF gap at its edges)."""
    reference = profile.get("features", {}).get(name)
    if not reference or reference["kind"] != "numeric" or name not in frame.columns:
        return None
    values, weights = numeric_values(frame, name)
    if values.size == 0:
        return None
    edges = np.asarray(reference["edges"])
    expected = np.cumsum(reference["shares"])
    actual = np.cumsum(numeric_shares(values, edges, weights))
    return float(np.max(np.abs(expected - actual)))


def drift_scores(config: PipelineConfig, profile: dict[str, Any], frame: pd.DataFrame) -> dict[str, float]:
    """Per-feature drift: PSI for categories; PSI or KS for numbers, as the config says."""
    scores = feature_drift(profile, frame)
    if config.monitoring.numeric_test == "ks":
        for name, spec in config.features.items():
            if spec.is_numeric:
                value = ks_statistic(profile, frame, name)
                if value is not None:
                    scores[name] = value
    return {name: round(value, 4) for name, value in scores.items()}


def over_threshold(config: PipelineConfig, scores: dict[str, float]) -> list[str]:
    """Features whose score crosses their threshold, worst first."""
    monitoring = config.monitoring

    def limit(name: str) -> float:
        numeric_ks = monitoring.numeric_test == "ks" and config.features[name].is_numeric
        return monitoring.ks_threshold if numeric_ks else monitoring.psi_threshold

    return [
        n for n, v in sorted(scores.items(), key=lambda kv: -kv[1]) if n in config.features and v > limit(n)
    ]


def labels_dir(config: PipelineConfig) -> Path:
    """Where late labels arrive: files with ``prediction_id`` and the target column."""
    return data_dir() / (config.monitoring.labels_path or f"labels/{config.name}")


def read_labels(config: PipelineConfig, since: datetime | None = None) -> pd.DataFrame:
    """The late labels (``prediction_id`` and the target); with ``since``, only from files written
    since then (labels of predictions made after ``since`` cannot be in older files)."""
    folder = labels_dir(config)
    files = sorted(p for p in folder.glob("*") if p.suffix in (".csv", ".parquet") and p.name[0] not in "._")
    if since is not None:
        oldest = since.timestamp() - 60  # slack for clocks and file systems with coarse times
        files = [p for p in files if p.stat().st_mtime >= oldest]
    if not files:
        return pd.DataFrame(columns=["prediction_id", config.target])
    frame = pd.concat([read_batch(path) for path in files], ignore_index=True)
    missing = {"prediction_id", config.target} - set(frame.columns)
    if missing:
        raise ValueError(f"labels in {folder} lack the columns {sorted(missing)}")
    frame = frame[["prediction_id", config.target]]
    # ids are strings in the log; a CSV of numeric ids (batch keys) is read as numbers
    frame = frame.assign(prediction_id=frame["prediction_id"].astype(str))
    return frame.drop_duplicates("prediction_id", keep="last")


def live_metric(config: PipelineConfig, joined: pd.DataFrame) -> float | None:
    """The primary metric on logged predictions joined with their labels (None where undefined)."""
    from sklearn import metrics as skm

    actual = joined[config.target]
    metric = config.metric
    weights = row_weights(joined).to_numpy(dtype=float)  # a sampled log counts each row 1/share times
    if config.task == "regression":
        predicted = joined["prediction"].astype(float)
        if metric == "rmse":
            return float(math.sqrt(skm.mean_squared_error(actual, predicted, sample_weight=weights)))
        if metric == "mae":
            return float(skm.mean_absolute_error(actual, predicted, sample_weight=weights))
        return float(skm.r2_score(actual, predicted, sample_weight=weights)) if metric == "r2" else None
    positive = config.target_values[-1] if config.target_values else sorted(actual.unique())[-1]
    is_positive = actual.astype(str) == str(positive)
    if metric == "accuracy":
        hits = (joined["prediction"].astype(str) == actual.astype(str)).to_numpy(dtype=float)
        return float(np.average(hits, weights=weights))
    if metric == "f1":
        predicted_positive = joined["prediction"].astype(str) == str(positive)
        return float(skm.f1_score(is_positive, predicted_positive, sample_weight=weights))
    if "score" not in joined.columns or is_positive.nunique() < 2:
        return None
    if metric == "roc_auc":
        return float(skm.roc_auc_score(is_positive, joined["score"], sample_weight=weights))
    if metric == "log_loss":
        return float(skm.log_loss(is_positive, joined["score"], labels=[False, True], sample_weight=weights))
    return None


def _state_path(config: PipelineConfig) -> Path:
    return pipeline_paths(config).artifacts / STATE


def last_triggered(config: PipelineConfig) -> datetime | None:
    path = _state_path(config)
    if not path.exists():
        return None
    return datetime.fromisoformat(json.loads(path.read_text())["last_triggered_at"])


def assess(config: PipelineConfig, *, now: datetime | None = None) -> MonitorReport:
    """Measure drift and live quality against the serving champion and decide whether to retrain."""
    now = now or datetime.now(UTC)
    monitoring = config.monitoring
    champion = registry.get_champion(config)
    report = MonitorReport(config.name, now.isoformat(), champion.version if champion else None)
    report.test = monitoring.numeric_test
    report.threshold = (
        monitoring.ks_threshold if monitoring.numeric_test == "ks" else monitoring.psi_threshold
    )
    if champion is None:
        report.reason = "no champion to monitor yet"
        return report
    profile = registry.download_json(champion.run_id, "reference/profile.json") or {}

    traffic = read_prediction_log(config.name, since=now - timedelta(hours=monitoring.window_hours))
    report.traffic_rows = len(traffic)
    frames = {"traffic": traffic}
    batches = [read_batch(path) for path in pending_batches(config)]
    if batches:
        frames["new_batches"] = pd.concat(batches, ignore_index=True)
        report.batch_rows = len(frames["new_batches"])
    for source, frame in frames.items():
        if len(frame) < monitoring.min_rows or not profile:
            continue
        report.scores[source] = drift_scores(config, profile, frame)
        drifted = over_threshold(config, report.scores[source])
        if len(drifted) >= monitoring.min_drifted_features:
            report.drifted[source] = drifted

    labels = read_labels(config)
    history = read_prediction_log(config.name, since=now - timedelta(hours=monitoring.label_window_hours))
    if not labels.empty and not history.empty:
        joined = history.merge(labels, on="prediction_id", how="inner")
        report.labelled_rows = len(joined)
        if len(joined) >= monitoring.min_labels:
            report.live_metric = live_metric(config, joined)
    champion_run = registry.client().get_run(champion.run_id)
    report.champion_metric = champion_run.data.metrics.get(f"test_{config.metric}")
    report.decay = _decayed(config, report.live_metric, report.champion_metric)

    reasons = [f"{source} drift in {', '.join(names)}" for source, names in report.drifted.items()]
    if report.decay:
        reasons.append(
            f"live {config.metric} {report.live_metric:.4f} on {report.labelled_rows} labelled predictions "
            f"vs {report.champion_metric:.4f} offline"
        )
    if not reasons:
        report.reason = "no drift and no decay"
        return report
    report.trigger = "decay" if report.decay else "drift"
    report.reason = "; ".join(reasons)
    previous = last_triggered(config)
    if previous is not None and now - previous < timedelta(hours=monitoring.cooldown_hours):
        report.suppressed_by_cooldown = True
        report.reason += f" (cooldown: last retraining triggered at {previous.isoformat()})"
        return report
    report.retrain = True
    write_json_atomic(_state_path(config), {"last_triggered_at": now.isoformat(), "reason": report.reason})
    return report


def _decayed(config: PipelineConfig, live: float | None, offline: float | None) -> bool:
    if live is None:
        return False
    higher = metric_higher_is_better(config.metric)
    below_floor = live < config.promotion.threshold if higher else live > config.promotion.threshold
    if offline is None:
        return below_floor
    drop = (offline - live) if higher else (live - offline)
    return below_floor or drop > config.monitoring.max_metric_drop


def render_html(report: MonitorReport) -> str:
    """A small self-contained HTML drift report."""
    rows = []
    for source, scores in report.scores.items():
        for name, value in sorted(scores.items(), key=lambda kv: -kv[1]):
            flagged = name in report.drifted.get(source, [])
            style = ' style="background:#fde8e8"' if flagged else ""
            rows.append(f"<tr{style}><td>{source}</td><td>{html.escape(name)}</td><td>{value:.4f}</td></tr>")
    live = "n/a" if report.live_metric is None else f"{report.live_metric:.4f}"
    return (
        f"<html><head><meta charset='utf-8'><title>Drift report {html.escape(report.pipeline)}</title></head>"
        f"<body><h1>Monitoring of {html.escape(report.pipeline)} (champion v{report.champion})</h1>"
        f"<p>{html.escape(report.checked_at)}: <b>{'retrain' if report.retrain else 'no retraining'}</b> "
        f"- {html.escape(report.reason)}</p>"
        f"<p>Traffic rows {report.traffic_rows}, new batch rows {report.batch_rows}; numeric test "
        f"{report.test}; live metric {live} on {report.labelled_rows} labelled predictions "
        f"(offline {report.champion_metric}).</p>"
        "<table border=1 cellpadding=4><tr><th>source</th><th>feature</th><th>score</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )


def record(config: PipelineConfig, report: MonitorReport, lineage: registry.Lineage) -> str | None:
    """Log the report to MLflow (a monitoring run in the pipeline's experiment); returns its URL."""
    import tempfile

    import mlflow

    experiment_id = registry.ensure_experiment(config)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"monitor {report.checked_at[:16]}") as run:
        mlflow.set_tags({**lineage.tags(), "ct.kind": "monitoring", "ct.decision": report.trigger or "none"})
        mlflow.set_tag("ct.decision_reason", report.reason[:5000])
        metrics: dict[str, float] = {"traffic_rows": report.traffic_rows, "batch_rows": report.batch_rows}
        for source, scores in report.scores.items():
            metrics.update({f"drift_{source}_{name}": value for name, value in scores.items()})
        if report.live_metric is not None:
            metrics[f"live_{config.metric}"] = report.live_metric
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "drift_report.html").write_text(render_html(report))
            (Path(folder) / "drift_report.json").write_text(json.dumps(report.to_dict(), indent=2))
            mlflow.log_artifacts(folder, "monitoring")
        return registry.run_url(experiment_id, run.info.run_id)
