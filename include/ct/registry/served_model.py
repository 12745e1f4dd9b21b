"""A registered model version loaded exactly as the prediction service serves it.

The service, the deploy task's infra check (a fresh interpreter) and its smoke test all load a
version through ``load_served_model``: the signature is checked against the pipeline schema, a
schema-conformant sample must predict, and a fast path (the fitted transformers on numpy
blocks) is used only where it reproduces the Pipeline's answers exactly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from include.ct.config import PipelineConfig
from include.ct.data.samples import schema_batch
from include.ct.registry import registry

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("ct.serving")

Prediction = tuple[list[Any], list[list[float]] | None]
"""Labels (or values) and, for classifiers, class probabilities."""


class ModelLoadError(Exception):
    """A model version cannot be served: it does not load, disagrees with the schema, or fails."""


SIGNATURE_TYPES = {
    "integer": {"long", "integer", "double", "float"},
    "float": {"double", "float", "long", "integer"},
    "boolean": {"boolean"},
    "category": {"string"},
}


def check_signature(config: PipelineConfig, signature: Any) -> None:
    """Refuse a model whose input signature disagrees with the pipeline schema (names and types)."""
    if signature is None or signature.inputs is None:
        raise ModelLoadError("the model has no input signature")
    inputs = {spec.name: spec for spec in signature.inputs.inputs}
    missing = [name for name in config.features if name not in inputs]
    extra = [name for name in inputs if name not in config.features]
    if missing or extra:
        raise ModelLoadError(
            f"signature disagrees with the schema: missing features {missing}, unexpected {extra}"
        )
    for name, spec in config.features.items():
        declared = str(getattr(inputs[name].type, "name", inputs[name].type))
        if declared not in SIGNATURE_TYPES[spec.type]:
            raise ModelLoadError(
                f"signature disagrees with the schema on feature '{name}': "
                f"model expects {declared}, schema says {spec.type}"
            )


class FastPath:
    """The fitted ColumnTransformer's own transformers applied to numpy blocks built from records.

    Same fitted objects, same arithmetic, without the per-call pandas column selection and
    checks that dominate a small request; used only after it reproduced the full Pipeline bit for bit.
    """

    def __init__(self, config: PipelineConfig, model: Any) -> None:
        import copy

        from sklearn.compose import ColumnTransformer
        from sklearn.pipeline import Pipeline

        steps = model.steps if isinstance(model, Pipeline) else []
        if len(steps) != 2 or not isinstance(steps[0][1], ColumnTransformer):
            raise TypeError("not a (ColumnTransformer, estimator) Pipeline")
        self.estimator = steps[1][1]
        self.blocks: list[tuple[Any, list[str], str]] = []
        for name, transformer, columns in steps[0][1].transformers_:
            if name == "remainder" or transformer == "drop":
                continue
            if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
                raise TypeError(f"transformer {name} selects columns by position")
            fitted = copy.deepcopy(transformer)
            for step in [fitted, *(s for _, s in getattr(fitted, "steps", []))]:
                if "feature_names_in_" in vars(step):  # fitted on frames, fed arrays here
                    del step.feature_names_in_
            numeric = all(config.features[c].is_numeric for c in columns)
            self.blocks.append((fitted, columns, "float64" if numeric else "object"))

    def transform(self, records: Sequence[dict[str, Any]]) -> Any:
        import numpy as np

        parts = [
            transformer.transform(np.array([[r[c] for c in columns] for r in records], dtype=dtype))
            for transformer, columns, dtype in self.blocks
        ]
        return np.hstack(parts)


@dataclass(frozen=True)
class ServedModel:
    """One loaded model version and what the API reports about it."""

    config: PipelineConfig
    version: str
    run_id: str
    loaded_at: datetime
    model: Any = field(repr=False)
    classes: list[Any] | None
    fast: FastPath | None = field(default=None, repr=False)

    def predict(self, frame: pd.DataFrame) -> Prediction:
        """Labels (or values) and, for classifiers, class probabilities in ``classes`` order."""
        return self._answer(self.model, frame)

    def predict_records(
        self, records: Sequence[dict[str, Any]]
    ) -> tuple[list[Any], list[list[float]] | None]:
        """``predict`` on validated records, through the fast path when there is one."""
        if self.fast is None:
            return self.predict(records_frame(self.config, records))
        return self._answer(self.fast.estimator, self.fast.transform(records))

    def _answer(self, model: Any, features: Any) -> Prediction:
        if self.classes is not None and hasattr(model, "predict_proba"):
            probabilities = model.predict_proba(features)
            labels = [self.classes[i] for i in probabilities.argmax(axis=1)]
            return labels, probabilities.tolist()
        return model.predict(features).tolist(), None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.config.name,
            "registered_model": self.config.registered_model_name,
            "version": self.version,
            "run_id": self.run_id,
            "loaded_at": self.loaded_at.isoformat(),
            "task": self.config.task,
            "features": self.config.feature_names,
            "classes": self.classes,
        }


def json_records(config: PipelineConfig, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready records of the schema's features (NaN becomes null).

    An integer feature with missing values is stored as float (14.0); it goes out as 14, since
    the service's schema-strict integer fields refuse 14.0.
    """
    integers = {name for name, spec in config.features.items() if spec.type == "integer"}
    records = []
    for row in frame[config.feature_names].to_dict(orient="records"):
        record: dict[str, Any] = {}
        for key, value in row.items():
            plain = python_value(value)
            if isinstance(plain, float) and math.isnan(plain):
                plain = None
            elif key in integers and isinstance(plain, float) and plain.is_integer():
                plain = int(plain)
            record[str(key)] = plain
        records.append(record)
    return records


def python_value(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def records_frame(config: PipelineConfig, records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Validated records as the DataFrame the model was trained on (dtypes of ``coerce_features``).

    Built column by column from numpy arrays: ten times faster than coercing a generic frame.
    """
    import numpy as np
    import pandas as pd

    columns: dict[str, Any] = {}
    for name, spec in config.features.items():
        values = [record[name] for record in records]
        if spec.type == "integer":
            columns[name] = np.array(values, dtype="float64" if spec.nullable else "int64")
        elif spec.type == "float":
            columns[name] = np.array(values, dtype="float64")
        elif spec.type == "boolean":
            columns[name] = np.array(values, dtype=bool)
        else:  # object dtype with None for missing, as in training (not pandas 3's str dtype)
            columns[name] = pd.Series(values, dtype=object)
    return pd.DataFrame(columns, copy=False)


def sample_records(config: PipelineConfig, rows: int = 8) -> list[dict[str, Any]]:
    """Schema-conformant records for warming up and checking a freshly loaded model."""
    return json_records(config, schema_batch(config, rows, day=0, seed=11))


def load_served_model(config: PipelineConfig, version: str | None = None) -> ServedModel:
    """Load ``version`` (default: the ``champion``), check its signature and that it predicts."""
    import mlflow.models
    import mlflow.sklearn

    client = registry.client()
    name = config.registered_model_name
    try:
        if version is None:
            model_version = client.get_model_version_by_alias(name, registry.CHAMPION_ALIAS)
        else:
            model_version = client.get_model_version(name, version)
    except Exception as exc:
        raise ModelLoadError(f"{name}: no such version ({version or 'champion'}): {exc}") from exc
    uri = f"models:/{name}/{model_version.version}"
    try:
        info = mlflow.models.get_model_info(uri)
        check_signature(config, info.signature)
        model = mlflow.sklearn.load_model(uri)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{uri}: {exc}") from exc
    except Exception as exc:
        raise ModelLoadError(f"{uri} failed to load: {exc}") from exc
    classes = [python_value(c) for c in model.classes_] if hasattr(model, "classes_") else None
    served = ServedModel(
        config=config,
        version=str(model_version.version),
        run_id=str(model_version.run_id),
        loaded_at=datetime.now(UTC),
        model=model,
        classes=classes if config.task == "classification" else None,
    )
    sample = sample_records(config)
    try:
        expected = served.predict(records_frame(config, sample))
    except Exception as exc:
        raise ModelLoadError(f"{uri} failed to predict a schema-conformant sample: {exc}") from exc
    if len(expected[0]) != len(sample):
        raise ModelLoadError(f"{uri} returned {len(expected[0])} predictions for {len(sample)} rows")
    return with_fast_path(served, sample, expected)


def with_fast_path(
    served: ServedModel, sample: list[dict[str, Any]], expected: tuple[list[Any], Any]
) -> ServedModel:
    """``served`` with a FastPath if its model allows one and it reproduces ``expected`` exactly."""
    import dataclasses

    try:
        candidate = dataclasses.replace(served, fast=FastPath(served.config, served.model))
        if candidate.predict_records(sample) == expected:
            return candidate
        log.warning(
            "%s v%s: fast path disagrees with the Pipeline; using the Pipeline",
            served.config.name,
            served.version,
        )
    except Exception as exc:  # noqa: BLE001 - any other model shape is served the plain way
        log.info("%s v%s: no fast path (%s)", served.config.name, served.version, exc)
    return served
