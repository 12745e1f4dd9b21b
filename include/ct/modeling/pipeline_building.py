"""Pipeline building: the schema's dtypes, the held-out split and the scikit-learn Pipeline.

One definition of how a config becomes a model, used by training, evaluation (the champion's
rows get the same dtypes), the training-window choice and the simulation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from include.ct.config import PipelineConfig


def coerce_features(config: PipelineConfig, frame: pd.DataFrame) -> pd.DataFrame:
    """The feature columns with the dtypes the schema declares (same for training and serving)."""
    out = pd.DataFrame(index=frame.index)
    for name, spec in config.features.items():
        column = frame[name]
        if spec.type == "integer":
            out[name] = pd.to_numeric(column).astype("float64" if spec.nullable else "int64")
        elif spec.type == "float":
            out[name] = pd.to_numeric(column).astype("float64")
        elif spec.type == "boolean":
            out[name] = column.astype(bool)
        else:  # object dtype with None for missing; one shared object per distinct value
            values = pd.Categorical(column)
            lookup = np.empty(len(values.categories) + 1, dtype=object)
            lookup[:-1] = values.categories.tolist()
            lookup[-1] = None  # code -1: missing
            out[name] = pd.Series(lookup[values.codes], index=frame.index, dtype=object)
    return out


def coerce_to_schema(config: PipelineConfig, frame: pd.DataFrame) -> pd.DataFrame:
    """Features, target and timestamp of validated data with the schema's dtypes."""
    out = coerce_features(config, frame)
    out[config.target] = frame[config.target]
    if config.timestamp:
        out[config.timestamp] = pd.to_datetime(frame[config.timestamp], utc=True)
    return out


def split(config: PipelineConfig, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Time-aware split (newest rows held out) with a timestamp, else a seeded (stratified) split."""
    from sklearn.model_selection import train_test_split

    if config.timestamp:
        ordered = frame.sort_values(config.timestamp, kind="stable")
        cut = round(len(ordered) * (1 - config.training.test_size))
        return ordered.iloc[:cut], ordered.iloc[cut:]
    stratify = None
    if config.task == "classification":
        counts = frame[config.target].value_counts()
        if counts.min() >= 2:
            stratify = frame[config.target]
    train, test = train_test_split(
        frame,
        test_size=config.training.test_size,
        random_state=config.training.random_state,
        stratify=stratify,
    )
    return train, test


def tree_preprocess(config: PipelineConfig) -> Any:
    """Numbers as they are (NaN kept) and categories as ordinal codes: what gradient boosting needs.

    Histogram trees split codes as numbers, so no one-hot block multiplies the columns, and the
    output is one float64 matrix the estimator uses without another conversion copy.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

    numeric = [n for n, s in config.features.items() if s.is_numeric]
    categorical = [n for n, s in config.features.items() if not s.is_numeric]
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        transformers.append(("numeric", FunctionTransformer(feature_names_out="one-to-one"), numeric))
    if categorical:
        declared = [list(config.features[n].values or [False, True]) for n in categorical]
        encoder = OrdinalEncoder(
            categories=declared,  # every category is declared (booleans: False, True)
            handle_unknown="use_encoded_value",
            unknown_value=np.nan,
            encoded_missing_value=np.nan,
        )
        transformers.append(("categorical", encoder, categorical))
    return ColumnTransformer(transformers, remainder="drop")


def build_pipeline(config: PipelineConfig) -> Any:
    """Preprocessing and the configured estimator as one (ColumnTransformer, estimator) Pipeline.

    Linear models and forests get impute + scale + one-hot; gradient boosting gets raw numbers
    and ordinal codes (it handles missing values itself).
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [n for n, s in config.features.items() if s.is_numeric]
    categorical = [n for n, s in config.features.items() if not s.is_numeric]
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        transformers.append(
            (
                "numeric",
                Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]),
                numeric,
            )
        )
    if categorical:
        transformers.append(
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                    ]
                ),
                categorical,
            )
        )
    estimators: dict[tuple[str, str], Any] = {
        ("classification", "logistic_regression"): LogisticRegression,
        ("classification", "random_forest"): RandomForestClassifier,
        ("classification", "hist_gradient_boosting"): HistGradientBoostingClassifier,
        ("regression", "ridge"): Ridge,
        ("regression", "random_forest"): RandomForestRegressor,
        ("regression", "hist_gradient_boosting"): HistGradientBoostingRegressor,
    }
    params = dict(config.model.params)
    estimator_class = estimators[(config.task, config.model.type)]
    if "random_state" in estimator_class().get_params():
        params.setdefault("random_state", config.training.random_state)
    if config.model.type == "hist_gradient_boosting":
        preprocess = tree_preprocess(config)
    else:
        preprocess = ColumnTransformer(transformers, remainder="drop")
    return Pipeline([("preprocess", preprocess), ("model", estimator_class(**params))])


# What the Pipelines of build_pipeline hold that skops does not trust by default: one-hot
# encoders' dtype, forests' trees and gradient boosting's trees.
SKOPS_TRUSTED_TYPES = (
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)


def skops_trusted_types(pipeline: Any) -> list[str]:
    """The types skops must be told to trust to load ``pipeline``, beyond its defaults.

    Named for the Pipelines :func:`build_pipeline` makes (all scikit-learn steps), so saving a
    model does not serialize it a second time to ask skops; any other Pipeline is asked. Either
    way MLflow loads the saved model back with the list, so a missing name fails the save.
    """
    from sklearn.pipeline import Pipeline

    if isinstance(pipeline, Pipeline) and all(
        type(step).__module__.startswith("sklearn.") for _, step in pipeline.steps
    ):
        return list(SKOPS_TRUSTED_TYPES)
    import skops.io

    return list(skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)))
