"""The CT view page: champions, gate decisions with numbers, drift, and links out of the iframe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from include.ct.registry.history import ChampionEntry, GateEntry, MonitorEntry, PipelineHistory
from include.ct.registry.history_page import render

T0 = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
MLFLOW = "http://mlflow.test"


def gate(index: int, decision: str, challenger: float, champion: float | None) -> GateEntry:
    return GateEntry(
        run_id=f"r{index}",
        started_at=T0 + timedelta(days=index),
        airflow_run_id=f"scheduled__2026-12-0{index}T00:00:00+00:00",
        trigger="schedule",
        reason="scheduled run",
        data_version=f"v{index}",
        decision=decision,
        decision_reason=f"{decision}: roc_auc {challenger}",
        challenger=challenger,
        champion=champion,
        delta=None if champion is None else challenger - champion,
        compared_with="1" if champion is not None else "none",
        url=f"{MLFLOW}/#/experiments/1/runs/r{index}",
    )


def history() -> PipelineHistory:
    champion = ChampionEntry(
        version="2",
        registered_at=T0 + timedelta(days=2),
        reason="promote: <b>better</b>",
        previous="1",
        run_id="r2",
        airflow_run_id="scheduled__2026-12-02T00:00:00+00:00",
        data_version="v2",
        trigger="schedule",
        current=True,
        state="champion",
        url=f"{MLFLOW}/#/models/churn/versions/2",
        run_url=f"{MLFLOW}/#/experiments/1/runs/r2",
    )
    drift = MonitorEntry(
        "m1", T0 + timedelta(days=3), "drift", "plan drifted", {"traffic": {"plan": 0.4}}, 0.81, None
    )
    return PipelineHistory(
        pipeline="churn",
        dag_id="ct_churn",
        model="churn",
        metric="roc_auc",
        champion="2",
        champions=[champion],
        runs=[gate(3, "reject", 0.80, 0.82), gate(2, "promote", 0.82, 0.81), gate(1, "promote", 0.81, None)],
        monitoring=[drift],
        model_url=f"{MLFLOW}/#/models/churn",
    )


def test_shows_champion_gates_and_drift_with_links() -> None:
    page = render([history()], airflow_base="http://airflow.test", errors={})
    assert "champion: version 2" in page
    assert "promote: &lt;b&gt;better&lt;/b&gt;" in page  # values from tags are escaped
    # Airflow links open in place, MLflow beside it
    assert (
        "<a href='http://airflow.test/dags/ct_churn/runs/scheduled__2026-12-03T00%3A00%3A00%2B00%3A00'>"
        in page
    )
    assert f"<a href='{MLFLOW}/#/models/churn/versions/2' target='_blank' rel='noopener'>v2</a>" in page
    assert (
        "<td class='reject'>reject</td><td>0.8000</td><td>0.8200 <span class='muted'>(v1)</span></td>" in page
    )
    assert "<td>-0.0200</td>" in page
    assert "<td>plan: 0.4000</td>" in page
    assert page.count("<circle") == 3  # one point per gate decision in the chart


def test_empty_pipeline_and_unreadable_registry_say_so() -> None:
    empty = PipelineHistory(pipeline="fleet", dag_id="ct_fleet", model="fleet", metric="rmse", champion=None)
    page = render([empty], airflow_base="http://a", errors={"churn": "ConnectionError: refused"})
    assert "no champion yet" in page and "No training run yet." in page and "<svg" not in page
    assert "Could not read its history: ConnectionError: refused" in page
    assert "No continuous-training pipeline you may read." in render([], airflow_base="http://a", errors={})
