"""Register a promoted challenger and make it the ``champion``, after checking it loads and answers.

Idempotent end to end: a retry finds the version it registered and never moves the alias twice.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from include.ct import registry
from include.ct.config import PipelineConfig
from include.ct.train import coerce_to_schema

log = logging.getLogger(__name__)


class InfraValidationError(Exception):
    """The candidate model did not load or answer through the serving interface."""


@dataclass
class PromotionResult:
    """The registered version, the champion it replaced and where to see it."""

    model_name: str
    version: str
    previous_champion: str | None
    moved: bool
    url: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_model_serves(config: PipelineConfig, model_uri: str, sample: pd.DataFrame) -> None:
    """Load ``model_uri`` as a pyfunc (signature enforced) and predict ``sample``."""
    import mlflow.pyfunc

    try:
        model = mlflow.pyfunc.load_model(model_uri)
        predictions = model.predict(sample[config.feature_names])
    except Exception as exc:
        raise InfraValidationError(f"{model_uri} failed the serving check: {exc}") from exc
    if len(predictions) != len(sample):
        raise InfraValidationError(
            f"{model_uri} returned {len(predictions)} predictions for {len(sample)} rows"
        )


def register_and_promote(
    config: PipelineConfig,
    run_id: str,
    test_path: str,
    *,
    decision: str,
    lineage: registry.Lineage,
) -> PromotionResult:
    """Register ``run_id``'s model, check it serves, then move ``champion`` to it."""
    tags = {
        **lineage.tags(),
        **registry.lineage_tags_of_run(run_id),  # the version shows the data it was trained on
        "ct.promoted_by_run_id": lineage.run_id,
        "ct.decision": "promote",
        "ct.decision_reason": decision[:5000],
    }
    version = registry.register_version(config, run_id, tags)
    sample = coerce_to_schema(config, pd.read_parquet(test_path)).head(20)
    uri = f"models:/{config.registered_model_name}/{version.version}"
    try:
        check_model_serves(config, uri, sample)
    except InfraValidationError as exc:
        registry.set_version_tags(
            config, version.version, {"ct.decision": "rejected_infra", "ct.decision_reason": str(exc)}
        )
        raise
    previous, moved = registry.move_champion(config, version.version, decision[:500])
    return PromotionResult(
        model_name=config.registered_model_name,
        version=str(version.version),
        previous_champion=previous,
        moved=moved,
        url=registry.model_version_url(config.registered_model_name, str(version.version)),
    )
