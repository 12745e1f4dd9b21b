"""The continuous-training view: one self-contained HTML page over ``PipelineHistory`` records.

It is served by the Airflow API server beside the Airflow UI: links into Airflow open in place,
links into MLflow in a new tab. No scripts: the page works with any content-security policy.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import quote

from include.ct.registry.history import GateEntry, MonitorEntry, PipelineHistory

STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
    "section{margin-bottom:2.5em}table{border-collapse:collapse;margin:.4em 0 1.2em;font-size:.92em}"
    "td,th{padding:3px 9px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}"
    "th{background:#f4f4f4}.promote,.champion{color:#070;font-weight:bold}"
    ".reject,.rolled_back,.rejected_infra,.rejected_by_reviewer,.rejected_online{color:#b00}"
    ".inconclusive{color:#a60}"
    ".muted{color:#777}"
    ".high{color:#b00;font-weight:bold}h2 small{font-weight:normal;color:#555}"
    "svg text{font-size:11px;fill:#444}"
)
DOT_COLOURS = {"promote": "#2a2", "inconclusive": "#e90"}
CHART_WIDTH = 640
CHART_HEIGHT = 180


def render(histories: Sequence[PipelineHistory], *, airflow_base: str, errors: dict[str, str]) -> str:
    """The page for every pipeline the user may read; ``errors`` names pipelines that failed to load."""
    sections = [_section(history, airflow_base.rstrip("/")) for history in histories]
    sections.extend(
        f"<section><h2>{_e(name)}</h2><p class='reject'>Could not read its history: {_e(error)}</p></section>"
        for name, error in sorted(errors.items())
    )
    body = "".join(sections) or "<p>No continuous-training pipeline you may read.</p>"
    return (
        "<!doctype html><html lang='en'><meta charset='utf-8'><title>Continuous training</title>"
        f"<style>{STYLE}</style><p><a href='{_e(airflow_base.rstrip('/'))}/'>Back to Airflow</a></p>"
        f"<h1>Continuous training</h1>{body}</html>"
    )


def _section(history: PipelineHistory, airflow: str) -> str:
    dag_link = _link(f"{airflow}/dags/{history.dag_id}", history.dag_id)
    model = _link(history.model_url, history.model, new_tab=True)
    champion = f"version {history.champion}" if history.champion else "no champion yet"
    experiment = (
        f" · {_link(history.experiment_url, 'experiment', new_tab=True)}" if history.experiment_url else ""
    )
    return (
        f"<section id='{_e(history.pipeline)}'><h2>{_e(history.pipeline)} "
        f"<small>DAG {dag_link} · model {model} · <span class='champion'>champion: {_e(champion)}</span>"
        f"{experiment}"
        "</small></h2>"
        f"{_chart(history.runs, history.metric)}"
        f"<h3>Champion history</h3>{_champions(history, airflow)}"
        f"<h3>Gate decisions</h3>{_gates(history, airflow)}"
        f"<h3>Monitoring</h3>{_monitoring(history.monitoring)}</section>"
    )


def _champions(history: PipelineHistory, airflow: str) -> str:
    if not history.champions:
        return "<p class='muted'>No version has been promoted yet.</p>"
    rows = "".join(
        f"<tr><td>{_link(entry.url, 'v' + entry.version, new_tab=True)}</td>"
        f"<td class='{_e(entry.state)}'>{_e(entry.state)}</td><td>{_time(entry.registered_at)}</td>"
        f"<td>{_e(entry.reason)}</td><td>{_e(entry.previous or '-')}</td>"
        f"<td>{_run_link(airflow, history.dag_id, entry.airflow_run_id)}</td>"
        f"<td>{_e(entry.trigger)}</td><td><code>{_e(entry.data_version)}</code></td>"
        f"<td>{_link(entry.run_url, 'MLflow run', new_tab=True)}</td></tr>"
        for entry in history.champions
    )
    return (
        "<table><tr><th>version</th><th>state</th><th>registered</th><th>why promoted</th>"
        "<th>replaced</th><th>Airflow run</th><th>trigger</th><th>data version</th><th></th></tr>"
        f"{rows}</table>"
    )


def _gates(history: PipelineHistory, airflow: str) -> str:
    if not history.runs:
        return "<p class='muted'>No training run yet.</p>"
    metric = _e(history.metric)
    rows = "".join(
        f"<tr><td>{_time(run.started_at)}</td>"
        f"<td>{_run_link(airflow, history.dag_id, run.airflow_run_id)}</td>"
        f"<td>{_e(run.trigger)}: {_e(run.reason)}</td><td><code>{_e(run.data_version)}</code></td>"
        f"<td class='{_e(run.decision)}'>{_e(run.decision)}</td><td>{_number(run.challenger)}</td>"
        f"<td>{_number(run.champion)}{_versus(run.compared_with)}</td>"
        f"<td>{_number(run.delta, signed=True)}</td>"
        f"<td>{_e(run.decision_reason)}</td><td>{_link(run.url, 'MLflow run', new_tab=True)}</td></tr>"
        for run in history.runs
    )
    return (
        f"<table><tr><th>started</th><th>Airflow run</th><th>trigger</th><th>data version</th>"
        f"<th>decision</th><th>challenger {metric}</th><th>champion {metric}</th><th>delta</th>"
        f"<th>reason</th><th></th></tr>{rows}</table>"
    )


def _monitoring(passes: Sequence[MonitorEntry]) -> str:
    if not passes:
        return "<p class='muted'>The monitor has not checked this pipeline yet.</p>"
    latest = passes[0]
    drift = "".join(
        f"<tr><td>{_e(source)}</td>"
        + "".join(f"<td>{_e(feature)}: {_number(score)}</td>" for feature, score in scores.items())
        + "</tr>"
        for source, scores in latest.drift.items()
    )
    drift_table = (
        f"<p>Drift scores of the latest pass ({_time(latest.checked_at)}):</p><table>{drift}</table>"
        if drift
        else ""
    )
    rows = "".join(
        f"<tr><td>{_time(entry.checked_at)}</td><td>{_e(entry.decision)}</td><td>{_number(entry.live_metric)}</td>"
        f"<td>{_e(entry.reason)}</td><td>{_link(entry.url, 'MLflow run', new_tab=True)}</td></tr>"
        for entry in passes
    )
    return (
        f"{drift_table}<table><tr><th>checked</th><th>decision</th><th>live metric</th><th>reason</th>"
        f"<th></th></tr>{rows}</table>"
    )


def _chart(runs: Sequence[GateEntry], metric: str) -> str:
    """Challenger (dots, green when promoted) and champion (line) metric of each gate, oldest first."""
    points = [run for run in reversed(runs) if run.challenger is not None]
    if len(points) < 2:
        return ""
    values = [v for run in points for v in (run.challenger, run.champion) if v is not None]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    left, right, top, bottom = 50, CHART_WIDTH - 10, 10, CHART_HEIGHT - 20

    def x(index: int) -> float:
        return left + (right - left) * index / (len(points) - 1)

    def y(value: float) -> float:
        return bottom - (bottom - top) * (value - low) / span

    champion_line = " ".join(
        f"{x(i):.1f},{y(run.champion):.1f}" for i, run in enumerate(points) if run.champion is not None
    )
    dots = "".join(
        f"<circle cx='{x(i):.1f}' cy='{y(run.challenger):.1f}' r='4' "
        f"fill='{DOT_COLOURS.get(run.decision, '#c33')}'><title>{_time(run.started_at)}: "
        f"{run.decision} {run.challenger:.4f}</title></circle>"
        for i, run in enumerate(points)
        if run.challenger is not None
    )
    return (
        f"<svg width='{CHART_WIDTH}' height='{CHART_HEIGHT}' role='img' "
        f"aria-label='{_e(metric)} of challenger and champion per run'>"
        f"<line x1='{left}' y1='{bottom}' x2='{right}' y2='{bottom}' stroke='#999'/>"
        f"<text x='2' y='{top + 8}'>{high:.4f}</text><text x='2' y='{bottom}'>{low:.4f}</text>"
        f"<text x='{left}' y='{CHART_HEIGHT - 4}'>{_e(metric)} per run: challenger "
        "(green promoted, orange inconclusive, red rejected), champion (line)</text>"
        f"<polyline points='{champion_line}' fill='none' stroke='#36c' stroke-width='2'/>{dots}</svg>"
    )


def _run_link(airflow: str, dag_id: str, run_id: str) -> str:
    if not run_id:
        return "-"
    return _link(f"{airflow}/dags/{dag_id}/runs/{quote(run_id, safe='')}", run_id)


def _link(url: str | None, text: str, *, new_tab: bool = False) -> str:
    if not url:
        return _e(text)
    target = " target='_blank' rel='noopener'" if new_tab else ""
    return f"<a href='{_e(url)}'{target}>{_e(text)}</a>"


def _versus(version: str) -> str:
    return f" <span class='muted'>(v{_e(version)})</span>" if version and version != "none" else ""


def _number(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _time(when: datetime) -> str:
    return f"{when:%Y-%m-%d %H:%M} UTC"


def _e(text: str) -> str:
    return html.escape(text, quote=True)
