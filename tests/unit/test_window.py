"""Training-window choice: a concept change is learned from its first snapshot, stable data keeps all."""

from __future__ import annotations

import pandas as pd
import pytest

from include.ct.config import PipelineConfig
from include.ct.modeling.pipeline_building import coerce_to_schema
from include.ct.modeling.window import candidate_windows, choose_window
from tools import datagen


def with_recent_windows(config: PipelineConfig, windows: list[int], margin: float = 0.01) -> PipelineConfig:
    training = config.training.model_copy(update={"recent_windows": windows, "recent_window_margin": margin})
    model = config.model.model_copy(update={"params": {**config.model.params, "max_iter": 40}})  # quick fits
    return config.model_copy(update={"training": training, "model": model})


def days(config: PipelineConfig, first: int, last: int, concept_flip: float = 0.0) -> list[pd.DataFrame]:
    return [
        coerce_to_schema(config, datagen.churn_batch(800, day=day, seed=3, concept_flip=concept_flip))
        for day in range(first, last + 1)
    ]


def test_candidates_are_capped_by_what_is_there_longest_first(churn: PipelineConfig) -> None:
    config = with_recent_windows(churn, [1, 3, 7])
    assert candidate_windows(config, 5) == [5, 3, 1]
    assert candidate_windows(config, 1) == [1]
    assert candidate_windows(churn, 4) == [4]  # no recent windows configured: the full window only


def test_after_a_concept_change_the_newest_snapshot_alone_is_trained_on(churn: PipelineConfig) -> None:
    config = with_recent_windows(churn, [1, 3])
    choice = choose_window(config, [*days(config, 1, 4), *days(config, 5, 5, concept_flip=1.0)])
    assert choice.snapshots == 1, choice.reason
    assert choice.available == 5 and set(choice.scores) == {5, 3, 1}
    assert choice.scores[1] > choice.scores[5] + 0.1
    assert choice.reason.startswith("newest 1 of 5 snapshots")


def test_stable_data_keeps_the_full_window(churn: PipelineConfig) -> None:
    config = with_recent_windows(churn, [1, 3])
    choice = choose_window(config, days(config, 1, 5))
    assert choice.snapshots == 5, choice.reason


def test_without_recent_windows_nothing_is_fitted(churn: PipelineConfig) -> None:
    choice = choose_window(churn, days(churn, 1, 3))
    assert (choice.snapshots, choice.scores) == (3, {})


@pytest.mark.parametrize("margin", [0.0, 1.0])
def test_the_margin_decides_between_close_candidates(churn: PipelineConfig, margin: float) -> None:
    config = with_recent_windows(churn, [1], margin=margin)
    choice = choose_window(config, days(config, 1, 3))
    if margin == 1.0:
        assert choice.snapshots == 3  # nothing beats the full window by a whole AUC point
    else:
        best = max(choice.scores, key=lambda count: (choice.scores[count], count))
        assert choice.snapshots == best
