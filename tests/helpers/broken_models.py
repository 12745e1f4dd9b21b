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
