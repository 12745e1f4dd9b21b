"""Running a deferrable trigger in a unit test, without a triggerer."""

from __future__ import annotations

import asyncio
from typing import Any

from airflow.triggers.base import BaseTrigger


def first_event(trigger: BaseTrigger) -> dict[str, Any]:
    """The payload of the first event ``trigger`` fires; fails the test if it ends without one."""

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(first())
