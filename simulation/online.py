"""Online validation in the simulation: a staged challenger meets each day's live traffic (shadow
or canary, routed as the service routes) and the library's own online decision judges it on the
labels that have arrived; promotions are audited on the traffic of the days after them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from include.ct.config import PipelineConfig
from include.ct.data.samples import EPOCH
from include.ct.modeling.metrics import Scores, score
from include.ct.modeling.paired import PairedComparison, compare
from include.ct.online.decision import OnlineDecision, decide, live_confidence
from include.ct.online.evidence import LiveEvidence, live_metric_name
from include.ct.registry.staging import StagedChallenger
from include.ct_serving.traffic import routes_to_challenger
from simulation.scoring import Answers, Scored

AUDIT_DAYS = 3  # a promotion is judged on the traffic of the next three days


@dataclass
class Staged:
    """A challenger under online validation for one policy, and what it has seen so far."""

    model: Any
    version: int
    strategy: str  # shadow | canary
    share: float
    staged_day: int
    against: int  # the champion's version it is judged against
    training_days: list[int]
    exposed: list[tuple[int, pd.DataFrame]] = field(default_factory=list)  # (labels day, rows both scored)
    requests: int = 0  # requests it scored (shadow) or answered (canary)
    requests_at_share: int = 0
    max_share: float = 0.0  # the largest share of requests it answered on a day


def _exposed(config: PipelineConfig, traffic: pd.DataFrame, share: float) -> np.ndarray:
    """The rows the challenger sees at ``share``: sticky by the request's id, as the service routes."""
    ids = traffic[config.id_column] if config.id_column else pd.Series(traffic.index, index=traffic.index)
    return np.array([routes_to_challenger(share, [str(value)]) for value in ids], dtype=bool)


def _mix(champion: Scores, challenger: Scores, answered: np.ndarray, index: pd.Index) -> Answers:
    predicted = np.where(answered, challenger.predicted, champion.predicted)
    probabilities = None
    if champion.probabilities is not None and challenger.probabilities is not None:
        mixed = np.where(answered[:, None], challenger.probabilities, champion.probabilities)
        probabilities = mixed.tolist()
    return Answers(index, list(predicted), probabilities, champion.classes)


def serve_day(
    config: PipelineConfig, champion: Any, staged: Staged | None, traffic: pd.DataFrame, labels_day: int
) -> tuple[Answers | None, float]:
    """What the day's clients got (the champion's answers, or the challenger's on its canary share)
    and the share of requests the challenger answered; records the challenger's exposure."""
    if champion is None:
        return None, 0.0
    if staged is not None:
        seen = _exposed(config, traffic, staged.share)
        staged.exposed.append((labels_day, traffic[seen]))
        staged.requests += int(seen.sum())
        staged.requests_at_share += int(seen.sum())
    if staged is None or staged.strategy != "canary":  # the champion answers every request
        return Scored(champion, traffic, config.feature_names), 0.0
    features = traffic[config.feature_names]
    answered_share = float(seen.mean()) if len(seen) else 0.0
    staged.max_share = max(staged.max_share, answered_share)
    mixed = _mix(
        score(config, champion, features), score(config, staged.model, features), seen, traffic.index
    )
    return mixed, answered_share


def paired_on(
    config: PipelineConfig, challenger: Any, champion: Any, rows: pd.DataFrame, metric: str, confidence: float
) -> PairedComparison | None:
    """``challenger`` against ``champion`` on the same labelled rows (None while undefined)."""
    target = rows[config.target]
    if rows.empty or (metric in ("roc_auc", "f1") and target.nunique() < 2):
        return None
    features = rows[config.feature_names]
    return compare(
        metric,
        target.to_numpy(),
        score(config, challenger, features),
        score(config, champion, features),
        confidence=confidence,
    )


def _binary(model: Any) -> bool:
    return len(getattr(model, "classes_", [])) == 2


def judge(config: PipelineConfig, staged: Staged, champion: Any, day: int) -> tuple[OnlineDecision, int]:
    """The library's online decision at the end of ``day`` on the labels arrived by then, and how
    many labelled pairs it read."""
    arrived = [rows for due, rows in staged.exposed if due <= day]
    labelled = pd.concat(arrived) if arrived else pd.DataFrame(columns=[config.target])
    metric = live_metric_name(config, _binary(champion))
    comparison = paired_on(config, staged.model, champion, labelled, metric, live_confidence(config))
    evidence = LiveEvidence(metric, staged.requests, staged.requests, len(labelled), 0, comparison)
    status = {
        "challenger_state": "loaded",
        "versions": {
            str(staged.version): {
                "requests": staged.requests,
                "errors": 0,
                "requests_at_share": staged.requests_at_share,
            }
        },
    }
    challenger = StagedChallenger(
        version=str(staged.version),
        strategy=staged.strategy,
        share=staged.share,
        staged_at=EPOCH + timedelta(days=staged.staged_day),
        against=str(staged.against),
    )
    return decide(config, challenger, status, evidence, EPOCH + timedelta(days=day)), len(labelled)


@dataclass
class Audit:
    """A promotion waiting for the traffic of the days after it, to be judged on."""

    version: int
    day: int  # the day it became champion (it serves from the next day)
    model: Any
    replaced: Any
    traffic: list[pd.DataFrame] = field(default_factory=list)

    def result(self, config: PipelineConfig) -> dict[str, Any] | None:
        """The paired comparison with the replaced version once ``AUDIT_DAYS`` of traffic are in."""
        if len(self.traffic) < AUDIT_DAYS:
            return None
        rows = pd.concat(self.traffic)
        metric = live_metric_name(config, _binary(self.model))
        comparison = paired_on(config, self.model, self.replaced, rows, metric, live_confidence(config))
        return {
            "version": self.version,
            "promoted_day": self.day,
            "days": [self.day + 1, self.day + AUDIT_DAYS],
            "comparison": None if comparison is None else comparison.to_dict(),
            "significantly_worse": comparison is not None and comparison.high < 0,
        }
