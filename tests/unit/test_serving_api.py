"""The prediction API on an in-memory model: contract, validation errors and the prediction log."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from include.ct.config import PipelineConfig
from include.ct.modeling.pipeline_building import build_pipeline, coerce_to_schema
from include.ct.monitoring.prediction_log import read_prediction_log
from include.ct.registry.served_model import ServedModel, records_frame, sample_records
from include.ct_serving.app import create_app
from include.ct_serving.settings import ServingSettings
from tools import datagen

TOKEN = "unit-test-token"


def fitted_model(config: PipelineConfig) -> ServedModel:
    frame = coerce_to_schema(config, datagen.churn_batch(800, day=1))
    model = build_pipeline(config).fit(frame[config.feature_names], frame[config.target])
    return ServedModel(config, "7", "run-abc", datetime.now(UTC), model, [0, 1])


@pytest.fixture
def client(churn: PipelineConfig, tmp_path: Path) -> Iterator[TestClient]:
    settings = ServingSettings(
        max_batch=50,
        poll_seconds=0,
        load_on_start=False,
        reload_token=TOKEN,
        prediction_log=tmp_path / "log",
        flush_seconds=0.1,
    )
    app = create_app([churn], settings)
    with TestClient(app) as test_client:
        app.state.server.slots["churn"].current = fitted_model(churn)
        yield test_client


def test_predicts_a_batch_like_the_model_offline(client: TestClient, churn: PipelineConfig) -> None:
    records = sample_records(churn, 5)
    response = client.post("/v1/models/churn/predict", json={"records": records, "ids": list("abcde")})
    assert response.status_code == 200, response.text
    body = response.json()
    served = client.app.state.server.slots["churn"].current  # type: ignore[attr-defined]
    labels, probabilities = served.predict(records_frame(churn, records))
    assert body["version"] == "7"
    assert body["predictions"] == labels
    assert body["probabilities"] == probabilities  # JSON floats round-trip exactly
    assert body["classes"] == [0, 1]
    assert body["ids"] == list("abcde")


def test_describe_health_and_ready(client: TestClient) -> None:
    model = client.get("/v1/models/churn").json()
    assert (model["version"], model["run_id"], model["ready"]) == ("7", "run-abc", True)
    assert "loaded_at" in model
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/ready").status_code == 200
    assert "/v1/models/{name}/predict" in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize(
    ("change", "field", "status"),
    [
        ({"plan": "gold"}, "records[0].plan", 422),
        ({"tenure_months": "twelve"}, "records[0].tenure_months", 422),
        ({"support_calls": 1.5}, "records[0].support_calls", 422),
        ({"monthly_fee": -3.0}, "records[0].monthly_fee", 422),
        ({"surprise": 1}, "records[0].surprise", 422),
    ],
)
def test_a_bad_field_is_a_422_that_names_it(
    client: TestClient, churn: PipelineConfig, change: dict[str, object], field: str, status: int
) -> None:
    record = {**sample_records(churn, 1)[0], **change}
    response = client.post("/v1/models/churn/predict", json={"records": [record]})
    assert response.status_code == status
    assert response.json()["detail"].startswith(field)


def test_a_missing_field_is_named(client: TestClient, churn: PipelineConfig) -> None:
    record = sample_records(churn, 1)[0]
    del record["contract"]
    response = client.post("/v1/models/churn/predict", json={"records": [record]})
    assert response.status_code == 422
    assert "records[0].contract" in response.json()["detail"]


def test_nullable_feature_accepts_null(client: TestClient, churn: PipelineConfig) -> None:
    record = {**sample_records(churn, 1)[0], "monthly_fee": None}
    assert client.post("/v1/models/churn/predict", json={"records": [record]}).status_code == 200


def test_malformed_requests_get_clear_4xx_and_the_service_stays_up(
    client: TestClient, churn: PipelineConfig
) -> None:
    record = sample_records(churn, 1)[0]
    nan_body = json.dumps({"records": [{**record, "monthly_fee": float("nan")}]})
    cases = [
        (client.post("/v1/models/churn/predict", content=b"{not json"), 400, "malformed JSON"),
        (client.post("/v1/models/churn/predict", content=b"[1, 2]"), 422, "'records' list"),
        (client.post("/v1/models/churn/predict", json={"records": []}), 422, "empty"),
        (client.post("/v1/models/nope/predict", json={"records": [record]}), 404, "unknown model 'nope'"),
        (client.post("/v1/models/churn/predict", json={"records": [record] * 51}), 413, "limit of 50"),
        (client.post("/v1/models/churn/predict", json={"records": [record], "ids": [1]}), 422, "'ids'"),
        (client.post("/v1/models/churn/predict", content=nan_body), 422, "monthly_fee"),
    ]
    for response, status, message in cases:
        assert response.status_code == status, response.text
        assert message in response.json()["detail"]
    assert client.post("/v1/models/churn/predict", json={"records": [record]}).status_code == 200


def test_reload_requires_the_token(client: TestClient) -> None:
    assert client.post("/v1/models/churn/reload").status_code == 401
    wrong = client.post("/v1/models/churn/reload", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    assert wrong.json()["detail"] == "invalid reload token"


def test_reload_is_disabled_without_a_configured_token(churn: PipelineConfig) -> None:
    app = create_app(
        [churn], ServingSettings(poll_seconds=0, load_on_start=False, reload_token=None, prediction_log=None)
    )
    with TestClient(app) as client:
        response = client.post("/v1/models/churn/reload", headers={"Authorization": "Bearer x"})
        assert response.status_code == 403
        assert "CT_SERVING_RELOAD_TOKEN" in response.json()["detail"]
        assert client.get("/ready").status_code == 503


def test_every_prediction_reaches_the_log(churn: PipelineConfig, tmp_path: Path) -> None:
    settings = ServingSettings(
        poll_seconds=0, load_on_start=False, prediction_log=tmp_path / "log", flush_seconds=0.1
    )
    app = create_app([churn], settings)
    records = sample_records(churn, 4)
    with TestClient(app) as client:
        app.state.server.slots["churn"].current = fitted_model(churn)
        for _ in range(3):
            response = client.post("/v1/models/churn/predict", json={"records": records, "ids": list("wxyz")})
            assert response.status_code == 200
    logged = read_prediction_log("churn", tmp_path / "log")  # closing the app flushed the log
    assert len(logged) == 12
    assert set(logged["model_version"]) == {"7"}
    assert list(logged["prediction_id"][:4]) == list("wxyz")
    assert {"predicted_at", "prediction", "score", *churn.feature_names} <= set(logged.columns)


def test_request_frame_matches_training_dtypes_and_values(churn: PipelineConfig) -> None:
    import pandas as pd

    from include.ct.modeling.pipeline_building import coerce_features

    records = sample_records(churn, 20)
    records[0]["monthly_fee"] = None
    fast = records_frame(churn, records)
    reference = coerce_features(churn, pd.DataFrame.from_records(records))
    pd.testing.assert_frame_equal(fast, reference)


def test_concurrent_requests_share_one_model_call(churn: PipelineConfig) -> None:
    import asyncio

    from include.ct_serving.batching import PredictionBatcher

    served = fitted_model(churn)
    calls: list[int] = []

    class CountingModel:
        def predict_proba(self, frame: object) -> object:
            calls.append(len(frame))  # type: ignore[arg-type]
            return served.model.predict_proba(frame)

    counting = ServedModel(churn, "7", "run", served.loaded_at, CountingModel(), [0, 1])
    records = sample_records(churn, 12)

    async def burst() -> list[tuple[list[object], object]]:
        batcher = PredictionBatcher()
        return await asyncio.gather(*(batcher.predict(counting, [r]) for r in records))

    answers = asyncio.run(burst())
    assert calls == [12]
    labels, probabilities = served.predict(records_frame(churn, records))
    assert [a[0][0] for a in answers] == labels
    assert [a[1][0] for a in answers] == probabilities  # type: ignore[index]


def test_fast_path_reproduces_the_pipeline_exactly(churn: PipelineConfig) -> None:
    from include.ct.registry.served_model import FastPath

    served = fitted_model(churn)
    records = sample_records(churn, 40)
    records[5]["monthly_fee"] = None
    fast = ServedModel(
        churn, "7", "run", served.loaded_at, served.model, [0, 1], FastPath(churn, served.model)
    )
    assert fast.predict_records(records) == served.predict(records_frame(churn, records))


def test_readiness_waits_only_for_pipelines_that_have_a_champion(churn: PipelineConfig) -> None:
    """A service serving one model is ready while another pipeline has no champion yet; a champion
    that is not loaded (yet, or at all) keeps it unready; each model answers for itself."""
    fleet = churn.model_copy(update={"name": "fleet"})
    settings = ServingSettings(poll_seconds=0, load_on_start=False, prediction_log=None)
    app = create_app([churn, fleet], settings)
    server = app.state.server
    champions: dict[str, str | None] = {"churn": "7", "fleet": None}
    for name, slot in server.slots.items():
        slot._champion_version = lambda name=name: champions[name]  # the registry's answer
    with TestClient(app) as client:
        assert client.get("/ready").status_code == 503  # nothing checked yet: not known to work
        server.slots["churn"].current = fitted_model(churn)
        asyncio.run(server.slots["fleet"].refresh())
        ready = client.get("/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["no_champion"] == ["fleet"]
        assert ready.json()["models"]["fleet"]["state"] == "no_champion"
        assert client.get("/v1/models/churn/ready").json()["version"] == "7"
        fleet_ready = client.get("/v1/models/fleet/ready")
        assert fleet_ready.status_code == 503
        assert "no champion registered" in fleet_ready.json()["detail"]
        assert client.get("/v1/models/nope/ready").status_code == 404

        # fleet gets a champion the service cannot load: not ready, and the reason is named
        champions["fleet"] = "3"
        slot = server.slots["fleet"]
        slot.has_champion, slot.failed_version, slot.last_error = True, "3", "version 3: bad signature"
        waiting = client.get("/ready")
        assert waiting.status_code == 503
        assert "fleet" in waiting.json()["detail"] and "bad signature" in waiting.json()["detail"]
        assert waiting.json()["models"]["fleet"]["state"] == "failed"
        assert client.get("/v1/models/churn/ready").status_code == 200


class BrokenModel:
    """A challenger that loads but fails every prediction."""

    classes_ = [0, 1]

    def predict_proba(self, features: object) -> object:
        raise RuntimeError("broken challenger")


def stage_in_memory(
    app: object, churn: PipelineConfig, strategy: str, share: float, model: object = None
) -> None:
    from include.ct.registry.staging import StagedChallenger

    slot = app.state.server.slots["churn"]  # type: ignore[attr-defined]
    slot.current = fitted_model(churn)
    if model is None:
        frame = coerce_to_schema(churn, datagen.churn_batch(400, day=9))
        model = build_pipeline(churn).fit(frame[churn.feature_names], frame[churn.target])
    slot.challenger = ServedModel(churn, "8", "run-new", datetime.now(UTC), model, [0, 1])
    slot.staged = StagedChallenger("8", strategy, share, datetime.now(UTC), "7")
    slot.stats_for("8", "challenger").at_share(share)


def test_shadow_answers_with_the_champion_and_logs_the_challengers_prediction_beside_it(
    churn: PipelineConfig, tmp_path: Path
) -> None:
    settings = ServingSettings(
        poll_seconds=0, load_on_start=False, prediction_log=tmp_path / "log", flush_seconds=0.1
    )
    app = create_app([churn], settings)
    records = sample_records(churn, 3)
    with TestClient(app) as client:
        stage_in_memory(app, churn, "shadow", 1.0)
        for request in range(5):
            ids = [f"r{request}-{i}" for i in range(3)]
            response = client.post("/v1/models/churn/predict", json={"records": records, "ids": ids})
            assert response.json()["version"] == "7"
        client.post("/v1/models/churn/predict", json={"records": records})  # no ids: paired on generated ones
        status = client.get("/v1/models/churn").json()
    assert (status["mode"], status["challenger"], status["challenger_state"], status["share"]) == (
        "shadow",
        "8",
        "serving",
        1.0,
    )
    assert status["versions"]["7"]["requests"] == 6 and status["versions"]["7"]["role"] == "champion"
    logged = read_prediction_log("churn", tmp_path / "log", shadow=True)
    served, shadow = logged[logged["role"] == "served"], logged[logged["role"] == "shadow"]
    assert set(served["model_version"]) == {"7"} and set(shadow["model_version"]) == {"8"}
    assert sorted(served["prediction_id"]) == sorted(shadow["prediction_id"])  # every row paired
    assert len(served) == 18
    assert len(read_prediction_log("churn", tmp_path / "log")) == 18  # monitoring sees the answers only


def test_canary_routes_a_sticky_share_and_the_champion_scores_it_beside(
    churn: PipelineConfig, tmp_path: Path
) -> None:
    settings = ServingSettings(
        poll_seconds=0, load_on_start=False, prediction_log=tmp_path / "log", flush_seconds=0.1
    )
    app = create_app([churn], settings)
    records = sample_records(churn, 1)
    with TestClient(app) as client:
        stage_in_memory(app, churn, "canary", 0.3)
        answered = {}
        for client_id in range(100):
            body = {"records": records, "ids": [f"client-{client_id}"]}
            answered[client_id] = client.post("/v1/models/churn/predict", json=body).json()["version"]
            again = client.post("/v1/models/churn/predict", json=body).json()["version"]
            assert again == answered[client_id]  # sticky per client id
    share = sum(version == "8" for version in answered.values()) / len(answered)
    assert 0.15 < share < 0.45
    logged = read_prediction_log("churn", tmp_path / "log", shadow=True)
    canary = logged[(logged["model_version"] == "8") & (logged["role"] == "served")]
    beside = logged[(logged["model_version"] == "7") & (logged["role"] == "shadow")]
    assert sorted(canary["prediction_id"]) == sorted(beside["prediction_id"])


def test_a_failing_canary_never_fails_a_request(churn: PipelineConfig, tmp_path: Path) -> None:
    settings = ServingSettings(poll_seconds=0, load_on_start=False, prediction_log=None)
    app = create_app([churn], settings)
    records = sample_records(churn, 2)
    with TestClient(app) as client:
        stage_in_memory(app, churn, "canary", 0.5, model=BrokenModel())
        versions = set()
        for client_id in range(40):
            response = client.post(
                "/v1/models/churn/predict", json={"records": records, "ids": [f"c{client_id}", "x"]}
            )
            assert response.status_code == 200
            versions.add(response.json()["version"])
        figures = client.get("/v1/models/churn").json()["versions"]["8"]
    assert versions == {"7"}  # the champion answered every request the canary failed
    assert figures["errors"] == figures["requests"] > 0


def test_an_infra_staged_challenger_gets_no_traffic_and_its_promotion_is_a_swap(
    churn: PipelineConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from include.ct.registry import registry, staging
    from include.ct_serving import slots

    settings = ServingSettings(
        poll_seconds=0, load_on_start=False, prediction_log=tmp_path / "log", flush_seconds=0.1
    )
    app = create_app([churn], settings)
    records = sample_records(churn, 2)
    with TestClient(app) as client:
        stage_in_memory(app, churn, "infra", 0.0)
        for _ in range(5):
            assert client.post("/v1/models/churn/predict", json={"records": records}).json()["version"] == "7"
        slot = app.state.server.slots["churn"]
        staged_model = slot.challenger
        figures = client.get("/v1/models/churn").json()["versions"]
        assert figures.get("8", {}).get("requests", 0) == 0  # no request reached it

        def no_second_load(*args: object) -> None:
            raise AssertionError("the promoted version was loaded again")

        monkeypatch.setattr(registry, "champion_version_strict", lambda config: "8")
        monkeypatch.setattr(staging, "staged_challenger", lambda config: None)
        monkeypatch.setattr(slots, "load_served_model", no_second_load)
        assert asyncio.run(slot.refresh()) is True
        assert slot.current is staged_model and slot.challenger is None
        assert client.post("/v1/models/churn/predict", json={"records": records}).json()["version"] == "8"
    logged = read_prediction_log("churn", tmp_path / "log", shadow=True)
    assert set(logged["role"]) == {"served"}
