"""Pipeline configuration: one YAML file per model, validated with pydantic.

A config error names the file, the key and what is wrong, so a broken YAML breaks only its own DAG.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# The folder the ``include`` package is imported from: the repository (Astro layout, PYTHONPATH)
# or site-packages (installed). A fresh interpreter gets it on its path; git is asked there.
IMPORT_ROOT = Path(__file__).resolve().parents[2]
# The bundled example configs ship inside the package (package data).
BUNDLED_PIPELINES_DIR = Path(str(resources.files("include") / "pipelines"))

Metric = Literal["accuracy", "f1", "f1_macro", "roc_auc", "log_loss", "rmse", "mae", "r2"]
CLASSIFICATION_METRICS: frozenset[str] = frozenset({"accuracy", "f1", "f1_macro", "roc_auc", "log_loss"})
REGRESSION_METRICS: frozenset[str] = frozenset({"rmse", "mae", "r2"})
LOWER_IS_BETTER: frozenset[str] = frozenset({"log_loss", "rmse", "mae"})

CLASSIFIERS = ("logistic_regression", "random_forest", "hist_gradient_boosting")
REGRESSORS = ("ridge", "random_forest", "hist_gradient_boosting")


PIPELINE_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


class ConfigError(ValueError):
    """A pipeline config is invalid; the message names the file and the key.

    ``pipeline`` is the name the file declares when it could be read that far, so the error takes
    that pipeline's place (its DAG id, an override's target) instead of one named after the file.
    """

    def __init__(self, path: Path | str, key: str, problem: str, *, pipeline: str | None = None) -> None:
        self.path = str(path)
        self.key = key
        self.problem = problem
        self.pipeline = pipeline
        super().__init__(f"{self.path}: key '{key}': {problem}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureSpec(_Strict):
    """Schema of one input column."""

    type: Literal["integer", "float", "category", "boolean"]
    min: float | None = None
    max: float | None = None
    values: list[str | int | bool] | None = None
    nullable: bool = False
    description: str | None = None

    @model_validator(mode="after")
    def _check(self) -> FeatureSpec:
        if self.type == "category" and not self.values:
            raise ValueError("a category feature needs its allowed 'values'")
        if self.type != "category" and self.values is not None:
            raise ValueError("'values' is only for category features")
        if self.type in ("category", "boolean") and (self.min is not None or self.max is not None):
            raise ValueError("'min'/'max' are only for numeric features")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self

    @property
    def is_numeric(self) -> bool:
        return self.type in ("integer", "float")


class SourceSpec(_Strict):
    """Where batches come from: files in the landing zone or rows of a SQL table."""

    type: Literal["files", "sql"] = "files"
    path: str | None = None
    conn_id: str | None = None
    query: str | None = Field(
        default=None, description="SQL with :start and :end bound to the run's data interval"
    )
    watch: bool = Field(default=True, description="start a run when new data arrives")
    poll_seconds: float = Field(default=30.0, gt=0, description="how often the watcher looks")
    settle_seconds: float = Field(
        default=2.0,
        ge=0,
        description="a file unchanged this long is complete; 0 when writers rename finished files "
        "into place (names starting with '.' or '_' are never read)",
    )
    max_batch_mb: float = Field(
        default=2048, gt=0, description="larger batch files are quarantined unread (split them upstream)"
    )

    @model_validator(mode="after")
    def _check(self) -> SourceSpec:
        if self.type == "sql" and not (self.conn_id and self.query):
            raise ValueError("a sql source needs 'conn_id' and 'query'")
        return self


class PromotionSpec(_Strict):
    """The gate, in the metric's own direction."""

    threshold: float
    min_improvement: float = 0.0
    max_slice_drop: float = 0.05
    min_slice_rows: int = Field(default=30, ge=1)
    confidence: float | None = Field(
        default=0.95,
        gt=0.5,
        lt=1.0,
        description="promote only when the lower bound of this two-sided confidence interval of the "
        "paired improvement over the champion (DeLong for roc_auc, McNemar for accuracy, a paired "
        "bootstrap otherwise) clears min_improvement; an interval that straddles it is "
        "'inconclusive'. Slices are judged with the level corrected for their number. null "
        "compares point estimates",
    )
    replace_failing_champion: bool = Field(
        default=True,
        description="when the champion itself misses the threshold on the same held-out data, "
        "a challenger that beats it may replace it though it misses the threshold too",
    )


class ModelSpec(_Strict):
    """The estimator at the end of the scikit-learn Pipeline."""

    type: str = "hist_gradient_boosting"
    params: dict[str, Any] = Field(default_factory=dict)


class TrainingSpec(_Strict):
    """How the training set is assembled and split."""

    test_size: float = Field(default=0.25, gt=0, lt=1)
    window: int | None = Field(default=None, ge=1, description="most recent accepted snapshots")
    recent_windows: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=list,
        description="shorter windows (newest N snapshots) tried against the full one; the one that "
        "best predicts the newest rows is trained (quick recovery after a concept change)",
    )
    recent_window_margin: float = Field(
        default=0.01, ge=0, description="how much a shorter window must beat the full one by"
    )
    random_state: int = 42


class ValidationSpec(_Strict):
    """Data checks beyond the per-feature schema."""

    min_rows: int = Field(default=1, ge=0)
    drift_threshold: float = Field(default=0.2, gt=0, description="PSI above which a feature drifted")


class RuntimeSpec(_Strict):
    """Where the heavy steps (train, evaluate) run: in the Airflow worker, or in a container."""

    type: Literal["process", "docker"] = "process"
    image: str = Field(default="airflow-ct:latest", description="image with this project (the Dockerfile)")
    docker_url: str = Field(default="unix://var/run/docker.sock", description="Docker engine to run it on")
    network_mode: str = Field(default="bridge", description="a network where MLflow is reachable")
    data_volume: str | None = Field(
        default=None,
        description="Docker volume holding CT_DATA_DIR (compose); default: bind-mount the worker's path",
    )
    user: str | None = Field(default=None, description="uid[:gid] in the container; default: the worker's")
    mem_limit: str | None = Field(default=None, description="e.g. 4g")
    environment: dict[str, str] = Field(default_factory=dict, description="extra environment variables")


class OnlineValidationSpec(_Strict):
    """How a staged challenger is judged on live traffic before it becomes the champion."""

    max_wait_hours: float = Field(
        default=72, gt=0, description="no decision by then: the challenger is rolled back"
    )
    min_labels: int = Field(default=200, ge=1, description="labelled paired predictions before any decision")
    tolerance: float = Field(
        default=0.005,
        ge=0,
        description="promote once the challenger is, with promotion.confidence, at most this much worse "
        "than the champion (metric units); roll back once it is surely worse than that",
    )
    poll_seconds: float = Field(default=30, gt=0, description="how often the evidence is read")
    guardrail_poll_seconds: float = Field(
        default=5, gt=0, description="how often the challenger's error rate and latency are read"
    )
    error_rate_budget: float = Field(
        default=0.01, ge=0, lt=1, description="challenger failures per request above which it rolls back"
    )
    latency_p99_ms: float = Field(default=250, gt=0, description="challenger p99 above which it rolls back")
    guardrail_min_requests: int = Field(
        default=50, ge=1, description="requests the challenger must see before its error rate and p99 count"
    )
    step_min_requests: int = Field(
        default=200, ge=1, description="canary: healthy requests at a step before the next step"
    )


class DeploySpec(_Strict):
    """How a promoted model reaches the prediction service, and what it must pass there."""

    approval: Literal["auto", "manual"] = Field(
        default="auto", description="manual: a person approves in the Airflow UI before the alias moves"
    )
    approval_timeout_hours: float = Field(default=24, gt=0, description="no answer means reject")
    smoke_rows: int = Field(default=50, ge=1, description="held-out rows sent over HTTP")
    latency_requests: int = Field(default=100, ge=1, description="single-row requests timed")
    latency_p95_ms: float = Field(default=100, gt=0, description="p95 budget of those requests")
    ready_timeout_seconds: float = Field(default=120, gt=0, description="wait for the new version")
    infra_timeout_seconds: float = Field(default=300, gt=0, description="fresh-process load check")
    strategy: Literal["direct", "shadow", "canary"] = Field(
        default="direct",
        description="direct: the alias moves at once; shadow: the challenger scores live requests beside "
        "the champion, which answers them all; canary: it answers a growing share of requests. Shadow "
        "and canary promote only after online validation on live labels",
    )
    shadow_share: float = Field(
        default=1.0, gt=0, le=1, description="shadow: share of live requests the challenger also scores"
    )
    canary_steps: list[float] = Field(
        default_factory=lambda: [0.05, 0.25, 0.5],
        description="canary: shares of requests the challenger answers, in order, until the online decision",
    )
    online: OnlineValidationSpec = Field(default_factory=OnlineValidationSpec)

    @field_validator("canary_steps")
    @classmethod
    def _canary_steps(cls, value: list[float]) -> list[float]:
        if not value:
            raise ValueError("at least one step is required")
        if any(not 0 < share < 1 for share in value):
            raise ValueError(f"every step is a share between 0 and 1 (exclusive), got {value}")
        if value != sorted(set(value)):
            raise ValueError(f"steps must increase, got {value}")
        return value


class MonitoringSpec(_Strict):
    """The monitoring DAG ``ct_<name>_monitor``: drift and live-quality thresholds."""

    schedule: str | None = "@hourly"
    window_hours: float = Field(default=24, gt=0, description="prediction-log traffic compared")
    min_rows: int = Field(default=200, ge=1, description="fewer rows are not judged")
    numeric_test: Literal["psi", "ks"] = "psi"
    psi_threshold: float = Field(default=0.2, gt=0)
    ks_threshold: float = Field(default=0.1, gt=0, lt=1)
    min_drifted_features: int = Field(default=1, ge=1)
    labels_path: str | None = Field(default=None, description="default labels/<name> under CT_DATA_DIR")
    label_window_hours: float = Field(default=24 * 7, gt=0, description="predictions labels join to")
    min_labels: int = Field(default=200, ge=1)
    max_metric_drop: float = Field(default=0.05, ge=0, description="live vs offline, metric units")
    cooldown_hours: float = Field(default=24, ge=0, description="no second retrain trigger within")
    log_sample: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="share of served records written to the prediction log (by a hash of their id, so a "
        "champion's and a challenger's predictions of one request are kept or dropped together); "
        "the monitor weights each logged row by 1/share",
    )


class BatchSourceSpec(_Strict):
    """What one batch-scoring run reads: a date folder of files, or the rows of a SQL query."""

    type: Literal["files", "sql"] = "files"
    path: str | None = Field(
        default=None,
        description="files: folder under CT_DATA_DIR holding one 'date=YYYY-MM-DD' folder of *.csv / "
        "*.parquet per interval; default batch/<name>",
    )
    conn_id: str | None = None
    query: str | None = Field(
        default=None, description="SQL with :start and :end bound to the run's data interval"
    )

    @model_validator(mode="after")
    def _check(self) -> BatchSourceSpec:
        if self.type == "sql" and not (self.conn_id and self.query):
            raise ValueError("a sql source needs 'conn_id' and 'query'")
        return self


class BatchOutputSpec(_Strict):
    """Where scores go: Parquet partitions per interval, or a SQL table upserted by interval."""

    type: Literal["parquet", "sql"] = "parquet"
    path: str | None = Field(
        default=None, description="parquet: folder under CT_DATA_DIR; default scores/<name>"
    )
    conn_id: str | None = None
    table: str | None = Field(default=None, description="sql: the table the scores are written to")

    @model_validator(mode="after")
    def _check(self) -> BatchOutputSpec:
        if self.type == "sql":
            if not (self.conn_id and self.table):
                raise ValueError("a sql output needs 'conn_id' and 'table'")
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?", self.table):
                raise ValueError(f"table {self.table!r} is not a plain [schema.]name")
        return self


class SparkSpec(_Strict):
    """``engine: spark``: where the scoring job is submitted (``SparkSubmitOperator``)."""

    conn_id: str = Field(
        default="spark_default",
        description="Airflow Spark connection: the master (local[*], spark://, k8s://)",
    )
    conf: dict[str, str] = Field(default_factory=dict, description="extra --conf settings of the job")
    executor_memory: str | None = Field(default=None, description="e.g. 4g")
    num_executors: int | None = Field(default=None, ge=1)


class BatchSpec(_Strict):
    """The batch-scoring DAG ``ct_<name>_batch``: the champion scores a table per interval."""

    schedule: str | None = "@daily"
    on_champion: bool = Field(
        default=False,
        description="also run when a new champion is promoted: the last interval is scored again by it",
    )
    source: BatchSourceSpec = Field(default_factory=BatchSourceSpec)
    key: list[str] = Field(description="column(s) carried to every output row, unique in an interval")
    output: BatchOutputSpec = Field(default_factory=BatchOutputSpec)
    engine: Literal["in_process", "spark"] = Field(
        default="in_process",
        description="in_process: chunks in the Airflow worker, bounded memory; spark: a Spark job",
    )
    chunk_rows: int = Field(
        default=100_000, ge=100, description="rows read, validated and scored at a time (in_process)"
    )
    input_wait_minutes: float = Field(
        default=0,
        ge=0,
        le=7 * 24 * 60,
        description="how long after the run started it waits for its interval's input before it "
        "skips (0: skip at once); the wait is deferred to the triggerer",
    )
    input_poll_seconds: float = Field(
        default=60,
        ge=1,
        le=3600,
        description="how often a waiting run looks for its input; files count once they stay "
        "unchanged for one look",
    )
    dual_scoring: bool | None = Field(
        default=None,
        description="while a challenger is staged for online validation, score each batch with it too "
        "(its evidence counts towards promotion); default: on for in_process, which alone supports it",
    )
    spark: SparkSpec = Field(default_factory=SparkSpec)

    @field_validator("key")
    @classmethod
    def _key(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one key column is required")
        if len(set(value)) != len(value):
            raise ValueError(f"key columns repeat: {value}")
        return value

    @model_validator(mode="after")
    def _check(self) -> BatchSpec:
        if self.engine == "spark" and self.output.type == "sql":
            raise ValueError("@batch.output.type: engine spark writes Parquet partitions; use type parquet")
        if self.engine == "spark" and self.dual_scoring:
            raise ValueError("@batch.dual_scoring: dual scoring runs in the in_process engine only")
        return self

    @property
    def dual_scores(self) -> bool:
        """Whether a staged challenger also scores each batch."""
        return self.engine == "in_process" if self.dual_scoring is None else self.dual_scoring


class RetentionSpec(_Strict):
    """What ``ct_housekeeping`` keeps, and for how long; defaults suit a daily pipeline."""

    prediction_log_days: float = Field(
        default=30,
        gt=0,
        description="prediction-log days kept; must exceed the label window the monitor joins on "
        "(monitoring.label_window_hours) and its traffic window",
    )
    compact_after_hours: float = Field(
        default=2,
        ge=1,
        description="prediction-log files are compacted into one file per hour once the hour is this old",
    )
    snapshots_keep: int | None = Field(
        default=None,
        ge=1,
        description="accepted snapshots kept (newest first); default the training window; never fewer "
        "than it. Snapshots in the lineage of the champion, its rollback target or a staged "
        "challenger always stay. Unset with no training window: every snapshot stays",
    )
    reports_days: float = Field(default=90, gt=0, description="validation reports and Data Docs kept")
    quarantine_days: float = Field(default=90, gt=0, description="quarantined files and their reports kept")
    model_versions_keep: int = Field(
        default=10,
        ge=1,
        description="newest registered versions kept; older ones (never the champion, its rollback "
        "target or a staged challenger) are deleted and their training runs moved to MLflow's "
        "deleted stage",
    )
    mlflow_gc_days: float = Field(
        default=7,
        ge=0,
        description="runs deleted this long ago are purged with `mlflow gc` (needs "
        "CT_MLFLOW_BACKEND_STORE_URI; without it gc is skipped and says why)",
    )
    airflow_db_days: float = Field(
        default=90, gt=0, description="Airflow metadata older than this is removed with `airflow db clean`"
    )


class RetrySpec(_Strict):
    """Retries of the tasks that call MLflow or train (a dead worker, a service restarting)."""

    count: int = Field(default=3, ge=0, le=20)
    delay_seconds: float = Field(default=20, ge=0, description="before the first retry")
    exponential_backoff: float = Field(default=2.0, ge=1, description="each delay times this")
    max_delay_seconds: float = Field(default=600, ge=0)


class PipelineConfig(_Strict):
    """One continuous-training pipeline: its data, schema, model and promotion gate."""

    name: str
    task: Literal["classification", "regression"]
    source: SourceSpec = Field(default_factory=SourceSpec)
    target: str
    target_values: list[str | int | bool] | None = None
    timestamp: str | None = None
    id_column: str | None = Field(
        default=None, description="a row id every batch must carry: non-null, no duplicates in a batch"
    )
    features: dict[str, FeatureSpec]
    slices: list[str] = Field(default_factory=list)
    metric: Metric
    metrics: list[Metric] = Field(default_factory=list)
    promotion: PromotionSpec
    schedule: str | None = "@daily"
    catchup: bool = Field(default=False, description="create runs for missed schedule intervals")
    model_name: str | None = None
    model: ModelSpec = Field(default_factory=ModelSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    deploy: DeploySpec = Field(default_factory=DeploySpec)
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    retries: RetrySpec = Field(default_factory=RetrySpec)
    batch: BatchSpec | None = Field(default=None, description="batch scoring; absent: no batch DAG")
    retention: RetentionSpec = Field(default_factory=RetentionSpec)
    owner: str = "mlops"
    tags: list[str] = Field(default_factory=list)
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not PIPELINE_NAME.fullmatch(value):
            raise ValueError("use lowercase letters, digits and '_', starting with a letter")
        return value

    @field_validator("features")
    @classmethod
    def _features(cls, value: dict[str, FeatureSpec]) -> dict[str, FeatureSpec]:
        if not value:
            raise ValueError("at least one feature is required")
        return value

    @model_validator(mode="after")
    def _check(self) -> PipelineConfig:
        allowed = CLASSIFICATION_METRICS if self.task == "classification" else REGRESSION_METRICS
        for metric in (self.metric, *self.metrics):
            if metric not in allowed:
                raise ValueError(
                    f"@metric: metric '{metric}' does not fit a {self.task} task "
                    f"(use one of {sorted(allowed)})"
                )
        if self.target in self.features:
            raise ValueError(f"@target: target '{self.target}' must not also be a feature")
        for column in self.slices:
            spec = self.features.get(column)
            if spec is None:
                raise ValueError(f"@slices: slice column '{column}' is not a feature")
            if spec.type not in ("category", "boolean"):
                raise ValueError(f"@slices: slice column '{column}' must be a category or boolean feature")
        estimators = CLASSIFIERS if self.task == "classification" else REGRESSORS
        if self.model.type not in estimators:
            raise ValueError(f"@model.type: model type '{self.model.type}' is not one of {list(estimators)}")
        if self.target_values is not None and self.task != "classification":
            raise ValueError("@target_values: only for classification")
        if self.id_column is not None and self.id_column in {*self.features, self.target, self.timestamp}:
            raise ValueError(
                f"@id_column: id column '{self.id_column}' must not be a feature, target or timestamp"
            )
        log_hours = self.retention.prediction_log_days * 24
        for key, hours in (
            ("monitoring.label_window_hours", self.monitoring.label_window_hours),
            ("monitoring.window_hours", self.monitoring.window_hours),
        ):
            if log_hours <= hours:
                raise ValueError(
                    f"@retention.prediction_log_days: {self.retention.prediction_log_days:g} days is not "
                    f"longer than {key} ({hours:g} h): the monitor would join on deleted predictions"
                )
        window = self.training.window
        if self.retention.snapshots_keep is not None and (
            window is None or self.retention.snapshots_keep < window
        ):
            raise ValueError(
                f"@retention.snapshots_keep: {self.retention.snapshots_keep} is fewer than the training "
                f"window ({window if window is not None else 'every snapshot'}): training would lose data"
            )
        if self.batch is not None:
            for column in self.batch.key:
                if column in self.features or column == self.target:
                    raise ValueError(f"@batch.key: key column '{column}' must not be a feature or the target")
        return self

    @property
    def registered_model_name(self) -> str:
        return self.model_name or self.name

    @property
    def dag_id(self) -> str:
        return f"ct_{self.name}"

    @property
    def all_metrics(self) -> list[str]:
        return list(dict.fromkeys([self.metric, *self.metrics]))

    @property
    def new_data_asset(self) -> str:
        """Name of the Airflow Asset whose events announce this pipeline's new data."""
        return f"{self.dag_id}_new_data"

    @property
    def champion_asset(self) -> str:
        """Name of the Airflow Asset whose events announce a new champion of this pipeline."""
        return f"{self.dag_id}_champion"

    @property
    def landing_path(self) -> str:
        return self.source.path or f"landing/{self.name}"

    @property
    def feature_names(self) -> list[str]:
        return list(self.features)


def metric_higher_is_better(metric: str) -> bool:
    """Whether a bigger value of ``metric`` is better."""
    return metric not in LOWER_IS_BETTER


def _error_key(error: dict[str, Any]) -> str:
    loc = [str(part) for part in error.get("loc", ())]
    return ".".join(loc) if loc else "(top level)"


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` through libyaml when PyYAML has it (10x faster: every DAG parse and
    every task reads the configs); a syntax error is reported by the pure-Python parser, whose
    message quotes the offending line."""
    fast_loader = getattr(yaml, "CSafeLoader", None)
    if fast_loader is not None:
        try:
            return yaml.load(text, Loader=fast_loader)  # CSafeLoader: the safe constructor
        except yaml.YAMLError:
            pass
    return yaml.safe_load(text)


def load_pipeline_config(path: str | Path) -> PipelineConfig:
    """Read and validate one pipeline YAML file, raising ConfigError naming file and key."""
    path = Path(path)
    try:
        raw = parse_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(path, "(syntax)", f"not valid YAML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(path, "(file)", f"cannot be read: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(path, "(top level)", "must be a mapping of keys to values")
    declared = raw.get("name")
    pipeline = declared if isinstance(declared, str) and PIPELINE_NAME.fullmatch(declared) else None
    for required in ("name", "target", "task", "features", "metric", "promotion"):
        if required not in raw:
            raise ConfigError(path, required, "is required but missing", pipeline=pipeline)
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = _error_key(dict(first))
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        if message.startswith("@"):  # a cross-field rule names the key it is about
            key, _, message = message[1:].partition(": ")
        got = first.get("input")
        if first.get("type") == "extra_forbidden":
            message = "unknown key (check its spelling)"
        elif got is not None and not isinstance(got, dict | list) and key != "(top level)":
            message = f"{message} (got {got!r})"
        raise ConfigError(path, key, message, pipeline=pipeline) from exc


def pipeline_config_paths() -> list[Path]:
    """Every pipeline YAML: the bundled ones, then those in ``CT_PIPELINES_DIR`` when set."""
    folders = [BUNDLED_PIPELINES_DIR]
    extra = os.environ.get("CT_PIPELINES_DIR")
    if extra and Path(extra).resolve() != BUNDLED_PIPELINES_DIR.resolve():  # each folder read once
        folders.append(Path(extra))
    paths: list[Path] = []
    for folder in folders:
        if folder.is_dir():
            paths.extend(sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]))
    return paths


def iter_pipeline_configs() -> Iterator[tuple[Path, PipelineConfig | ConfigError]]:
    """Load every config, yielding the error in place of the config for broken files."""
    for path in pipeline_config_paths():
        try:
            yield path, load_pipeline_config(path)
        except ConfigError as exc:
            yield path, exc


def pipeline_name(path: Path, loaded: PipelineConfig | ConfigError) -> str:
    """The pipeline a config file stands for: its name, or for a broken file the name it declares,
    else the file's own name."""
    if isinstance(loaded, PipelineConfig):
        return loaded.name
    return loaded.pipeline or path.stem


def effective_pipeline_configs() -> list[tuple[Path, PipelineConfig | ConfigError]]:
    """One config per name, as the DAGs, the service and the CLIs all see them: the last folder
    wins, so a config in ``CT_PIPELINES_DIR`` replaces a bundled one of the same name, and a broken
    one replaces it with its error rather than fall back to the bundled one. Two files of one
    folder naming the same pipeline are an error naming both: neither is picked silently."""
    chosen: dict[str, tuple[Path, PipelineConfig | ConfigError]] = {}
    for path, loaded in iter_pipeline_configs():
        name = pipeline_name(path, loaded)
        earlier = chosen.get(name)
        if earlier is not None and earlier[0].parent == path.parent:
            duplicate = ConfigError(
                path,
                "name",
                f"'{name}' is already the name of {earlier[0]} in the same folder: give each "
                "pipeline its own name (a file in CT_PIPELINES_DIR replaces a bundled one of the "
                "same name)",
                pipeline=name,
            )
            chosen[name] = (path, duplicate)
        else:
            chosen[name] = (path, loaded)
    return list(chosen.values())


def pipeline_configs() -> dict[str, PipelineConfig]:
    """The valid configs by name, one per name (see ``effective_pipeline_configs``)."""
    return {
        loaded.name: loaded
        for _, loaded in effective_pipeline_configs()
        if isinstance(loaded, PipelineConfig)
    }


def find_pipeline_config(name: str) -> PipelineConfig:
    """The config whose ``name`` is ``name``, one per name as the DAGs see it; used by CLIs and
    tasks. A broken config in its place raises its error."""
    for path, loaded in effective_pipeline_configs():
        if isinstance(loaded, PipelineConfig) and loaded.name == name:
            return loaded
        if isinstance(loaded, ConfigError) and pipeline_name(path, loaded) == name:
            raise loaded
    raise KeyError(f"no pipeline config named '{name}' in {[str(p) for p in pipeline_config_paths()]}")
