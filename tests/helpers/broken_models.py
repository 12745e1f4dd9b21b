"""Deliberately bad models for deployment tests: each trains and logs fine, then fails in serving."""

from __future__ import annotations

import time
from typing import Any

from sklearn.base import BaseEstimator, TransformerMixin


class SlowTransformer(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Passes data through after a pause: a model too slow for the latency budget."""

    def __init__(self, seconds: float = 0.3) -> None:
        self.seconds = seconds

    def fit(self, features: Any, target: Any = None) -> SlowTransformer:
        return self

    def transform(self, features: Any) -> Any:
        time.sleep(self.seconds)
        return features


class SingleRowFailure(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Passes data through, but raises on a one-row batch: training, evaluation and the service's
    load sample all predict many rows, single-row live requests fail (a shape bug found in serving)."""

    def fit(self, features: Any, target: Any = None) -> SingleRowFailure:
        return self

    def transform(self, features: Any) -> Any:
        if len(features) == 1:
            raise ValueError("cannot handle a batch of one row")
        return features
