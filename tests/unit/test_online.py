"""Online validation without services: the sequential interval, the live evidence and the decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from include.ct.config import PipelineConfig
from include.ct.modeling.metrics import Scores
from include.ct.modeling.paired import compare
from include.ct.monitoring.monitor import labels_dir
from include.ct.monitoring.prediction_log import SHADOW, PredictionLog
from include.ct.online.decision import decide, next_share
from include.ct.online.evidence import LiveEvidence, gather
from include.ct.online.sequential import always_valid_interval
from include.ct.registry.staging import StagedChallenger

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)


def accuracy_comparison(y: np.ndarray, challenger: np.ndarray, champion: np.ndarray) -> object:
    return compare("accuracy", y, Scores(challenger), Scores(champion), confidence=0.95)


def test_the_always_valid_interval_is_wider_than_the_fixed_one_and_holds_the_estimate() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    champion = np.where(rng.random(2000) < 0.8, y, 1 - y)
    challenger = np.where(rng.random(2000) < 0.82, y, 1 - y)
    fixed = accuracy_comparison(y, challenger, champion)
    interval = always_valid_interval(fixed, confidence=0.95, planned_n=200)  # type: ignore[arg-type]
    assert interval.low < fixed.low <= fixed.improvement <= fixed.high < interval.high  # type: ignore[attr-defined]


def test_identical_models_almost_never_look_better_however_often_the_evidence_is_read() -> None:
    """Coverage under peeking: 25 looks per sequence; the fixed interval would err far more often."""
    rng = np.random.default_rng(7)
    sequences, false_promotions, fixed_false = 200, 0, 0
    for _ in range(sequences):
        y = rng.integers(0, 2, 5000)
        champion = np.where(rng.random(5000) < 0.8, y, 1 - y)
        challenger = np.where(rng.random(5000) < 0.8, y, 1 - y)  # the same quality
        promoted = fixed_promoted = False
        for n in range(200, 5001, 200):
            comparison = accuracy_comparison(y[:n], challenger[:n], champion[:n])
            promoted |= always_valid_interval(comparison, confidence=0.95, planned_n=200).low > 0  # type: ignore[arg-type]
            fixed_promoted |= comparison.low > 0  # type: ignore[attr-defined]
        false_promotions += promoted
        fixed_false += fixed_promoted
    assert false_promotions / sequences <= 0.05
    assert fixed_false > false_promotions  # what peeking at a fixed interval would have done


def staged(strategy: str = "shadow", share: float = 1.0, hours_ago: float = 1) -> StagedChallenger:
    return StagedChallenger("2", strategy, share, NOW - timedelta(hours=hours_ago), "1")


def evidence(labelled: int, improvement: float | None = None) -> LiveEvidence:
    comparison = None
    if improvement is not None:
        rng = np.random.default_rng(3)
        y = rng.integers(0, 2, labelled)
        champion = np.where(rng.random(labelled) < 0.75, y, 1 - y)
        challenger = np.where(rng.random(labelled) < 0.75 + improvement, y, 1 - y)
        comparison = accuracy_comparison(y, challenger, champion)
    return LiveEvidence("accuracy", labelled, labelled, labelled, 0, comparison)  # type: ignore[arg-type]


def status(
    requests: int = 0, errors: int = 0, p99: float = 5.0, at_share: int = 0, state: str = "serving"
) -> dict:
    return {
        "challenger": "2",
        "challenger_state": state,
        "versions": {
            "2": {"requests": requests, "errors": errors, "p99_ms": p99, "requests_at_share": at_share}
        },
    }


def test_a_clearly_better_challenger_is_promoted_with_enough_labels(churn: PipelineConfig) -> None:
    decision = decide(churn, staged(), status(1000), evidence(3000, improvement=0.1), NOW)
    assert decision.action == "promote", decision.reason
    assert decision.interval is not None and decision.interval.low > -churn.deploy.online.tolerance


def test_a_clearly_worse_challenger_is_rolled_back(churn: PipelineConfig) -> None:
    decision = decide(churn, staged(), status(1000), evidence(3000, improvement=-0.15), NOW)
    assert decision.action == "rollback"
    assert "worse than the champion" in decision.reason


def test_no_decision_before_min_labels(churn: PipelineConfig) -> None:
    few = churn.deploy.online.min_labels - 1
    decision = decide(churn, staged(), status(1000), evidence(few, improvement=0.2), NOW)
    assert decision.action == "wait"
    assert f"{few}/{churn.deploy.online.min_labels} labelled pairs" in decision.reason


def test_labels_that_match_no_prediction_are_reported_while_waiting(churn: PipelineConfig) -> None:
    few = LiveEvidence("accuracy", 50, 50, 40, 130, None)
    decision = decide(churn, staged(), status(1000), few, NOW)
    assert decision.action == "wait"
    assert "130 labels matched no paired prediction (ignored)" in decision.reason


def test_no_conclusion_by_max_wait_rolls_back(churn: PipelineConfig) -> None:
    late = staged(hours_ago=churn.deploy.online.max_wait_hours + 1)
    decision = decide(churn, late, status(1000), evidence(10), NOW)
    assert decision.action == "rollback"
    assert "no conclusion" in decision.reason


@pytest.mark.parametrize(
    ("figures", "expected"),
    [
        ({"requests": 100, "errors": 5}, "error rate"),
        ({"requests": 100, "p99": 10_000.0}, "p99 latency"),
        ({"state": "failed"}, "did not load"),
    ],
)
def test_guardrails_roll_back_without_waiting_for_labels(
    churn: PipelineConfig, figures: dict, expected: str
) -> None:
    decision = decide(churn, staged("canary", 0.05), status(**figures), evidence(0), NOW)
    assert decision.action == "rollback"
    assert expected in decision.reason


def test_guardrails_need_enough_requests_to_count(churn: PipelineConfig) -> None:
    decision = decide(churn, staged(), status(requests=3, errors=3), evidence(0), NOW)
    assert decision.action == "wait"


def test_a_healthy_canary_takes_its_next_step(churn: PipelineConfig) -> None:
    steps = churn.deploy.canary_steps
    enough = churn.deploy.online.step_min_requests
    decision = decide(churn, staged("canary", steps[0]), status(enough, at_share=enough), evidence(0), NOW)
    assert (decision.action, decision.share) == ("advance", steps[1])
    assert next_share(churn, steps[-1]) is None
    last = decide(churn, staged("canary", steps[-1]), status(enough, at_share=enough), evidence(0), NOW)
    assert last.action == "wait"


def test_a_canary_steps_up_while_unproven_and_is_promoted_once_proven_at_any_step(
    churn: PipelineConfig,
) -> None:
    steps = churn.deploy.canary_steps
    enough = churn.deploy.online.step_min_requests
    unproven = evidence(churn.deploy.online.min_labels - 1, improvement=0.1)
    early = decide(churn, staged("canary", steps[0]), status(enough, at_share=enough), unproven, NOW)
    assert (early.action, early.share) == ("advance", steps[1])
    better = evidence(3000, improvement=0.1)
    proven = decide(churn, staged("canary", steps[0]), status(enough, at_share=3), better, NOW)
    assert proven.action == "promote", proven.reason
    worse = decide(churn, staged("canary", steps[1]), status(enough), evidence(3000, improvement=-0.15), NOW)
    assert worse.action == "rollback"


def write_log(root: Path, rows: list[tuple[str, str, str, int, float]]) -> None:
    """(version, role, id, prediction, score) rows into a real prediction log."""
    log = PredictionLog(root, flush_seconds=0.05)
    log.start()
    for version, role, prediction_id, prediction, score in rows:
        log.append(
            "churn",
            version,
            NOW,
            [{"tenure_months": 3}],
            [prediction_id],
            [prediction],
            [[1 - score, score]],
            role=role,
        )
    log.close()


def test_evidence_pairs_both_versions_on_the_prediction_id(
    churn: PipelineConfig, private_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = private_data_dir / "predictions"
    monkeypatch.setenv("CT_PREDICTION_LOG_DIR", str(root))
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 2, 400)
    rows = []
    for index, label in enumerate(truth):
        for version, role, accuracy in (("1", "served", 0.7), ("2", SHADOW, 0.9)):
            predicted = int(label if rng.random() < accuracy else 1 - label)
            rows.append((version, role, f"id-{index}", predicted, 0.8 if predicted else 0.2))
    rows.append(("1", "served", "unpaired", 1, 0.9))  # the challenger never scored this one
    write_log(root, rows)
    labels = pd.DataFrame(
        {"prediction_id": [f"id-{i}" for i in range(400)] + ["stranger"], churn.target: [*truth, 1]}
    )
    folder = labels_dir(churn)
    folder.mkdir(parents=True)
    labels.to_csv(folder / "labels.csv", index=False)

    found = gather(churn, challenger="2", champion="1", since=NOW - timedelta(hours=1), confidence=0.95)
    assert (found.challenger_rows, found.paired_rows, found.labelled_pairs) == (400, 400, 400)
    assert found.unmatched_labels == 1  # "stranger" matches no paired prediction: counted, ignored
    assert found.comparison is not None and found.comparison.improvement > 0.1
    assert found.metric == churn.metric


def test_monitoring_reads_only_the_answers_clients_got(private_data_dir: Path) -> None:
    from include.ct.monitoring.prediction_log import read_prediction_log

    root = private_data_dir / "log"
    write_log(root, [("1", "served", "a", 1, 0.8), ("2", SHADOW, "a", 0, 0.3)])
    assert list(read_prediction_log("churn", root)["model_version"]) == ["1"]
    assert len(read_prediction_log("churn", root, shadow=True)) == 2
