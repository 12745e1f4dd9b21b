"""Online prediction service: serves each pipeline's ``champion`` and follows the alias as it moves.

A new version is loaded beside the old one (off the event loop) and swapped in with one reference
assignment, so requests in flight finish on the old model and none fail or wait for the load.
Requests are validated against the pipeline schema; the model's signature is checked against the
same schema when it loads. Every prediction is appended to the prediction log (``prediction_log``).

Run it with ``make serve`` or ``python -m include.ct.serving``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hmac
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from include.ct.config import FeatureSpec, PipelineConfig, iter_pipeline_configs
from include.ct.monitoring.prediction_log import PredictionLog, prediction_log_dir
from include.ct.registry import registry

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("ct.serving")

API_PREFIX = "/v1/models"
RELOAD_TOKEN_ENV = "CT_SERVING_RELOAD_TOKEN"


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass(frozen=True)
class ServingSettings:
    """Service configuration, from ``CT_SERVING_*`` variables (the token never from the repo)."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 1000
    max_body_bytes: int = 8 * 1024 * 1024
    poll_seconds: float = 30.0
    reload_token: str | None = None
    prediction_log: Path | None = None
    flush_seconds: float = 2.0
    pipelines: tuple[str, ...] | None = None
    load_on_start: bool = True

    @classmethod
    def from_env(cls) -> ServingSettings:
        token = os.environ.get(RELOAD_TOKEN_ENV) or None
        token_file = os.environ.get(f"{RELOAD_TOKEN_ENV}_FILE")
        if not token and token_file:
            token = Path(token_file).read_text().strip() or None
        names = os.environ.get("CT_SERVING_PIPELINES", "").strip()
        return cls(
            host=os.environ.get("CT_SERVING_HOST", "127.0.0.1"),
            port=int(os.environ.get("CT_SERVING_PORT", "8000")),
            max_batch=int(os.environ.get("CT_SERVING_MAX_BATCH", "1000")),
            max_body_bytes=int(os.environ.get("CT_SERVING_MAX_BODY_BYTES", str(8 * 1024 * 1024))),
            poll_seconds=_env_float("CT_SERVING_POLL_SECONDS", 30.0),
            reload_token=token,
            prediction_log=prediction_log_dir(),
            flush_seconds=_env_float("CT_PREDICTION_LOG_FLUSH_SECONDS", 2.0),
            pipelines=tuple(n.strip() for n in names.split(",") if n.strip()) or None,
        )


Prediction = tuple[list[Any], list[list[float]] | None]
"""Labels (or values) and, for classifiers, class probabilities."""


class ModelLoadError(Exception):
    """A model version cannot be served: it does not load, disagrees with the schema, or fails."""


# --- schema: the request contract -----------------------------------------------------------

_SIGNATURE_TYPES = {
    "integer": {"long", "integer", "double", "float"},
    "float": {"double", "float", "long", "integer"},
    "boolean": {"boolean"},
    "category": {"string"},
}


def _feature_annotation(spec: FeatureSpec) -> Any:
    python_type: Any
    if spec.type == "integer":
        python_type = Annotated[int, Field(strict=True, ge=spec.min, le=spec.max)]
    elif spec.type == "float":
        python_type = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=spec.min, le=spec.max)]
    elif spec.type == "boolean":
        python_type = Annotated[bool, Field(strict=True)]
    else:
        python_type = Literal[tuple(spec.values or ())]
    return python_type | None if spec.nullable else python_type


def record_model(config: PipelineConfig) -> type[BaseModel]:
    """A pydantic model of one input record: every feature required, nothing else allowed."""
    fields: dict[str, Any] = {
        name: (_feature_annotation(spec), Field(..., description=spec.description))
        for name, spec in config.features.items()
    }
    model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        f"{config.name.title()}Record",
        __config__=ConfigDict(extra="forbid", allow_inf_nan=False),
        **fields,
    )
    return model


def request_json_schema(config: PipelineConfig, max_batch: int) -> dict[str, Any]:
    """OpenAPI schema of a predict request, inlined so fuzzers and clients see every rule."""
    record = record_model(config).model_json_schema()
    record.pop("title", None)
    return {
        "type": "object",
        "required": ["records"],
        "additionalProperties": False,
        "properties": {
            "records": {"type": "array", "items": record, "minItems": 1, "maxItems": max_batch},
            "ids": {
                "type": "array",
                "items": {"type": "string", "maxLength": 200},
                "description": "optional caller ids, one per record, kept in the prediction log "
                "so late labels can be joined to predictions",
            },
        },
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
        if declared not in _SIGNATURE_TYPES[spec.type]:
            raise ModelLoadError(
                f"signature disagrees with the schema on feature '{name}': "
                f"model expects {declared}, schema says {spec.type}"
            )


# --- a loaded model -------------------------------------------------------------------------


class FastPath:
    """The fitted ColumnTransformer's own transformers applied to numpy blocks built from records.

    Same fitted objects, same arithmetic, without the per-call pandas column selection and
    checks that cost ~5 ms here; used only after it reproduced the full Pipeline bit for bit.
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


def _python_value(value: Any) -> Any:
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


class PredictionBatcher:
    """Coalesces the predict calls that arrive while the model is busy into one call.

    scikit-learn's per-call overhead (~8 ms for the bundled pipeline) dwarfs its per-row cost, so
    under concurrency one call for every queued request multiplies throughput; a lone request is
    predicted at once, with no added wait. Runs on the event loop: no thread pool (threaded
    OpenMP predict is several times slower).
    """

    def __init__(self) -> None:
        self._pending: list[tuple[ServedModel, Sequence[dict[str, Any]], asyncio.Future[Any]]] = []
        self._scheduled = False

    async def predict(
        self, served: ServedModel, rows: Sequence[dict[str, Any]]
    ) -> tuple[list[Any], list[list[float]] | None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((served, rows, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._run)
        result: tuple[list[Any], list[list[float]] | None] = await future
        return result

    def _run(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        by_model: dict[int, list[tuple[ServedModel, Sequence[dict[str, Any]], asyncio.Future[Any]]]] = {}
        for item in pending:  # a swap mid-batch: each request stays with the model it pinned
            by_model.setdefault(id(item[0]), []).append(item)
        for items in by_model.values():
            served = items[0][0]
            rows = [row for _, request_rows, _ in items for row in request_rows]
            try:
                labels, probabilities = served.predict_records(rows)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for *_, future in items:
                    if not future.done():
                        future.set_exception(exc)
                continue
            offset = 0
            for _, request_rows, future in items:
                end = offset + len(request_rows)
                if not future.done():
                    future.set_result(
                        (labels[offset:end], probabilities[offset:end] if probabilities is not None else None)
                    )
                offset = end


def sample_records(config: PipelineConfig, rows: int = 8) -> list[dict[str, Any]]:
    """Schema-conformant records for warming up and checking a freshly loaded model."""
    from include.ct.datagen import schema_batch

    frame = schema_batch(config, rows, day=0, seed=11)[config.feature_names]
    return [
        {key: (None if value != value else _python_value(value)) for key, value in row.items()}  # noqa: PLR0124
        for row in frame.to_dict(orient="records")
    ]


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
    classes = [_python_value(c) for c in model.classes_] if hasattr(model, "classes_") else None
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
    return _with_fast_path(served, sample, expected)


def _with_fast_path(
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


# --- the model slots and their swaps --------------------------------------------------------


class ModelSlot:
    """The serving model of one pipeline; a swap is one reference assignment."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.current: ServedModel | None = None
        self.last_error: str | None = None
        self.checked_at: datetime | None = None
        self.failed_version: str | None = None  # not retried by the poller until asked to
        self._lock = asyncio.Lock()
        self.record_adapter = record_model(config)

    async def refresh(self, *, retry_failed: bool = False) -> bool:
        """Load the version ``champion`` points at if it is not the one serving; True if swapped.

        A version that failed to load is not loaded again on every poll, only when
        ``retry_failed`` (the reload endpoint) asks for it.
        """
        async with self._lock:
            try:
                target = await asyncio.to_thread(self._champion_version)
            except Exception as exc:  # noqa: BLE001 - registry unreachable: keep serving
                self.last_error = f"registry unreachable: {exc}"
                log.warning("%s: %s", self.config.name, self.last_error)
                return False
            self.checked_at = datetime.now(UTC)
            if target is None:
                if self.current is not None:  # the alias was removed: stop serving that version
                    log.warning(
                        "%s: champion alias removed, unloading v%s", self.config.name, self.current.version
                    )
                    self.current = None
                self.last_error = "no champion registered"
                return False
            if self.current is not None and self.current.version == target:
                self.last_error = None
                return False
            if target == self.failed_version and not retry_failed:
                return False
            started = time.perf_counter()
            try:
                loaded = await asyncio.to_thread(load_served_model, self.config, target)
            except ModelLoadError as exc:
                self.last_error = str(exc)
                self.failed_version = target
                log.error("%s: not swapping to version %s: %s", self.config.name, target, exc)
                return False
            previous = self.current.version if self.current else None
            self.current = loaded  # the swap: requests already running keep their reference
            self.last_error = None
            self.failed_version = None
            # Long-lived objects (models, libraries) out of the cyclic collector's sight: full
            # collections over them stalled requests for ~200 ms under load. (Reference
            # counting still frees a replaced model.)
            gc.freeze()
            log.info(
                "%s: now serving version %s (was %s), loaded in %.2f s",
                self.config.name,
                loaded.version,
                previous,
                time.perf_counter() - started,
            )
            return True

    def _champion_version(self) -> str | None:
        return registry.champion_version_strict(self.config)

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = self.current.describe() if self.current else {"name": self.config.name}
        body["ready"] = self.current is not None
        body["last_error"] = self.last_error
        body["failed_version"] = self.failed_version
        body["checked_at"] = self.checked_at.isoformat() if self.checked_at else None
        return body


class ModelServer:
    """All slots, the poller that follows the alias, and the prediction log."""

    def __init__(self, configs: Sequence[PipelineConfig], settings: ServingSettings) -> None:
        self.settings = settings
        self.slots = {config.name: ModelSlot(config) for config in configs}
        self.prediction_log = (
            PredictionLog(settings.prediction_log, flush_seconds=settings.flush_seconds)
            if settings.prediction_log is not None
            else None
        )
        self._poller: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.prediction_log is not None:
            self.prediction_log.start()
        if self.settings.poll_seconds > 0:
            self._poller = asyncio.create_task(self._poll_forever())
        elif self.settings.load_on_start:  # no polling: load once, then reloads come over HTTP
            self._poller = asyncio.create_task(self._refresh_all())

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self.prediction_log is not None:
            await asyncio.to_thread(self.prediction_log.close)

    async def _refresh_all(self) -> None:
        for slot in self.slots.values():
            await slot.refresh()

    async def _poll_forever(self) -> None:
        while True:
            await self._refresh_all()
            await asyncio.sleep(self.settings.poll_seconds)


def configured_pipelines(names: Sequence[str] | None = None) -> list[PipelineConfig]:
    """The valid pipeline configs to serve (all, or those named); broken ones are logged."""
    configs = []
    for path, loaded in iter_pipeline_configs():
        if not isinstance(loaded, PipelineConfig):
            log.error("not serving %s: %s", path, loaded)
            continue
        if names is None or loaded.name in names:
            configs.append(loaded)
    return configs


# --- the HTTP API ---------------------------------------------------------------------------


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": message, **extra}, status_code=status)


def _field_errors(error: ValidationError) -> list[dict[str, Any]]:
    out = []
    for item in error.errors(include_url=False)[:50]:
        location = "records"
        for part in item["loc"]:
            location += f"[{part}]" if isinstance(part, int) else f".{part}"
        out.append({"field": location, "message": item["msg"], "type": item["type"]})
    return out


def create_app(
    configs: Sequence[PipelineConfig] | None = None, settings: ServingSettings | None = None
) -> FastAPI:
    """The FastAPI app serving ``configs`` (default: every configured pipeline)."""
    from pydantic import TypeAdapter

    settings = settings or ServingSettings.from_env()
    configs = list(configs) if configs is not None else configured_pipelines(settings.pipelines)
    server = ModelServer(configs, settings)
    batcher = PredictionBatcher()
    adapters = {name: TypeAdapter(list[slot.record_adapter]) for name, slot in server.slots.items()}  # type: ignore[name-defined]

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await server.start()
        try:
            yield
        finally:
            await server.stop()

    app = FastAPI(
        title="Continuous-training prediction service",
        description="Serves the `champion` alias of every configured pipeline and follows it as "
        "the pipeline promotes new versions.",
        version="1",
        lifespan=lifespan,
    )
    app.state.server = server

    def slot_or_404(name: str) -> ModelSlot | JSONResponse:
        slot = server.slots.get(name)
        if slot is None:
            return _error(404, f"unknown model '{name}'; this service serves {sorted(server.slots)}")
        return slot

    @app.get("/health", summary="Liveness: the process answers")
    async def health() -> dict[str, Any]:
        dropped = server.prediction_log.dropped if server.prediction_log else 0
        return {"status": "ok", "prediction_log_dropped": dropped}

    @app.get("/ready", summary="Readiness: every configured model is loaded")
    async def ready() -> Any:
        missing = {n: s.last_error or "loading" for n, s in server.slots.items() if s.current is None}
        body = {"ready": not missing, "models": {n: s.status() for n, s in server.slots.items()}}
        if missing:
            return _error(503, f"not every model is loaded: {missing}", **body)
        return body

    @app.get(API_PREFIX, summary="Every served model")
    async def list_models() -> dict[str, Any]:
        return {"models": [slot.status() for slot in server.slots.values()]}

    @app.get(API_PREFIX + "/{name}", summary="The version serving, its run id and load time")
    async def describe(name: str) -> Any:
        slot = slot_or_404(name)
        return slot if not isinstance(slot, ModelSlot) else slot.status()

    @app.post(
        API_PREFIX + "/{name}/reload",
        summary="Follow the champion alias now (token required)",
        responses={401: {"description": "no token"}, 403: {"description": "wrong token"}},
    )
    async def reload(name: str, authorization: Annotated[str | None, Header()] = None) -> Any:
        if not settings.reload_token:
            return _error(403, f"reload over HTTP is disabled: {RELOAD_TOKEN_ENV} is not set")
        if not authorization or not authorization.lower().startswith("bearer "):
            return _error(401, "reload needs 'Authorization: Bearer <token>'")
        if not hmac.compare_digest(authorization[7:].strip().encode(), settings.reload_token.encode()):
            return _error(403, "invalid reload token")
        slot = slot_or_404(name)
        if not isinstance(slot, ModelSlot):
            return slot
        swapped = await slot.refresh(retry_failed=True)
        body = slot.status()
        body["swapped"] = swapped
        if slot.last_error and (slot.current is None or slot.failed_version is not None):
            # The champion could not be loaded: say so now rather than let callers wait.
            return _error(503, slot.last_error, **body)
        return body

    @app.post(
        API_PREFIX + "/{name}/predict",
        summary="Predict a batch of records",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": request_json_schema(configs[0], settings.max_batch)
                        if len(configs) == 1
                        else {"type": "object"}
                    }
                },
            }
        },
        responses={
            400: {"description": "malformed JSON"},
            404: {"description": "unknown model"},
            413: {"description": "batch or body too large"},
            422: {"description": "a record breaks the schema; the field is named"},
            503: {"description": "no model loaded yet"},
        },
    )
    async def predict(name: str, request: Request) -> Any:
        slot = slot_or_404(name)
        if not isinstance(slot, ModelSlot):
            return slot
        body = await request.body()
        if len(body) > settings.max_body_bytes:
            return _error(413, f"request body of {len(body)} bytes exceeds {settings.max_body_bytes}")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, f"malformed JSON: {exc}")
        if not isinstance(payload, dict) or not isinstance(payload.get("records"), list):
            return _error(422, "the body must be an object with a 'records' list", field="records")
        unknown = sorted(set(payload) - {"records", "ids"})
        if unknown:
            return _error(422, f"unknown top-level fields {unknown}", field=unknown[0])
        records = payload["records"]
        if not records:
            return _error(422, "'records' is empty", field="records")
        if len(records) > settings.max_batch:
            return _error(413, f"batch of {len(records)} records exceeds the limit of {settings.max_batch}")
        ids = payload.get("ids")
        if ids is not None and (
            not isinstance(ids, list)
            or len(ids) != len(records)
            or not all(isinstance(i, str) and len(i) <= 200 for i in ids)
        ):
            return _error(422, "'ids' must be a list of strings, one per record", field="ids")
        try:
            validated = adapters[name].validate_python(records)
        except ValidationError as exc:
            errors = _field_errors(exc)
            first = errors[0]
            return _error(422, f"{first['field']}: {first['message']}", errors=errors)
        served = slot.current  # pinned for this request: a swap cannot change it under us
        if served is None:
            return _error(503, f"model '{name}' has no version loaded yet: {slot.last_error or 'loading'}")
        rows = [record.__dict__ for record in validated]
        try:
            predictions, probabilities = await batcher.predict(served, rows)
        except Exception as exc:
            log.exception("%s v%s failed to predict", name, served.version)
            return _error(500, f"model '{name}' version {served.version} failed to predict: {exc}")
        now = datetime.now(UTC)
        if server.prediction_log is not None:
            server.prediction_log.append(name, served.version, now, rows, ids, predictions, probabilities)
        response: dict[str, Any] = {
            "model": name,
            "version": served.version,
            "predictions": predictions,
        }
        if probabilities is not None:
            response["classes"] = served.classes
            response["probabilities"] = probabilities
        if ids is not None:
            response["ids"] = ids
        return JSONResponse(response)  # plain JSON types already: skip FastAPI's re-encoding

    return app


# --- command line ---------------------------------------------------------------------------


def check_main(args: argparse.Namespace) -> int:
    """Infra validation in a fresh process: load a version like the service does and predict rows."""
    import pandas as pd

    from include.ct.config import find_pipeline_config

    config = find_pipeline_config(args.pipeline)
    try:
        served = load_served_model(config, args.version)
        frame = pd.read_parquet(args.sample) if args.sample else None
        rows = (
            sample_records(config)
            if frame is None
            else [
                {k: (None if v != v else _python_value(v)) for k, v in row.items()}  # noqa: PLR0124
                for row in frame[config.feature_names].head(args.rows).to_dict(orient="records")
            ]
        )
        predictions, _ = served.predict(records_frame(config, rows))
    except ModelLoadError as exc:
        print(json.dumps({"ok": False, "error": str(exc)}))
        return 1
    except Exception as exc:  # noqa: BLE001 - anything here means the candidate cannot serve
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps({"ok": True, "version": served.version, "rows": len(predictions)}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m include.ct.serving", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the prediction service (default)")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    check = commands.add_parser("check", help="load one version like the service and predict")
    check.add_argument("--pipeline", required=True)
    check.add_argument("--version", required=True)
    check.add_argument("--sample", help="Parquet file of held-out rows (default: generated rows)")
    check.add_argument("--rows", type=int, default=20)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # threaded OpenMP predict is 5-10x slower here
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "check":
        return check_main(args)
    import uvicorn

    settings = ServingSettings.from_env()
    host = getattr(args, "host", None) or settings.host
    port = getattr(args, "port", None) or settings.port
    uvicorn.run(create_app(settings=settings), host=host, port=port, log_level="info", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
