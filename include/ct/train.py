"""Train: a scikit-learn Pipeline (ColumnTransformer + estimator) logged to MLflow with lineage.

The held-out split is written to artifact storage so evaluation scores challenger and champion
on exactly the same rows.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from include.ct import registry
from include.ct.config import PipelineConfig
from include.ct.drift import reference_profile
from include.ct.extract import load_training_data
from include.ct.storage import pipeline_paths, write_json_atomic

log = logging.getLogger(__name__)

MODEL_PIP_REQUIREMENTS_PACKAGES = ("scikit-learn", "pandas", "numpy", "scipy", "skops")


@dataclass
class TrainResult:
    """What training produced, small enough for XCom."""

    run_id: str
    experiment_id: str
    training_data_version: str
    test_path: str
    train_rows: int
    test_rows: int
    metrics: dict[str, float]
    run_url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
        else:
            out[name] = column.astype(object).where(column.notna(), None)
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


def build_pipeline(config: PipelineConfig) -> Any:
    """Preprocessing (impute, scale, one-hot) and the configured estimator as one Pipeline."""
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
    return Pipeline(
        [
            ("preprocess", ColumnTransformer(transformers, remainder="drop")),
            ("model", estimator_class(**params)),
        ]
    )


def _pip_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in MODEL_PIP_REQUIREMENTS_PACKAGES:
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            continue
    return pins


def _skops_trusted_types(model: Any) -> list[str]:
    """Our own Pipeline's types, which skops asks us to trust explicitly."""
    import skops.io

    return list(skops.io.get_untrusted_types(data=skops.io.dumps(model)))


def train_challenger(config: PipelineConfig, lineage: registry.Lineage) -> TrainResult:
    """Fit the pipeline on the accepted data and log it to MLflow; a retry reuses its run."""
    import mlflow
    import mlflow.data
    from mlflow.models import infer_signature

    from include.ct.evaluate import compute_metrics
    from include.ct.plots import training_plots

    raw, training_version, versions = load_training_data(config)
    lineage = registry.Lineage(**{**asdict(lineage), "training_data_version": training_version})
    paths = pipeline_paths(config)
    split_dir = paths.splits / training_version
    test_path = split_dir / "test.parquet"

    existing = registry.find_training_run(config, lineage)
    if existing and test_path.exists():
        log.info("Training run %s already exists for this Airflow run and data: reusing it", existing)
        run = registry.client().get_run(existing)
        return TrainResult(
            run_id=existing,
            experiment_id=run.info.experiment_id,
            training_data_version=training_version,
            test_path=str(test_path),
            train_rows=int(run.data.params.get("train_rows", 0)),
            test_rows=int(run.data.params.get("test_rows", 0)),
            metrics={k: v for k, v in run.data.metrics.items() if k.startswith("test_")},
            run_url=registry.run_url(run.info.experiment_id, existing),
        )

    registry.close_abandoned_training_runs(config, lineage)
    frame = coerce_to_schema(config, raw)
    train, test = split(config, frame)
    split_dir.mkdir(parents=True, exist_ok=True)
    if not test_path.exists():  # the split is seeded, so a retry writes the same rows
        tmp = split_dir / ".test.parquet.tmp"
        test.to_parquet(tmp, index=False)
        tmp.replace(test_path)

    features = config.feature_names
    pipeline = build_pipeline(config)
    experiment_id = registry.ensure_experiment(config)
    log.info(
        "Training %s on %d rows (%d accepted snapshots), holding out %d",
        config.model.type,
        len(train),
        len(versions),
        len(test),
    )
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=f"{config.name}-{training_version[:8]}",
        tags={**lineage.tags(), "mlflow.note.content": _run_note(config, lineage)},
    ) as run:
        mlflow.log_params(
            {
                "task": config.task,
                "estimator": config.model.type,
                **{f"model.{k}": v for k, v in config.model.params.items()},
                "train_rows": len(train),
                "test_rows": len(test),
                "features": ",".join(features),
                "snapshots": len(versions),
                "split": "time" if config.timestamp else "random",
            }
        )
        mlflow.log_input(
            mlflow.data.from_pandas(
                train, source=str(paths.snapshots), targets=config.target, name=f"{config.name}-train"
            ),
            context="training",
        )
        mlflow.log_input(
            mlflow.data.from_pandas(
                test, source=str(test_path), targets=config.target, name=f"{config.name}-test"
            ),
            context="evaluation",
        )
        started = time.perf_counter()
        pipeline.fit(train[features], train[config.target])
        fit_seconds = time.perf_counter() - started
        log.info("Fitted in %.1f s", fit_seconds)
        metrics = compute_metrics(config, pipeline, test[features], test[config.target])
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        mlflow.log_metric("fit_seconds", fit_seconds)

        example = train[features].head(5)
        signature = infer_signature(example, pipeline.predict(example))
        mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=signature,
            input_example=example,
            pip_requirements=_pip_requirements(),
            serialization_format="skops",
            skops_trusted_types=_skops_trusted_types(pipeline),
        )
        with tempfile.TemporaryDirectory() as tmp_dir:
            profile_path = Path(tmp_dir) / "profile.json"
            write_json_atomic(profile_path, reference_profile(config, train))
            mlflow.log_artifact(str(profile_path), artifact_path="reference")
            for plot in training_plots(config, pipeline, test, Path(tmp_dir)):
                mlflow.log_artifact(str(plot), artifact_path="plots")
        run_id = run.info.run_id
    log.info("Logged run %s with test metrics %s", run_id, metrics)
    return TrainResult(
        run_id=run_id,
        experiment_id=experiment_id,
        training_data_version=training_version,
        test_path=str(test_path),
        train_rows=len(train),
        test_rows=len(test),
        metrics=metrics,
        run_url=registry.run_url(experiment_id, run_id),
    )


def _run_note(config: PipelineConfig, lineage: registry.Lineage) -> str:
    reason = f" Reason: {lineage.reason}." if lineage.reason else ""
    return (
        f"Challenger for `{config.registered_model_name}` trained by Airflow DAG `{lineage.dag_id}` "
        f"run `{lineage.run_id}` (trigger: {lineage.trigger}) on data version "
        f"`{lineage.training_data_version}`.{reason}"
    )
