"""Closed-loop simulation: fast mode on a short seeded stream, and the pure parts of the full mode."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest

from include.ct.config import BUNDLED_PIPELINES_DIR, PipelineConfig, load_pipeline_config
from include.ct.modeling.metrics import compute_metrics, slice_metrics
from include.ct.modeling.pipeline_building import build_pipeline, coerce_to_schema
from simulation.claims import claims
from simulation.closed_loop import main, run_fast
from simulation.full_mode import PipelineRun, batch_day, pipeline_record
from simulation.policies import LibraryPolicies, gate_configs, window_days, with_training
from simulation.records import (
    ALWAYS_DEPLOY,
    BASELINES,
    GATED,
    GATED_CANARY,
    GATED_SHADOW,
    LEVEL0,
    NOT_PROMOTED,
    ORACLE,
    PIPELINE_POLICIES,
    POINT_GATE,
    POLICIES,
    POLICY_LABELS,
    SimulationResult,
)
from simulation.report import REPORT_NAME, day_span, log_to_mlflow, write_report
from simulation.scenario import Scenario, day_batch, skew, stream
from simulation.scoring import Answers, Scored
from tools import datagen

QUICK = {"max_iter": 60}
# Twelve days with every event compressed into them; the concept change flips what drives churn.
SHORT = Scenario(
    days=12,
    rows_per_day=800,
    seed=7,
    drift_start=3,
    drift_ramp_days=3,
    broken_day=5,
    concept_day=7,
    label_delay_start=9,
    label_delay_length=2,
    label_delay=2,
    skew_day=None,  # the skew has its own stream below
)
# A stable stream where the offline feature pipeline reads tenure in years on days 3-4 (live
# requests keep months): the gate cannot see it, live labels can.
SKEWED = Scenario(
    days=7,
    rows_per_day=1500,
    seed=7,
    drift_start=None,
    concept_day=None,
    broken_day=None,
    label_delay_start=None,
    skew_day=3,
    skew_days=2,
    skew_feature="tenure_months",
    skew_factor=1 / 12,
)


def fast_adapting(config: PipelineConfig) -> PipelineConfig:
    """The churn pipeline also trying its newest snapshot alone (``training.recent_windows``)."""
    return with_training(config, {"recent_windows": [1]})


@pytest.fixture(scope="module")
def result() -> SimulationResult:
    churn = load_pipeline_config(BUNDLED_PIPELINES_DIR / "churn.yaml")
    return run_fast(fast_adapting(churn), SHORT, model_params=QUICK)


def test_same_seed_gives_identical_records(churn: PipelineConfig) -> None:
    tiny = Scenario(
        days=5,
        rows_per_day=200,
        drift_start=2,
        drift_ramp_days=2,
        broken_day=3,
        concept_day=4,
        label_delay_start=4,
        label_delay_length=1,
        label_delay=1,
    )
    first = run_fast(churn, tiny, model_params=QUICK)
    again = run_fast(churn, tiny, model_params=QUICK)
    assert [r.to_dict() for r in first.records] == [r.to_dict() for r in again.records]
    assert len(first.records) == len(POLICIES) * tiny.days


def test_every_policy_has_one_record_per_day(result: SimulationResult) -> None:
    for policy in POLICIES:
        assert [r.day for r in result.policy(policy)] == list(range(1, SHORT.days + 1))
    assert all(
        r.value is None and r.served_version == 0 for r in result.records if r.day == 1 and r.policy != ORACLE
    )
    assert all(r.value is not None for r in result.records if r.day > 1)


def test_broken_batch_is_quarantined_and_never_trained_on(result: SimulationResult) -> None:
    broken = SHORT.broken_day
    assert broken is not None
    for policy in PIPELINE_POLICIES:
        assert all(broken not in r.training_days for r in result.policy(policy))
    gated = {r.day: r for r in result.policy(GATED)}
    assert gated[broken].outcome == "quarantined"
    assert gated[broken].quarantined_days == [broken]
    assert gated[broken].served_version == gated[broken + 1].served_version  # nothing promoted from it
    assert "quarantined" in gated[broken].reason
    # The oracle is no pipeline: it learns from the day's true traffic, never from the landed batch.


def test_late_labels_are_waited_for(result: SimulationResult) -> None:
    start = SHORT.label_delay_start
    assert start is not None
    late_days = range(start, start + SHORT.label_delay_length)
    for policy in PIPELINE_POLICIES:
        for record in result.policy(policy):
            assert all(SHORT.labels_day(day) <= record.day for day in record.training_days), record
    gated = {r.day: r for r in result.policy(GATED)}
    for day in late_days:
        assert gated[day].trigger == "none"
        assert gated[day].outcome == "skipped"
        arrival = gated[day + SHORT.label_delay]
        assert day in arrival.new_days
        assert day in arrival.training_days


def test_level0_never_changes_its_model(result: SimulationResult) -> None:
    level0 = result.policy(LEVEL0)
    assert {r.served_version for r in level0[1:]} == {1}
    assert level0[0].training_days == [1]
    assert all(r.outcome == "kept" for r in level0[1:])
    assert result.policy(ALWAYS_DEPLOY)[-1].served_version > result.policy(GATED)[-1].served_version


def test_gate_decisions_come_from_the_real_gate(result: SimulationResult) -> None:
    decided = [r for r in result.policy(GATED) if r.outcome in ("promoted", *NOT_PROMOTED)]
    outcomes = {r.outcome for r in decided}
    assert "promoted" in outcomes and outcomes & set(NOT_PROMOTED)
    for record in decided:
        assert any("threshold" in reason for reason in record.decision_reasons)
        if record.outcome == "inconclusive":  # the interval could not tell: not reported as a rejection
            assert any("straddles" in r or "cannot tell" in r for r in record.decision_reasons)
        if record.outcome == "promoted" and record.champion_value is not None:
            assert record.challenger_value is not None
            assert record.challenger_value > record.champion_value
    by_key = {c.key: c for c in claims(result)}
    assert by_key["gate_never_promotes_worse"].holds is True
    assert by_key["gate_never_promotes_worse"].value == 0


def test_gated_recovers_from_the_concept_change_and_beats_level0(result: SimulationResult) -> None:
    by_key = {c.key: c for c in claims(result)}
    recovery = by_key["recovery_days"]
    assert recovery.holds is True, recovery.detail
    assert recovery.value is not None and recovery.value <= 2
    beats = by_key["gated_beats_level0_after_drift"]
    assert beats.holds is True and beats.value is not None and beats.value > 0.05, beats.detail
    # The flip really hurts a model of the old concept: level 0 ranks worse than chance afterwards.
    assert SHORT.concept_day is not None
    after = [r.value for r in result.policy(LEVEL0) if r.day >= SHORT.concept_day]
    assert all(v is not None and v < 0.55 for v in after)


def test_report_names_every_claim_and_writes_plots(result: SimulationResult, tmp_path: Path) -> None:
    report = write_report(result, tmp_path / "bench")
    assert report.name == REPORT_NAME
    text = report.read_text(encoding="utf-8")
    for claim in claims(result):
        assert claim.statement in text
    for name in ("simulation_quality.png", "simulation_versions.png"):
        png = report.parent / name
        assert png.stat().st_size > 1000
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in text
    saved = json.loads((report.parent / "simulation.json").read_text(encoding="utf-8"))
    assert SimulationResult.from_dict(saved).records == result.records
    assert "broken batch" in text and "concept change" in text


def test_scored_model_gives_the_same_metrics_as_the_model(churn: PipelineConfig) -> None:
    train = coerce_to_schema(churn, datagen.churn_batch(600, day=1))
    test = coerce_to_schema(churn, datagen.churn_batch(400, day=2))
    model = (
        build_pipeline(churn).set_params(model__max_iter=30).fit(train[churn.feature_names], train["churned"])
    )
    scored = Scored(model, test, churn.feature_names)
    features, target = test[churn.feature_names], test["churned"]
    assert compute_metrics(churn, scored, features, target) == compute_metrics(churn, model, features, target)
    assert slice_metrics(churn, scored, test) == slice_metrics(churn, model, test)


def test_scenario_spreads_default_events_and_rejects_bad_days() -> None:
    scenario = Scenario()
    assert scenario.days == 60
    assert scenario.drift_start == 15 and scenario.concept_day == 36 and scenario.broken_day == 24
    assert scenario.drift(14) == 0 and math.isclose(scenario.drift(scenario.drift_start + 14), 1.0)
    assert scenario.labels_day(48) == 51 and scenario.labels_day(47) == 47
    assert Scenario(days=10, concept_day=None).concept(10) == 0
    with pytest.raises(ValueError, match="concept_day"):
        Scenario(days=10, concept_day=11)


def test_report_and_claims_are_logged_to_mlflow(
    result: SimulationResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)  # the SQLite store keeps artifacts under ./mlruns
    report = write_report(result, tmp_path / "out")
    paths = [report, *sorted(report.parent.glob("*.png"))]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = log_to_mlflow(result, paths, uri)
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["claim_gate_never_promotes_worse"] == 0
    assert len(client.get_metric_history(run_id, "gated_roc_auc")) == SHORT.days - 1
    logged = {a.path for a in client.list_artifacts(run_id, "simulation")}
    assert logged == {f"simulation/{p.name}" for p in paths}


def test_cli_runs_fast_mode_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--days", "4", "--out", str(tmp_path)])
    assert "only --fast" in capsys.readouterr().err
    args = ["--days", "4", "--rows-per-day", "200", "--max-iter", "20", "--out", str(tmp_path), "--fast"]
    assert main(args) == 0
    assert (tmp_path / REPORT_NAME).exists()
    assert "gate never promotes" in capsys.readouterr().out


def test_concept_flip_changes_only_who_churns() -> None:
    base = datagen.churn_batch(2000, day=5, seed=3)
    assert base.equals(datagen.churn_batch(2000, day=5, seed=3, concept_flip=0.0))
    flipped = datagen.churn_batch(2000, day=5, seed=3, concept_flip=1.0)
    assert flipped.drop(columns="churned").equals(base.drop(columns="churned"))
    by_region = flipped.groupby("region")["churned"].mean()
    assert by_region["south"] > by_region["north"] + 0.2  # region now drives churn


# --- full mode: the pure parts (the harness itself runs real services: python -m bench.simulation)


def real_run(**overrides: Any) -> PipelineRun:
    """A DAG run that trained, was promoted and deployed version 2; override to vary it."""
    fields: dict[str, Any] = {
        "run_id": "manual__2026-01-05",
        "state": "success",
        "tasks": {t: "success" for t in ("extract", "validate", "train", "evaluate", "register", "deploy")},
        "pending": ["day_0003.csv", "day_0004.csv"],
        "trigger": "new_data",
        "reason": "simulation day 4: batches of days 3, 4 arrived",
        "seconds": 41.5,
        "decision": {
            "promote": True,
            "reasons": ["clears", "beats v1"],
            "challenger": 0.81,
            "champion": 0.78,
        },
        "version": "2",
        "champion": "2",
        "training_days": [1, 3, 4],
    }
    return PipelineRun(**{**fields, **overrides})


def record_of(run: PipelineRun) -> Any:
    return pipeline_record(
        run, day=4, value=0.7, holdout_value=0.71, served_version=1, waiting=[(5, 7)], events=["drift 0.50"]
    )


def test_a_promoted_and_deployed_run_is_a_promotion() -> None:
    record = record_of(real_run())
    assert (record.policy, record.outcome, record.served_version) == (GATED, "promoted", 1)
    assert (record.challenger_value, record.champion_value) == (0.81, 0.78)
    assert record.decision_reasons == ["clears", "beats v1"]
    assert (record.new_days, record.training_days, record.run_seconds) == ([3, 4], [1, 3, 4], 41.5)
    assert record.trigger == "new_data" and "days 3, 4" in record.reason


def test_a_gate_rejection_keeps_its_reasons() -> None:
    tasks = {**real_run().tasks, "register": "skipped", "deploy": "skipped"}
    decision = {"promote": False, "reasons": ["worse than v1"], "challenger": 0.7, "champion": float("nan")}
    record = record_of(real_run(tasks=tasks, decision=decision, version=None, champion="1"))
    assert record.outcome == "rejected"
    assert record.decision_reasons == ["worse than v1"]
    assert record.challenger_value == 0.7 and record.champion_value is None  # NaN: undefined


def test_a_broken_batch_is_quarantined_and_a_quiet_day_skipped() -> None:
    failed = {"extract": "success", "validate": "failed", "train": "upstream_failed"}
    record = record_of(
        real_run(
            state="failed", tasks=failed, decision=None, quarantined={"day_0004.csv": "column 'x' rule type"}
        )
    )
    assert (record.outcome, record.quarantined_days, record.new_days) == ("quarantined", [4], [3, 4])
    assert "day_0004.csv: column 'x' rule type" in record.reason
    quiet = record_of(real_run(tasks={"extract": "skipped"}, pending=[], decision=None))
    assert (quiet.outcome, quiet.trigger) == ("skipped", "none")
    assert quiet.reason == "no new labelled batch (waiting for labels: day 5 due day 7)"


def test_a_promotion_that_did_not_deploy_is_a_failure() -> None:
    rolled_back = real_run(
        state="failed",
        tasks={**real_run().tasks, "deploy": "failed"},
        champion="1",
        version_tags={"ct.decision": "rolled_back", "ct.decision_reason": "p95 latency 180 ms over 100 ms"},
    )
    record = record_of(rolled_back)
    assert record.outcome == "failed"
    assert "version 2 did not become champion (rolled_back, deploy failed): p95 latency" in record.reason
    assert record.challenger_value == 0.81  # the gate's numbers stay on the record
    crashed = record_of(
        real_run(
            state="failed",
            tasks={"extract": "success", "validate": "success", "train": "failed"},
            decision=None,
            error="...\nMlflowException: connection refused\n",
        )
    )
    assert crashed.outcome == "failed"
    assert "tasks train failed" in crashed.reason and "connection refused" in crashed.reason


def test_service_answers_score_like_the_model(churn: PipelineConfig) -> None:
    train = coerce_to_schema(churn, datagen.churn_batch(600, day=1))
    test = coerce_to_schema(churn, datagen.churn_batch(300, day=2))
    model = (
        build_pipeline(churn).set_params(model__max_iter=20).fit(train[churn.feature_names], train["churned"])
    )
    features = test[churn.feature_names]
    # what the service answers over HTTP: plain lists in JSON, classes alongside
    answers = Answers(
        test.index, model.predict(features).tolist(), model.predict_proba(features).tolist(), [0, 1]
    )
    assert compute_metrics(churn, answers, features, test["churned"]) == compute_metrics(
        churn, model, features, test["churned"]
    )
    assert not hasattr(Answers(test.index, [0] * len(test)), "predict_proba")


def test_batch_days_and_training_windows() -> None:
    assert [batch_day(n) for n in ("day_0007.csv", "/x/day_12.parquet", "other.csv")] == [7, 12, None]
    assert window_days([[1], [3, 2], [4]], 2) == [2, 3, 4]
    assert window_days([[1], [2]], None) == [1, 2]
    assert (day_span([7, 1, 2, 3]), day_span([]), day_span([4])) == ("1-3, 7", "", "4")


def test_library_policies_step_only_the_baselines(churn: PipelineConfig) -> None:
    tiny = Scenario(
        days=3, rows_per_day=200, drift_start=2, broken_day=3, concept_day=None, label_delay_start=None
    )
    config = fast_adapting(churn).model_copy(
        update={"model": churn.model.model_copy(update={"params": {**churn.model.params, "max_iter": 20}})}
    )
    baselines = LibraryPolicies(config, tiny, BASELINES)
    days = [baselines.step(today) for today in stream(config, tiny)]
    assert [[r.policy for r in records] for records in days] == [[ORACLE, ALWAYS_DEPLOY, LEVEL0]] * 3
    assert [r.outcome for r in days[2]] == ["trained", "quarantined", "kept"]
    with pytest.raises(ValueError, match="unknown policies"):
        LibraryPolicies(config, tiny, ["nope"])


def test_full_mode_report_says_how_it_ran(result: SimulationResult, tmp_path: Path) -> None:
    full = SimulationResult(
        **{
            **vars(result),
            "mode": "full",
            "records": [dataclasses.replace(r, run_seconds=30.0 + r.day) for r in result.records],
            "run_info": {"airflow": "3.3.2", "mlflow": "3.17.2", "setup_seconds": 20.0, "cpus": 2},
        }
    )
    text = write_report(full, tmp_path).read_text(encoding="utf-8")
    assert "Full mode: the **gated** policy is the real pipeline" in text
    assert "`airflow dags test`" in text and "Airflow 3.3.2" in text
    assert f"DAG runs median {30 + (SHORT.days + 1) / 2:.0f} s" in text
    assert "| 42 s |" in text  # the DAG run column
    saved = json.loads((tmp_path / "simulation.json").read_text(encoding="utf-8"))
    assert SimulationResult.from_dict(saved).run_info == full.run_info


def test_simulation_harness_pieces(tmp_path: Path) -> None:
    import sqlite3

    from bench.simulation import PIPELINE, airflow_run_facts, parse_events, write_pipeline_config

    assert parse_events(["broken_day=3", "label_delay_start=off"]) == {
        "broken_day": "3",
        "label_delay_start": None,
    }
    assert Scenario(days=5, **parse_events(["broken_day=3"])).broken_day == 3
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_events(["broken_day"])
    copied = load_pipeline_config(
        write_pipeline_config(
            tmp_path, training={"window": 2, "recent_windows": [1, 3]}, model_params={"max_iter": 20}
        )
    )
    assert (copied.name, copied.landing_path, copied.training.window) == (PIPELINE, f"landing/{PIPELINE}", 2)
    assert copied.training.recent_windows == [1, 3]
    assert copied.model.params["max_iter"] == 20 and copied.source.watch is False

    database = tmp_path / "airflow.db"
    with sqlite3.connect(database) as db:  # the columns of Airflow's tables that the harness reads
        db.execute("CREATE TABLE dag_run (id INTEGER PRIMARY KEY, dag_id, run_id, state)")
        db.execute("CREATE TABLE task_instance (dag_id, run_id, task_id, state, start_date, end_date)")
        db.execute("INSERT INTO dag_run (dag_id, run_id, state) VALUES ('ct_x', 'old', 'success')")
        db.execute("INSERT INTO dag_run (dag_id, run_id, state) VALUES ('ct_x', 'new', 'failed')")
        db.executemany(
            "INSERT INTO task_instance VALUES ('ct_x', 'new', ?, ?, ?, ?)",
            [
                ("extract", "success", "2026-01-05 10:00:00.000000", "2026-01-05 10:00:05.000000"),
                ("validate", "failed", "2026-01-05 10:00:05.500000", "2026-01-05 10:00:12.500000"),
                ("train", None, None, None),
            ],
        )
    run_id, state, tasks, seconds = airflow_run_facts(database, "ct_x")
    assert (run_id, state, seconds) == ("new", "failed", 12.5)
    assert tasks == {"extract": "success", "validate": "failed", "train": "none"}


# --- deployment policies: point-estimate gate, statistical gate, shadow, canary


@pytest.fixture(scope="module")
def skewed() -> SimulationResult:
    churn = load_pipeline_config(BUNDLED_PIPELINES_DIR / "churn.yaml")
    return run_fast(churn, SKEWED, model_params=QUICK)


def test_skew_changes_only_what_training_reads(churn: PipelineConfig) -> None:
    from include.ct.data.validate import validate_frame

    assert [SKEWED.skewed(day) for day in range(1, 7)] == [False, False, True, True, False, False]
    plain = day_batch(churn, SKEWED.model_copy(update={"skew_day": None}), 3)
    today = day_batch(churn, SKEWED, 3)
    assert today.traffic.equals(plain.traffic) and today.batch.equals(plain.batch)  # live data untouched
    offline = skew(churn, SKEWED, today.traffic)
    assert offline.drop(columns="tenure_months").equals(today.traffic.drop(columns="tenure_months"))
    assert offline["tenure_months"].max() < today.traffic["tenure_months"].max() / 6
    assert validate_frame(churn, offline, "skewed.csv").success  # no offline check sees it
    assert any("skew" in label for _, label in SKEWED.event_marks())
    with pytest.raises(ValueError, match="not a feature"):
        skew(churn, SKEWED.model_copy(update={"skew_feature": "nope"}), offline)


def test_point_gate_reads_estimates_and_the_others_the_paired_interval(churn: PipelineConfig) -> None:
    gates = gate_configs(
        churn.model_copy(update={"promotion": churn.promotion.model_copy(update={"confidence": None})})
    )
    assert gates[POINT_GATE].promotion.confidence is None
    assert {gates[name].promotion.confidence for name in (GATED, GATED_SHADOW, GATED_CANARY)} == {0.95}


def test_online_validation_rolls_back_the_skewed_challenger_that_direct_deploy_ships(
    skewed: SimulationResult,
) -> None:
    by_key = {c.key: c for c in claims(skewed)}
    assert by_key["direct_ships_skew"].holds is True, by_key["direct_ships_skew"].detail
    for name in (GATED_SHADOW, GATED_CANARY):
        contained = by_key[f"{name}_contains_skew"]
        assert contained.holds is True, contained.detail
        staged = [r for r in skewed.policy(name) if r.outcome == "staged" and SKEWED.skewed(r.day)]
        assert staged, [(r.day, r.outcome) for r in skewed.policy(name)]
        settled = [r for r in skewed.policy(name) if r.online_action == "rollback"]
        assert settled and all(r.labels_spent > 0 for r in settled)
        assert all("live roc_auc" in r.online_reason or "no conclusion" in r.online_reason for r in settled)
    # Shadow never answers a client with the challenger; canary answers only its share.
    assert all(r.challenger_share == 0 for r in skewed.policy(GATED_SHADOW))
    assert 0 < max(r.challenger_share for r in skewed.policy(GATED_CANARY)) < 0.5
    # Direct deploy served the skewed version to everyone, and it did worse than the online policies.
    after = range(SKEWED.skew_day + 1, SKEWED.days + 1)
    direct = [r.value for r in skewed.policy(GATED) if r.day in after]
    shadow = [r.value for r in skewed.policy(GATED_SHADOW) if r.day in after]
    assert sum(direct) < sum(shadow)


def test_runs_wait_behind_a_staged_challenger(skewed: SimulationResult) -> None:
    for name in (GATED_SHADOW, GATED_CANARY):
        records = skewed.policy(name)
        staged_days = [r.day for r in records if r.outcome == "staged"]
        for record in records:
            if record.outcome == "waiting":
                assert "under online validation" in record.reason
                assert any(day < record.day for day in staged_days)


def test_report_compares_the_deployment_policies(skewed: SimulationResult, tmp_path: Path) -> None:
    text = write_report(skewed, tmp_path).read_text(encoding="utf-8")
    assert "## Deployment policies" in text
    for name in (POINT_GATE, GATED, GATED_SHADOW, GATED_CANARY, ALWAYS_DEPLOY):
        assert POLICY_LABELS[name] in text
    assert "training/serving skew" in text
