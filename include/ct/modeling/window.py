"""Training window: train on the newest snapshots that best predict the newest data.

A fixed window (``training.window``) mixes old and new behaviour for weeks after a concept
change. With ``training.recent_windows`` the pipeline also fits on only the newest N snapshots and
scores every candidate on the newest rows, which none of them trained on; a shorter window is
chosen only when it beats the full one by ``training.recent_window_margin``, so stable periods keep
all their data and a changed concept is learned from the first snapshot that shows it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from include.ct.config import PipelineConfig, metric_higher_is_better
from include.ct.modeling.metrics import compute_metrics
from include.ct.modeling.pipeline_building import build_pipeline, split

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowChoice:
    """How many of the newest snapshots to train on, and the probe scores that decided it."""

    snapshots: int
    available: int
    scores: dict[int, float] = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshots": self.snapshots,
            "available": self.available,
            "scores": {str(k): v for k, v in self.scores.items()},
            "reason": self.reason,
        }


def candidate_windows(config: PipelineConfig, available: int) -> list[int]:
    """Snapshot counts to try, longest (all available) first."""
    shorter = {min(w, available) for w in config.training.recent_windows}
    return sorted(shorter | {available}, reverse=True)


def _trainable(config: PipelineConfig, rows: pd.DataFrame) -> bool:
    if len(rows) < 2:
        return False
    return config.task != "classification" or rows[config.target].nunique() >= 2


def choose_window(config: PipelineConfig, snapshots: Sequence[pd.DataFrame]) -> WindowChoice:
    """Pick how many newest snapshots (schema-coerced frames, oldest first) to train on.

    The probe is the newest ``training.test_size`` of the newest snapshot (time-aware when the
    pipeline has a timestamp); each candidate fits on its snapshots minus the probe.
    """

    available = len(snapshots)
    candidates = candidate_windows(config, available)
    if len(candidates) == 1:
        return WindowChoice(
            available, available, reason=f"all {available} snapshot(s): no shorter window to try"
        )
    fit_part, probe = split(config, snapshots[-1])
    if not _trainable(config, fit_part) or not _trainable(config, probe):
        return WindowChoice(available, available, reason="newest snapshot too small to probe: all snapshots")
    features, target = config.feature_names, config.target
    scores: dict[int, float] = {}
    for count in candidates:
        rows = pd.concat([*snapshots[available - count : -1], fit_part], ignore_index=True)
        if not _trainable(config, rows):
            continue
        model = build_pipeline(config).fit(rows[features], rows[target])
        value = compute_metrics(config, model, probe[features], probe[target])[config.metric]
        if not math.isnan(value):
            scores[count] = float(value)
    if available not in scores:
        return WindowChoice(
            available, available, scores, "the full window could not be scored: all snapshots"
        )
    sign = 1.0 if metric_higher_is_better(config.metric) else -1.0
    best = max(scores, key=lambda count: (sign * scores[count], count))
    margin = config.training.recent_window_margin
    if best != available and sign * (scores[best] - scores[available]) <= margin:
        best = available
    summary = ", ".join(f"{count}: {value:.4f}" for count, value in scores.items())
    if best == available:
        reason = (
            f"all {available} snapshots (no shorter window beats them by more than {margin}; "
            f"{config.metric} {summary})"
        )
    else:
        reason = (
            f"newest {best} of {available} snapshots: {config.metric} {scores[best]:.4f} on the newest rows "
            f"vs {scores[available]:.4f} for all ({summary})"
        )
    log.info("training window: %s", reason)
    return WindowChoice(best, available, scores, reason)
