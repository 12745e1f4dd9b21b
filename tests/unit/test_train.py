"""Training pieces: schema coercion, splits and the scikit-learn Pipeline for both tasks."""

from __future__ import annotations

import numpy as np
import pytest

from include.ct.config import CLASSIFIERS, REGRESSORS, PipelineConfig
from include.ct.data.samples import schema_batch
from include.ct.modeling.metrics import (
    compute_metrics,
    metrics_of_scores,
    score,
    slice_metrics,
    slice_positions,
)
from include.ct.modeling.pipeline_building import (
    build_pipeline,
    coerce_to_schema,
    skops_trusted_types,
    split,
)
from include.ct.modeling.train import fit_pipeline
from tools import datagen


def _regression(config: PipelineConfig, model_type: str) -> PipelineConfig:
    return config.model_copy(
        update={
            "task": "regression",
            "target": "spend",
            "target_values": None,
            "metric": "r2",
            "metrics": ["rmse", "mae"],
            "model": config.model.model_copy(update={"type": model_type, "params": {}}),
            "timestamp": None,
        }
    )


def test_time_aware_split_holds_out_the_newest_rows(churn: PipelineConfig) -> None:
    frame = coerce_to_schema(churn, datagen.churn_batch(400, day=1))
    train, test = split(churn, frame)
    assert len(test) == 100
    assert train["event_time"].max() <= test["event_time"].min()


def test_classifier_learns_churn(churn: PipelineConfig) -> None:
    train = coerce_to_schema(churn, datagen.churn_batch(4000, day=1))
    test = coerce_to_schema(churn, datagen.churn_batch(2000, day=2))
    model = build_pipeline(churn).fit(train[churn.feature_names], train["churned"])
    metrics = compute_metrics(churn, model, test[churn.feature_names], test["churned"])
    assert metrics["roc_auc"] > churn.promotion.threshold
    assert set(metrics) == {"roc_auc", "accuracy", "f1", "log_loss"}


def test_slices_are_judged_on_the_primary_metric_the_whole_rows_give(churn: PipelineConfig) -> None:
    train = coerce_to_schema(churn, datagen.churn_batch(2000, day=1))
    test = coerce_to_schema(churn, datagen.churn_batch(1000, day=2))
    model = build_pipeline(churn).fit(train[churn.feature_names], train["churned"])
    scores = score(churn, model, test[churn.feature_names])
    only = metrics_of_scores(churn, scores, test["churned"], (churn.metric,))
    assert only == {churn.metric: metrics_of_scores(churn, scores, test["churned"])[churn.metric]}
    slices = slice_metrics(churn, model, test, scores=scores)
    assert slices and all(set(values) == {churn.metric, "rows"} for values in slices.values())
    for key, rows in slice_positions(churn, test).items():
        whole = metrics_of_scores(churn, scores.take(rows), test["churned"].iloc[rows])
        assert slices[key][churn.metric] == whole[churn.metric]


def test_regressor_learns_schema_data(churn: PipelineConfig) -> None:
    config = _regression(churn, "ridge")
    frame = coerce_to_schema(config, schema_batch(config, 2000, day=1))
    train, test = split(config, frame)
    model = build_pipeline(config).fit(train[config.feature_names], train["spend"])
    metrics = compute_metrics(config, model, test[config.feature_names], test["spend"])
    assert metrics["r2"] > 0.5
    assert np.isfinite(metrics["rmse"])


def test_training_fits_the_standard_pipeline_and_any_wrapped_one_alike(churn: PipelineConfig) -> None:
    """The one-copy fast path is for (ColumnTransformer, gradient boosting); any other Pipeline
    shape (here a pass-through step in front) is fitted step by step and predicts the same."""
    from sklearn.pipeline import Pipeline

    from tests.helpers.broken_models import SlowTransformer

    train = coerce_to_schema(churn, datagen.churn_batch(1500, day=1))
    test = coerce_to_schema(churn, datagen.churn_batch(300, day=2))
    standard = fit_pipeline(churn, build_pipeline(churn), train)
    wrapped = Pipeline([("pause", SlowTransformer(0.0)), ("model", build_pipeline(churn))])
    fit_pipeline(churn, wrapped, train)
    features = test[churn.feature_names]
    np.testing.assert_allclose(wrapped.predict_proba(features), standard.predict_proba(features))


def test_the_logged_dataset_carries_the_configs_schema_and_the_projects_digest(
    churn: PipelineConfig,
) -> None:
    from mlflow.types import DataType

    from include.ct.modeling import train as train_module

    frame = coerce_to_schema(churn, datagen.churn_batch(400, day=1))
    dataset = train_module.logged_dataset(churn, frame, source="/tmp/snapshots", name="t")
    assert dataset.digest == train_module.dataset_digest(frame)
    assert dataset.source.to_dict()["uri"].endswith("/tmp/snapshots")
    columns = {column.name: column for column in dataset.schema.inputs}
    assert set(columns) == set(frame.columns)
    for name, spec in churn.features.items():
        assert columns[name].required is not spec.nullable
        expected = {"integer": DataType.long, "float": DataType.double, "boolean": DataType.boolean}
        assert columns[name].type == expected.get(spec.type, DataType.string)
    assert columns[churn.target].type == DataType.long
    assert '"mlflow_colspec"' in dataset.to_dict()["schema"]


@pytest.mark.parametrize(
    ("task", "model_type"),
    [
        *(("classification", model_type) for model_type in CLASSIFIERS),
        *(("regression", model_type) for model_type in REGRESSORS),
    ],
)
def test_the_named_skops_trusted_types_load_every_estimator(
    churn: PipelineConfig, task: str, model_type: str
) -> None:
    """Named, not asked of skops: the list must hold every type skops would ask about."""
    import skops.io

    if task == "classification":
        config = churn.model_copy(
            update={"model": churn.model.model_copy(update={"type": model_type, "params": {}})}
        )
    else:
        config = _regression(churn, model_type)
    frame = coerce_to_schema(config, schema_batch(config, 600, day=1))
    model = build_pipeline(config).fit(frame[config.feature_names], frame[config.target])
    saved = skops.io.dumps(model)
    trusted = skops_trusted_types(model)
    assert set(skops.io.get_untrusted_types(data=saved)) <= set(trusted)
    loaded = skops.io.loads(saved, trusted=trusted)
    features = frame[config.feature_names].head(20)
    np.testing.assert_allclose(loaded.predict(features), model.predict(features))


def test_a_pipeline_of_other_steps_gets_its_trusted_types_from_skops(churn: PipelineConfig) -> None:
    from sklearn.pipeline import Pipeline

    from tests.helpers.broken_models import SlowTransformer

    wrapped = Pipeline([("pause", SlowTransformer(0.0)), ("model", build_pipeline(churn))])
    frame = coerce_to_schema(churn, datagen.churn_batch(600, day=1))
    wrapped.fit(frame[churn.feature_names], frame["churned"])
    assert "tests.helpers.broken_models.SlowTransformer" in skops_trusted_types(wrapped)
