"""Shadow scoring: a second version predicts the requests another answered, off the request path.

Requests only queue their rows; a background thread gathers them for ``batch_seconds`` and
predicts each batch in one call (scikit-learn's per-call cost dwarfs its per-row cost, and every
call holds the interpreter lock the request path needs) and logs the predictions with the shadow
role, paired with the answered ones by prediction id. If the thread falls behind, rows are
dropped and counted, never waited for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from include.ct.background import BackgroundQueue, Signal
from include.ct.monitoring.prediction_log import SHADOW, PredictionLog
from include.ct.registry.served_model import ServedModel
from include.ct_serving.traffic import VersionStats

log = logging.getLogger("ct.serving.shadow")


@dataclass(frozen=True)
class _Job:
    pipeline: str
    served: ServedModel
    stats: VersionStats
    at: datetime
    rows: Sequence[dict[str, Any]]
    ids: Sequence[str]


class ShadowScorer:
    """A bounded queue of rows to score with a shadow version, and the thread that scores them."""

    def __init__(
        self,
        prediction_log: PredictionLog | None,
        *,
        batch_rows: int = 5000,
        batch_seconds: float = 0.5,
        capacity: int = 50_000,
    ) -> None:
        self.prediction_log = prediction_log
        self.batch_rows = batch_rows
        self.batch_seconds = batch_seconds  # rows gather this long: one predict call per batch
        self.scored = 0
        self._jobs: BackgroundQueue[_Job] = BackgroundQueue("shadow-scorer", capacity)

    @property
    def dropped(self) -> int:
        """Rows not shadow-scored because the scorer was behind."""
        return self._jobs.dropped

    def start(self) -> None:
        self._jobs.start(self._run)

    def submit(
        self,
        pipeline: str,
        served: ServedModel,
        stats: VersionStats,
        at: datetime,
        rows: Sequence[dict[str, Any]],
        ids: Sequence[str],
    ) -> None:
        self._jobs.offer(_Job(pipeline, served, stats, at, rows, ids), len(rows))

    def close(self) -> None:
        """Score what is queued and stop the thread."""
        self._jobs.close()

    def _run(self) -> None:
        # Rows gather for batch_seconds after the first one, then everything queued is taken at
        # once: one wake-up per batch, not one per request (each would cost requests the GIL).
        while True:
            first = self._jobs.take()
            if isinstance(first, Signal):
                return
            time.sleep(self.batch_seconds)
            taken = [first, *self._jobs.take_ready()]
            jobs = [job for job in taken if not isinstance(job, Signal)]
            closed = len(jobs) < len(taken)
            for batch in _batches(jobs, self.batch_rows):
                self._score(batch)
            if closed:
                return

    def _score(self, jobs: list[_Job]) -> None:
        by_model: dict[int, list[_Job]] = {}
        for job in jobs:
            by_model.setdefault(id(job.served), []).append(job)
        for group in by_model.values():
            served = group[0].served
            rows = [row for job in group for row in job.rows]
            started = time.perf_counter()
            try:
                labels, probabilities = served.predict_records(rows)
            except Exception:  # a failing shadow version is a guardrail figure, not a crash
                log.exception(
                    "%s v%s failed to score %d shadow rows", group[0].pipeline, served.version, len(rows)
                )
                failed_after = (time.perf_counter() - started) * 1000
                for job in group:
                    job.stats.record(failed_after * len(job.rows) / len(rows), ok=False)
                continue
            elapsed = (time.perf_counter() - started) * 1000
            offset = 0
            for job in group:
                end = offset + len(job.rows)
                # A request's shadow latency is its rows' share of the batch's scoring time (the
                # model's compute): the batch's own time grows with traffic and would trip the
                # per-request budget. It is not what a client would wait, which the canary shows.
                job.stats.record(elapsed * len(job.rows) / len(rows), ok=True)
                if self.prediction_log is not None:
                    self.prediction_log.append(
                        job.pipeline,
                        served.version,
                        job.at,
                        job.rows,
                        job.ids,
                        labels[offset:end],
                        probabilities[offset:end] if probabilities is not None else None,
                        role=SHADOW,
                        sample=served.config.monitoring.log_sample,
                    )
                offset = end
            self.scored += len(rows)


def _batches(jobs: list[_Job], rows: int) -> list[list[_Job]]:
    """Consecutive groups of jobs of about ``rows`` rows each (a job is never split)."""
    batches: list[list[_Job]] = [[]]
    count = 0
    for job in jobs:
        if count >= rows:
            batches.append([])
            count = 0
        batches[-1].append(job)
        count += len(job.rows)
    return batches if batches[0] else []
