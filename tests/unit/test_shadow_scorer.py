"""The shadow scorer: every queued row is scored in batches off the request path, and logged."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from include.ct_serving.shadow import ShadowScorer
from include.ct_serving.traffic import VersionStats


class CountingModel:
    """Stands in for a ServedModel: predicts 1 for every row and remembers each call's size."""

    def __init__(self) -> None:
        self.version = "2"
        self.config = SimpleNamespace(monitoring=SimpleNamespace(log_sample=1.0))
        self.calls: list[int] = []

    def predict_records(self, rows: list[dict[str, Any]]) -> tuple[list[int], list[list[float]]]:
        self.calls.append(len(rows))
        return [1] * len(rows), [[0.2, 0.8]] * len(rows)


class RecordingLog:
    def __init__(self) -> None:
        self.logged: list[tuple[str, list[str], list[int], str]] = []

    def append(
        self,
        pipeline: str,
        version: str,
        at: datetime,
        rows: Any,
        ids: Any,
        labels: Any,
        *args: Any,
        role: str,
        sample: float,
    ) -> None:
        self.logged.append((version, list(ids), list(labels), role))


def test_every_submitted_row_is_scored_in_batches_and_logged_as_shadow() -> None:
    model, log, stats = CountingModel(), RecordingLog(), VersionStats("challenger")
    scorer = ShadowScorer(log, batch_rows=10, batch_seconds=0.05)  # type: ignore[arg-type]
    scorer.start()
    now = datetime.now(UTC)
    for request in range(25):  # 25 requests of 2 rows
        rows = [{"x": request}, {"x": request}]
        scorer.submit("churn", model, stats, now, rows, [f"{request}-0", f"{request}-1"])  # type: ignore[arg-type]
    scorer.close()
    assert scorer.scored == 50 and sum(model.calls) == 50 and scorer.dropped == 0
    assert max(model.calls) <= 10  # batches of at most batch_rows (no request is split)
    assert stats.requests == 25  # one latency record per request
    assert sorted(i for _, ids, _, _ in log.logged for i in ids) == sorted(
        f"{r}-{k}" for r in range(25) for k in (0, 1)
    )
    assert {(version, role) for version, _, _, role in log.logged} == {("2", "shadow")}


def test_rows_that_do_not_fit_are_dropped_and_counted() -> None:
    model, stats = CountingModel(), VersionStats("challenger")
    scorer = ShadowScorer(None, capacity=2)
    now = datetime.now(UTC)
    for _ in range(5):  # nobody scores yet: the queue holds 2 requests
        scorer.submit("churn", model, stats, now, [{"x": 1}] * 3, ["a", "b", "c"])  # type: ignore[arg-type]
    assert scorer.dropped == 9


class SlowModel(CountingModel):
    """Takes 1 ms per row, so a batch's time grows with the traffic in it."""

    def predict_records(self, rows: list[dict[str, Any]]) -> tuple[list[int], list[list[float]]]:
        time.sleep(0.001 * len(rows))
        return super().predict_records(rows)


def test_a_shadow_request_s_latency_is_its_share_of_the_batch_not_the_whole_batch() -> None:
    model, stats = SlowModel(), VersionStats("challenger")
    scorer = ShadowScorer(None, batch_rows=1000, batch_seconds=0.05)
    now = datetime.now(UTC)
    for request in range(200):  # queued before the thread starts: one 200-row batch, about 200 ms
        scorer.submit("churn", model, stats, now, [{"x": request}], [str(request)])  # type: ignore[arg-type]
    scorer.start()
    scorer.close()
    assert model.calls == [200]
    figures = stats.snapshot()
    assert figures["requests"] == 200
    assert 0.5 <= figures["p99_ms"] < 20  # about 1 ms a row; the batch took about 200 ms
