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

import numpy as np
import pandas as pd

from include.ct.config import FeatureSpec, PipelineConfig
from include.ct.data.extract import accepted_set_version, load_training_snapshots
from include.ct.modeling.metrics import metrics_of_scores, score
from include.ct.modeling.pipeline_building import (
    build_pipeline,
    coerce_to_schema,
    skops_trusted_types,
    split,
)
from include.ct.modeling.plots import training_plots
from include.ct.modeling.window import WindowChoice, choose_window
from include.ct.monitoring.drift import reference_profile
from include.ct.registry import registry
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


def _is_hgb(model: Any) -> bool:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    return isinstance(model, HistGradientBoostingClassifier | HistGradientBoostingRegressor)


def _uses_validation_split(model: Any, rows: int) -> bool:
    """Whether gradient boosting would carve its own early-stopping split out of ``rows``."""
    if not _is_hgb(model):
        return False
    stopping = model.early_stopping
    return bool(model.validation_fraction) and (stopping is True or (stopping == "auto" and rows > 10000))


@dataclass
class TrainingMatrix:
    """The transformed training rows, and the early-stopping rows when the estimator uses them."""

    x: Any
    y: Any
    x_val: Any = None
    y_val: Any = None


def training_matrix(config: PipelineConfig, pipeline: Any, train: pd.DataFrame) -> TrainingMatrix:
    """Fit the preprocessing on ``train`` and return the estimator's input as float matrices.

    For gradient boosting the preprocessing is stateless given the schema (declared categories),
    so it is fitted on a few rows and the rows are transformed chunk by chunk straight into the
    fit and early-stopping matrices (same fraction, stratified, seeded, as the estimator would
    split): with the caller's frame dropped afterwards, one copy of the training set remains.
    """
    from sklearn.model_selection import train_test_split

    preprocess, model = pipeline.steps[0][1], pipeline.steps[-1][1]
    features, target = config.feature_names, train[config.target]
    labels = target.to_numpy()
    if len(pipeline.steps) != 2 or config.model.type != "hist_gradient_boosting" or not _is_hgb(model):
        # Any other shape (e.g. a wrapped Pipeline): every step but the estimator transforms.
        return TrainingMatrix(pipeline[:-1].fit_transform(train[features], target), labels)
    preprocess.fit(train[features].head(1000), labels[:1000])
    if not _uses_validation_split(model, len(train)):
        return TrainingMatrix(_transform_rows(preprocess, train[features], np.arange(len(train))), labels)
    stratify = None
    if config.task == "classification" and target.value_counts().min() >= 2:
        stratify = labels
    fit_rows, val_rows = train_test_split(
        np.arange(len(labels)),
        test_size=model.validation_fraction,
        stratify=stratify,
        random_state=config.training.random_state,
    )
    fit_rows.sort()
    val_rows.sort()
    return TrainingMatrix(
        _transform_rows(preprocess, train[features], fit_rows),
        labels[fit_rows],
        _transform_rows(preprocess, train[features], val_rows),
        labels[val_rows],
    )


def _transform_rows(preprocess: Any, frame: pd.DataFrame, rows: Any, chunk: int = 1 << 18) -> Any:
    """``preprocess.transform`` of ``frame``'s rows at positions ``rows``, filled chunk by chunk."""
    width = preprocess.transform(frame.head(1)).shape[1]
    out = np.empty((len(rows), width), dtype=np.float64)
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        out[start : start + len(part)] = preprocess.transform(frame.iloc[part])
    return out


def fit_estimator(pipeline: Any, data: TrainingMatrix) -> Any:
    """Fit the Pipeline's estimator on an already transformed matrix; returns the fitted Pipeline."""
    model = pipeline.steps[-1][1]
    if data.x_val is not None:
        model.fit(data.x, data.y, X_val=data.x_val, y_val=data.y_val)
    else:
        model.fit(data.x, data.y)
    return pipeline


def fit_pipeline(config: PipelineConfig, pipeline: Any, train: pd.DataFrame) -> Any:
    """Fit ``pipeline`` on ``train`` the way training does (one matrix, explicit validation rows)."""
    return fit_estimator(pipeline, training_matrix(config, pipeline, train))


def dataset_digest(frame: pd.DataFrame) -> str:
    """A content digest from per-column summaries, cheap on millions of rows (for MLflow inputs)."""
    import hashlib

    parts = [str(len(frame))]
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_datetime64_any_dtype(column):
            column = (column - column.min()).dt.total_seconds()
        if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            values = column.to_numpy(dtype="float64", na_value=np.nan)
            parts.append(f"{name}:{np.nansum(values)!r}:{np.nansum(values * values)!r}:{column.isna().sum()}")
        else:
            counts = sorted((str(k), int(v)) for k, v in column.value_counts(dropna=False).items())
            parts.append(f"{name}:{counts!r}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _column_type(dtype: Any) -> str:
    """The MLflow ``DataType`` name for a pandas dtype (for columns the config gives no type)."""
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "long"
    if pd.api.types.is_float_dtype(dtype):
        return "double"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    return "string"


def _feature_type(spec: FeatureSpec) -> str:
    if spec.type == "integer":
        return "long"
    if spec.type == "float":
        return "double"
    if spec.type == "boolean":
        return "boolean"
    values = spec.values or []
    if values and all(isinstance(value, bool) for value in values):
        return "boolean"
    if values and all(isinstance(value, int) and not isinstance(value, bool) for value in values):
        return "long"
    return "string"


def dataset_schema(config: PipelineConfig, frame: pd.DataFrame) -> Any:
    """The MLflow ``Schema`` of a training frame, taken from the pipeline config.

    MLflow's own inference reads every value of every column (seconds per million rows); the
    config already states each feature's type and nullability, and validation enforced them.
    """
    from mlflow.types import ColSpec, DataType, Schema

    columns = [
        ColSpec(type=DataType[_feature_type(spec)], name=name, required=not spec.nullable)
        for name, spec in config.features.items()
    ]
    for name in (config.target, config.timestamp):
        if name is not None and name in frame.columns:
            columns.append(ColSpec(type=DataType[_column_type(frame[name].dtype)], name=name))
    return Schema(columns)


def logged_dataset(config: PipelineConfig, frame: pd.DataFrame, *, source: str, name: str) -> Any:
    """The MLflow dataset of ``frame``: its source, this project's content digest (the same rows get
    the same digest in every run) and the config's schema, logged as MLflow's ``MetaDataset``."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    return MetaDataset(
        source=resolve_dataset_source(source),
        name=name,
        digest=dataset_digest(frame),
        schema=dataset_schema(config, frame),
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


def log_pipeline_model(pipeline: Any, example: pd.DataFrame) -> Any:
    """Log a fitted Pipeline as the active run's model, as the service loads it: skops, with its
    signature, an input example and pinned requirements. Returns MLflow's ModelInfo."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    return mlflow.sklearn.log_model(
        pipeline,
        name=registry.MODEL_NAME,
        signature=infer_signature(example, pipeline.predict(example)),
        input_example=example,
        pip_requirements=_pip_requirements(),
        serialization_format="skops",
        skops_trusted_types=skops_trusted_types(pipeline),
    )


def train_challenger(config: PipelineConfig, lineage: registry.Lineage) -> TrainResult:
    """Fit the pipeline on the accepted data and log it to MLflow; a retry reuses its run."""
    import mlflow
    import mlflow.data

    snapshots = load_training_snapshots(config)
    versions = [version for version, _ in snapshots]
    training_version = accepted_set_version(versions)  # what was available: a retry finds its run
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
    window = _training_window(config, snapshots)
    used = snapshots[len(snapshots) - window.snapshots :]
    del snapshots
    raw = used[0][1] if len(used) == 1 else pd.concat([rows for _, rows in used], ignore_index=True)
    used_versions = [version for version, _ in used]
    del used
    frame = coerce_to_schema(config, raw)
    del raw
    train, test = split(config, frame)
    del frame
    split_dir.mkdir(parents=True, exist_ok=True)
    if not test_path.exists():  # the split is seeded, so a retry writes the same rows
        tmp = split_dir / ".test.parquet.tmp"
        test.to_parquet(tmp, index=False)
        tmp.replace(test_path)

    features = config.feature_names
    pipeline = build_pipeline(config)
    experiment_id = registry.ensure_experiment(config)
    log.info(
        "Training %s on %d rows (%d of %d accepted snapshots), holding out %d",
        config.model.type,
        len(train),
        len(used_versions),
        len(versions),
        len(test),
    )
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=f"{config.name}-{training_version[:8]}",
        tags={
            **lineage.tags(),
            "mlflow.note.content": _run_note(config, lineage),
            "ct.training_versions": ",".join(used_versions),
            "ct.window_choice": window.reason[:5000],
        },
    ) as run:
        mlflow.log_params(
            {
                "task": config.task,
                "estimator": config.model.type,
                **{f"model.{k}": v for k, v in config.model.params.items()},
                "train_rows": len(train),
                "test_rows": len(test),
                "features": ",".join(features),
                "snapshots": len(used_versions),
                "snapshots_available": len(versions),
                "split": "time" if config.timestamp else "random",
            }
        )
        mlflow.log_input(
            logged_dataset(config, train, source=str(paths.snapshots), name=f"{config.name}-train"),
            context="training",
        )
        mlflow.log_input(
            logged_dataset(config, test, source=str(test_path), name=f"{config.name}-test"),
            context="evaluation",
        )
        example = train[features].head(5).copy()
        train_rows = len(train)
        with tempfile.TemporaryDirectory() as tmp_dir:
            profile_path = Path(tmp_dir) / "profile.json"
            write_json_atomic(profile_path, reference_profile(config, train))
            mlflow.log_artifact(str(profile_path), artifact_path="reference")
        started = time.perf_counter()
        data = training_matrix(config, pipeline, train)
        del train  # from here the matrix is the only copy of the training rows
        fit_estimator(pipeline, data)
        del data
        fit_seconds = time.perf_counter() - started
        log.info("Fitted in %.1f s", fit_seconds)
        scores = score(config, pipeline, test[features])
        metrics = metrics_of_scores(config, scores, test[config.target])
        mlflow.log_metrics(
            {
                **{f"test_{k}": v for k, v in metrics.items()},
                "fit_seconds": fit_seconds,
                **{f"window_probe_{count}": value for count, value in window.scores.items()},
            }
        )

        log_pipeline_model(pipeline, example)
        with tempfile.TemporaryDirectory() as tmp_dir:
            for plot in training_plots(config, pipeline, test, Path(tmp_dir), scores=scores):
                mlflow.log_artifact(str(plot), artifact_path="plots")
        run_id = run.info.run_id
    log.info("Logged run %s with test metrics %s", run_id, metrics)
    return TrainResult(
        run_id=run_id,
        experiment_id=experiment_id,
        training_data_version=training_version,
        test_path=str(test_path),
        train_rows=train_rows,
        test_rows=len(test),
        metrics=metrics,
        run_url=registry.run_url(experiment_id, run_id),
    )


def _training_window(config: PipelineConfig, snapshots: list[tuple[str, pd.DataFrame]]) -> WindowChoice:
    """How many newest snapshots to train on: all of them unless ``training.recent_windows`` says."""
    if not config.training.recent_windows or len(snapshots) < 2:
        return WindowChoice(len(snapshots), len(snapshots), reason=f"all {len(snapshots)} snapshot(s)")
    return choose_window(config, [coerce_to_schema(config, rows) for _, rows in snapshots])


def _run_note(config: PipelineConfig, lineage: registry.Lineage) -> str:
    reason = f" Reason: {lineage.reason}." if lineage.reason else ""
    return (
        f"Challenger for `{config.registered_model_name}` trained by Airflow DAG `{lineage.dag_id}` "
        f"run `{lineage.run_id}` (trigger: {lineage.trigger}) on data version "
        f"`{lineage.training_data_version}`.{reason}"
    )
