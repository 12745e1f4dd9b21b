"""The HTTP API: predict (champion, or a staged challenger's shadow or canary share), model status,
reload (token required), liveness and readiness."""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from include.ct.config import PipelineConfig
from include.ct.monitoring.prediction_log import new_prediction_ids
from include.ct.registry.served_model import ServedModel
from include.ct_serving.batching import PredictionBatcher
from include.ct_serving.schema import request_json_schema
from include.ct_serving.settings import API_PREFIX, RELOAD_TOKEN_ENV, ServingSettings
from include.ct_serving.slots import ModelServer, ModelSlot, configured_pipelines
from include.ct_serving.traffic import routes_to_challenger

log = logging.getLogger("ct.serving")


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


def route(
    slot: ModelSlot, champion: ServedModel, ids: list[str] | None
) -> tuple[ServedModel, ServedModel | None]:
    """Which version answers a request and which, if any, scores it in the shadow.

    infra (the register step's check that the version loads here): no traffic.
    shadow: the champion answers; a ``share`` of requests is also scored by the challenger.
    canary: a ``share`` of requests (sticky by id) is answered by the challenger, and the champion
    scores those in the shadow, so every compared prediction is paired.
    """
    challenger, staged = slot.challenger, slot.staged
    if challenger is None or staged is None or challenger.version != staged.version:
        return champion, None
    if staged.strategy == "canary":
        if routes_to_challenger(staged.share, ids):
            return challenger, champion
        return champion, None
    if staged.strategy == "shadow" and (staged.share >= 1 or random.random() < staged.share):
        return champion, challenger
    return champion, None  # infra: loaded, given no traffic


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
        return {"status": "ok", "prediction_log_dropped": dropped, "shadow_dropped": server.shadow.dropped}

    @app.get(
        "/ready",
        summary="Readiness: every pipeline that has a champion has it loaded",
        responses={
            503: {
                "description": "a champion is still loading, failed to load, or the registry never answered"
            }
        },
    )
    async def ready() -> Any:
        waiting = {n: s.last_error or s.state for n, s in server.slots.items() if s.blocks_readiness}
        body = {
            "ready": not waiting,
            "models": {n: s.status() for n, s in server.slots.items()},
            "no_champion": sorted(n for n, s in server.slots.items() if s.state == "no_champion"),
        }
        if waiting:
            return _error(503, f"waiting for: {waiting}", **body)
        return body

    @app.get(API_PREFIX, summary="Every served model")
    async def list_models() -> dict[str, Any]:
        return {"models": [slot.status() for slot in server.slots.values()]}

    @app.get(
        API_PREFIX + "/{name}",
        summary="The version serving, its run id and load time; a staged challenger, the mode "
        "(direct, shadow or canary), its traffic share and each version's request figures",
    )
    async def describe(name: str) -> Any:
        slot = slot_or_404(name)
        return slot if not isinstance(slot, ModelSlot) else slot.status()

    @app.get(
        API_PREFIX + "/{name}/ready",
        summary="Per-model readiness: 200 while a version of this model serves",
        responses={
            503: {"description": "no version of this model is loaded"},
            404: {"description": "unknown"},
        },
    )
    async def model_ready(name: str) -> Any:
        slot = slot_or_404(name)
        if not isinstance(slot, ModelSlot):
            return slot
        status = slot.status()
        if slot.current is None:
            return _error(503, f"model '{name}' is not ready: {slot.last_error or slot.state}", **status)
        return status

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
        answering, shadow = route(slot, served, ids)
        logged_ids = ids
        if shadow is not None and ids is None:  # the two predictions are paired on these ids
            logged_ids = new_prediction_ids(len(rows))
        started = time.perf_counter()
        try:
            predictions, probabilities = await batcher.predict(answering, rows)
        except Exception as exc:
            slot.stats_of(answering).record((time.perf_counter() - started) * 1000, ok=False)
            log.exception("%s v%s failed to predict", name, answering.version)
            if answering is served:
                return _error(500, f"model '{name}' version {served.version} failed to predict: {exc}")
            # A failing canary never fails the client: the champion answers instead.
            answering, shadow = served, None
            try:
                predictions, probabilities = await batcher.predict(served, rows)
            except Exception as again:  # noqa: BLE001 - reported to the client as a 500
                return _error(500, f"model '{name}' version {served.version} failed to predict: {again}")
        else:
            slot.stats_of(answering).record((time.perf_counter() - started) * 1000, ok=True)
        now = datetime.now(UTC)
        if server.prediction_log is not None:
            server.prediction_log.append(
                name,
                answering.version,
                now,
                rows,
                logged_ids,
                predictions,
                probabilities,
                sample=answering.config.monitoring.log_sample,
            )
        if shadow is not None:
            server.shadow.submit(
                name,
                shadow,
                slot.stats_of(shadow),
                now,
                rows,
                logged_ids or [],
            )
        served = answering
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
