"""Scoring models and answers on a day's rows, and the real offline gate on them."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from include.ct.config import PipelineConfig
from include.ct.modeling.evaluate import GateDecision, decide, paired_comparisons
from include.ct.modeling.metrics import compute_metrics, score, slice_metrics


class Answers:
    """Predictions (and class probabilities) already made for the rows of a frame, answered by row
    index: lets the library's metric and slice functions score a model, or a service's HTTP
    answers, without predicting again."""

    def __init__(
        self,
        index: pd.Index,
        predicted: Sequence[Any],
        probabilities: Sequence[Sequence[float]] | None = None,
        classes: Sequence[Any] | None = None,
    ) -> None:
        self.classes_ = None if classes is None else list(classes)
        self._predicted = pd.Series(list(predicted), index=index)
        self._proba = None if probabilities is None else pd.DataFrame(list(probabilities), index=index)

    def predict(self, rows: pd.DataFrame) -> Any:
        return self._predicted.loc[rows.index].to_numpy()

    @property
    def predict_proba(self) -> Callable[[pd.DataFrame], Any]:
        """Class probabilities by row; absent (``hasattr`` False) when there are none."""
        proba = self._proba
        if proba is None:
            raise AttributeError("these answers have no class probabilities")
        return lambda rows: proba.loc[rows.index].to_numpy()


class Scored(Answers):
    """A fitted model's predictions on one frame, computed once (the same numbers as the model)."""

    def __init__(self, model: Any, frame: pd.DataFrame, features: list[str]) -> None:
        self.model = model
        classes = getattr(model, "classes_", None)
        rows = frame[features]
        proba = model.predict_proba(rows) if classes is not None and hasattr(model, "predict_proba") else None
        super().__init__(frame.index, list(model.predict(rows)), proba, classes)


def as_number(value: float) -> float | None:
    """A metric value, or None where it is undefined (NaN)."""
    return None if math.isnan(value) else float(value)


def score_on(config: PipelineConfig, model: Any, frame: pd.DataFrame) -> float | None:
    """``model``'s primary metric on ``frame`` (None without a model or where undefined)."""
    if model is None:
        return None
    return as_number(
        compute_metrics(config, model, frame[config.feature_names], frame[config.target])[config.metric]
    )


def gate_decision(
    config: PipelineConfig, challenger: Any, champion: Any, champion_version: int, test: pd.DataFrame
) -> GateDecision:
    """The real gate (``evaluate.decide``) on challenger and champion scored on the same held-out rows."""
    features = config.feature_names
    scored = Scored(challenger, test, features)
    challenger_metrics = compute_metrics(config, scored, test[features], test[config.target])
    challenger_slices = slice_metrics(config, scored, test)
    if champion is None:
        return decide(config, challenger_metrics, challenger_slices, None, None)
    incumbent = Scored(champion, test, features)
    comparison, slice_comparisons = None, None
    if config.promotion.confidence is not None:  # judged on the paired interval, as evaluate does
        comparison, slice_comparisons = paired_comparisons(
            config,
            test,
            score(config, challenger, test[features]),
            score(config, champion, test[features]),
            config.promotion.confidence,
        )
    return decide(
        config,
        challenger_metrics,
        challenger_slices,
        compute_metrics(config, incumbent, test[features], test[config.target]),
        slice_metrics(config, incumbent, test),
        champion_version=str(champion_version),
        comparison=comparison,
        slice_comparisons=slice_comparisons,
    )
