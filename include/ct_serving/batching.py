"""Request coalescing: the predict calls that arrive while the model is busy become one call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from include.ct.registry.served_model import ServedModel


class PredictionBatcher:
    """Coalesces the predict calls that arrive while the model is busy into one call.

    scikit-learn's per-call overhead dwarfs its per-row cost, so
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
