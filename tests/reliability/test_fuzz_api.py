"""The prediction API fuzzed over real HTTP: from its own OpenAPI spec (schemathesis) and with
hypothesis-made records. No 5xx, the service stays up, and memory stays bounded."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psutil
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error

from include.ct.config import BUNDLED_PIPELINES_DIR, PipelineConfig, load_pipeline_config
from include.ct.modeling.pipeline_building import build_pipeline, coerce_to_schema
from include.ct.registry.served_model import ServedModel
from include.ct_serving.app import create_app
from include.ct_serving.settings import ServingSettings
from testbed.services import free_port
from tests.reliability.conftest import Ledger
from tools import datagen

TOKEN = "fuzz-test-token"
MAX_BATCH = 50


@dataclass
class LiveService:
    url: str
    config: PipelineConfig
    app: Any


def _fitted(config: PipelineConfig) -> ServedModel:
    from datetime import UTC, datetime

    frame = coerce_to_schema(config, datagen.churn_batch(800, day=1))
    model = build_pipeline(config).fit(frame[config.feature_names], frame[config.target])
    return ServedModel(config, "1", "run-fuzz", datetime.now(UTC), model, [0, 1])


@pytest.fixture(scope="module")
def live_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """The real app under uvicorn on a free loopback port, serving an in-memory model."""
    import uvicorn

    config = load_pipeline_config(BUNDLED_PIPELINES_DIR / "churn.yaml")
    serving = ServingSettings(
        max_batch=MAX_BATCH,
        poll_seconds=0,
        load_on_start=False,
        reload_token=TOKEN,
        prediction_log=tmp_path_factory.mktemp("fuzz") / "log",
        flush_seconds=0.5,
    )
    app = create_app([config], serving)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    app.state.server.slots[config.name].current = _fitted(config)
    try:
        yield LiveService(url, config, app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_no_request_from_the_openapi_spec_gets_a_server_error(
    live_service: LiveService, reliability: Ledger
) -> None:
    """Every operation of the service's own OpenAPI spec, with schemathesis-generated requests
    (valid and invalid bodies, paths, headers): none may answer 5xx."""
    api = schemathesis.openapi.from_url(f"{live_service.url}/openapi.json")
    calls = 0
    for result in api.get_all_operations():
        operation = result.ok()
        for mode in schemathesis.GenerationMode:  # schema-conformant and schema-violating requests

            @settings(
                max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case: Any) -> None:
                nonlocal calls
                calls += 1
                case.call_and_validate(checks=[not_a_server_error])

            try:
                call()
            except Unsatisfiable:  # an operation without inputs has no invalid request to make
                assert mode is schemathesis.GenerationMode.NEGATIVE
    assert calls > 0
    reliability.record(
        "abuse", "schemathesis run from the OpenAPI spec", f"{calls} generated requests, no 5xx", inputs=calls
    )


FEATURE_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["basic", "plus", "premium", "north", "month_to_month", "NaN", "Infinity", "1e400"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _records(config: PipelineConfig) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Batches mixing valid records, valid records with one field broken, and random dicts."""
    from include.ct.registry.served_model import sample_records

    valid = sample_records(config, 20)
    names = [*config.feature_names, "unknown_field", config.target]

    def broken(record: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
        return {**record, name: value}

    record = st.one_of(
        st.sampled_from(valid),
        st.builds(broken, st.sampled_from(valid), st.sampled_from(names), FEATURE_VALUES),
        st.dictionaries(st.sampled_from(names), FEATURE_VALUES, max_size=len(names)),
    )
    return st.one_of(
        st.lists(st.sampled_from(valid), min_size=1, max_size=MAX_BATCH),  # all valid
        st.lists(record, min_size=0, max_size=MAX_BATCH + 5),
    )


def test_hypothesis_records_never_crash_the_service_and_memory_stays_bounded(
    live_service: LiveService, reliability: Ledger
) -> None:
    process = psutil.Process()
    statuses: dict[int, int] = {}
    client = httpx.Client(base_url=live_service.url, timeout=30)
    url = f"/v1/models/{live_service.config.name}/predict"

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(records=_records(live_service.config), with_ids=st.booleans())
    def send(records: list[dict[str, Any]], with_ids: bool) -> None:
        body: dict[str, Any] = {"records": records}
        if with_ids:
            body["ids"] = [f"id-{i}" for i in range(len(records))]
        response = client.post(url, content=json.dumps(body), headers={"Content-Type": "application/json"})
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (response.status_code, response.text[:500], body)
        assert response.status_code in (200, 400, 413, 422), response.text[:300]

    send()  # warm-up pass: imports, caches, the prediction log's first files
    baseline = process.memory_info().rss
    statuses.clear()
    send()
    send()
    grown_mb = (process.memory_info().rss - baseline) / 1024 / 1024
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 200
    assert grown_mb < 150, f"memory grew by {grown_mb:.0f} MB over {sum(statuses.values())} requests"
    reliability.record(
        "abuse",
        "hypothesis-made records against /predict",
        f"{sum(statuses.values())} requests, statuses {dict(sorted(statuses.items()))}, "
        f"memory {grown_mb:+.0f} MB, still ready",
        inputs=sum(statuses.values()),
    )


def test_fuzzed_service_is_still_serving_the_same_answers(live_service: LiveService) -> None:
    from include.ct.registry.served_model import sample_records

    records = sample_records(live_service.config, 5)
    first = httpx.post(f"{live_service.url}/v1/models/churn/predict", json={"records": records}, timeout=30)
    assert first.status_code == 200
    second = httpx.post(f"{live_service.url}/v1/models/churn/predict", json={"records": records}, timeout=30)
    assert first.json() == second.json()


def test_reload_without_the_token_is_refused(live_service: LiveService, reliability: Ledger) -> None:
    url = f"{live_service.url}/v1/models/churn/reload"
    assert httpx.post(url, timeout=30).status_code == 401
    assert httpx.post(url, headers={"Authorization": "Bearer wrong"}, timeout=30).status_code == 403
    reliability.record(
        "security", "reload endpoint requires its token", "no token 401, wrong token 403", inputs=2
    )
