"""Deferrable triggers that watch for new data; they run in the triggerer, holding no worker slot.

``NewBatchTrigger`` (files in the landing zone) and ``NewRowsTrigger`` (rows in a SQL source
table) are event triggers: attached to an Asset through an ``AssetWatcher`` they turn each
arrival into an Asset event, which schedules ``ct_<name>``. The logic is in ``include.ct.data.arrival``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

log = logging.getLogger(__name__)


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
