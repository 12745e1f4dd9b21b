"""Deferrable triggers; they run in the triggerer, holding no worker slot.

``NewBatchTrigger`` (files in the landing zone) and ``NewRowsTrigger`` (rows in a SQL source
table) are event triggers: attached to an Asset through an ``AssetWatcher`` they turn each
arrival into an Asset event, which schedules ``ct_<name>``. The logic is in ``include.ct.data.arrival``.
``OnlineValidationTrigger`` waits for the online decision on a staged challenger;
``BatchInputTrigger`` for a batch day's late input.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from airflow.triggers.base import BaseEventTrigger, BaseTrigger, TriggerEvent

log = logging.getLogger(__name__)


async def hold_until(earliest: float, what: str) -> None:
    """Sleep until ``time.monotonic()`` reaches ``earliest``: a deferred task's trigger holds an event
    that was ready at once, so the deferring worker's exit reaches the scheduler before the resumed
    try runs (else Airflow 3.3 fails that try as changed externally: apache/airflow issue 72716)."""
    held = earliest - time.monotonic()
    if held > 0:
        log.info("%s; firing in %.1f s, once the deferring worker's exit is in", what, held)
        await asyncio.sleep(held)


class NewBatchTrigger(BaseEventTrigger):
    """Fires once per set of newly settled batch files in a pipeline's landing zone.

    Wakes on file system events, so a batch is announced moments after it lands; ``poll_seconds``
    only bounds the wait where the file system sends none.
    """

    def __init__(self, pipeline: str, poll_seconds: float = 30.0, settle_seconds: float = 2.0) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.poll_seconds = poll_seconds
        self.settle_seconds = settle_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "ct_airflow.triggers.NewBatchTrigger",
            {
                "pipeline": self.pipeline,
                "poll_seconds": self.poll_seconds,
                "settle_seconds": self.settle_seconds,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from include.ct.data.arrival import watch_landing

        arrivals = watch_landing(
            self.pipeline, poll_seconds=self.poll_seconds, settle_seconds=self.settle_seconds
        )
        async with aclosing(arrivals):
            async for arrival in arrivals:
                log.info("%s: %s", self.pipeline, arrival.reason)
                yield TriggerEvent(arrival.to_payload())


class NewRowsTrigger(BaseEventTrigger):
    """Fires once per set of new rows in a SQL-source pipeline's table (its ``source.query``)."""

    def __init__(self, pipeline: str, poll_seconds: float = 30.0) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.poll_seconds = poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "ct_airflow.triggers.NewRowsTrigger",
            {"pipeline": self.pipeline, "poll_seconds": self.poll_seconds},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from include.ct.config import find_pipeline_config
        from include.ct.data.arrival import announce_new_rows

        engine: Any = None
        try:
            while True:
                try:
                    config = await asyncio.to_thread(find_pipeline_config, self.pipeline)
                    if engine is None:
                        engine = await asyncio.to_thread(_sqlalchemy_engine, str(config.source.conn_id))
                    arrival = await asyncio.to_thread(announce_new_rows, config, engine)
                except Exception:  # an unreachable database must not kill the watcher
                    log.exception("SQL watcher of %s failed; retrying", self.pipeline)
                    arrival = None
                if arrival is not None:
                    log.info("%s: %s", self.pipeline, arrival.reason)
                    yield TriggerEvent(arrival.to_payload())
                await asyncio.sleep(self.poll_seconds)
        finally:
            if engine is not None:
                engine.dispose()


def _sqlalchemy_engine(conn_id: str) -> Any:
    from airflow.sdk import BaseHook

    hook: Any = BaseHook.get_hook(conn_id)
    return hook.get_sqlalchemy_engine()


class OnlineValidationTrigger(BaseTrigger):
    """Waits in the triggerer for the online decision on a staged challenger.

    Every ``guardrail_seconds`` it reads the service's figures for the challenger (a failed load,
    the error rate, p99 latency: a breach rolls back without waiting for labels); every
    ``poll_seconds`` it also reads the live evidence and the sequential test. It fires once the
    decision is promote, roll back or (canary) the next step, and no sooner than ``hold_seconds``
    after it started (``hold_until``). The logic is in ``include.ct.online``.
    """

    def __init__(
        self,
        pipeline: str,
        version: str,
        service_url: str,
        poll_seconds: float = 30.0,
        guardrail_seconds: float = 5.0,
        hold_seconds: float = 0.0,
    ) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.version = version
        self.service_url = service_url
        self.poll_seconds = poll_seconds
        self.guardrail_seconds = guardrail_seconds
        self.hold_seconds = hold_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "ct_airflow.triggers.OnlineValidationTrigger",
            {
                "pipeline": self.pipeline,
                "version": self.version,
                "service_url": self.service_url,
                "poll_seconds": self.poll_seconds,
                "guardrail_seconds": self.guardrail_seconds,
                "hold_seconds": self.hold_seconds,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        import httpx

        from include.ct.config import find_pipeline_config
        from include.ct.online.decision import OnlineDecision, guardrail_breach
        from include.ct.online.rollout import assess

        earliest_event = time.monotonic() + self.hold_seconds
        next_assessment = 0.0
        async with httpx.AsyncClient(base_url=self.service_url, timeout=10) as http:
            while True:
                config = await asyncio.to_thread(find_pipeline_config, self.pipeline)
                try:
                    response = await http.get(f"/v1/models/{self.pipeline}")
                    status: dict[str, Any] | None = response.json() if response.status_code == 200 else None
                except (httpx.HTTPError, ValueError) as exc:
                    log.warning("%s: the prediction service did not answer: %s", self.pipeline, exc)
                    status = None
                decision: OnlineDecision | None = None
                stats = (status or {}).get("versions", {}).get(self.version)
                breach = guardrail_breach(config, stats)
                if breach or (status or {}).get("challenger_state") == "failed":
                    next_assessment = 0.0  # decide now, on the full picture
                if time.monotonic() >= next_assessment:
                    try:
                        decision = await asyncio.to_thread(assess, config, self.version, status)
                    except Exception:  # unreadable evidence must not end the wait
                        log.exception(
                            "%s: could not assess version %s; retrying", self.pipeline, self.version
                        )
                    next_assessment = time.monotonic() + self.poll_seconds
                if decision is not None:
                    if decision.action != "wait":
                        await hold_until(
                            earliest_event, f"{self.pipeline} v{self.version}: {decision.action}"
                        )
                        yield TriggerEvent(json.loads(json.dumps(decision.to_dict(), default=float)))
                        return
                    log.info("%s v%s: %s", self.pipeline, self.version, decision.reason)
                await asyncio.sleep(self.guardrail_seconds)


class BatchInputTrigger(BaseTrigger):
    """Waits for one batch day's input until ``deadline`` (ISO 8601, with its time zone).

    With ``source: files`` it fires once the day's folder has files that stayed unchanged between
    two looks ``poll_seconds`` apart (a day uploaded as several files is taken whole); with
    ``source: sql`` after each ``poll_seconds``, for the task to run the day's query again. At the
    deadline it fires with ``last_look``: the task looks once more, then skips. It fires no sooner
    than ``hold_seconds`` after it started (``hold_until``).
    """

    def __init__(
        self, pipeline: str, day: str, deadline: str, poll_seconds: float = 60.0, hold_seconds: float = 0.0
    ) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.day = day
        self.deadline = deadline
        self.poll_seconds = poll_seconds
        self.hold_seconds = hold_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "ct_airflow.triggers.BatchInputTrigger",
            {
                "pipeline": self.pipeline,
                "day": self.day,
                "deadline": self.deadline,
                "poll_seconds": self.poll_seconds,
                "hold_seconds": self.hold_seconds,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from datetime import UTC, date, datetime

        from include.ct.batch.inputs import day_files_state
        from include.ct.config import find_pipeline_config

        earliest_event = time.monotonic() + self.hold_seconds
        config = await asyncio.to_thread(find_pipeline_config, self.pipeline)
        day, until = date.fromisoformat(self.day), datetime.fromisoformat(self.deadline)
        watch_files = config.batch is not None and config.batch.source.type == "files"
        seen = await asyncio.to_thread(day_files_state, config, day) if watch_files else ()
        while (left := (until - datetime.now(UTC)).total_seconds()) > 0:
            await asyncio.sleep(min(self.poll_seconds, left))
            if not watch_files:
                break
            files = await asyncio.to_thread(day_files_state, config, day)
            if files and files == seen:
                break
            seen = files
        last_look = datetime.now(UTC) >= until
        await hold_until(earliest_event, f"{self.pipeline} {self.day}: ready to look again")
        yield TriggerEvent({"deadline": self.deadline, "last_look": last_look})
