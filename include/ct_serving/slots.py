"""Model slots: the serving version of each pipeline, the swap, and the poller that follows the alias."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from include.ct.config import PipelineConfig, iter_pipeline_configs
from include.ct.monitoring.prediction_log import PredictionLog
from include.ct.registry import registry
from include.ct.registry.served_model import ModelLoadError, ServedModel, load_served_model
from include.ct_serving.schema import record_model
from include.ct_serving.settings import ServingSettings

log = logging.getLogger("ct.serving")


class ModelSlot:
    """The serving model of one pipeline; a swap is one reference assignment."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.current: ServedModel | None = None
        self.last_error: str | None = None
        self.checked_at: datetime | None = None
        self.failed_version: str | None = None  # not retried by the poller until asked to
        self.has_champion: bool | None = None  # None until the registry has answered once
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
            self.has_champion = target is not None
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
            # collections over them stalled requests under load. (Reference
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

    @property
    def state(self) -> str:
        """serving, no_champion (nothing to load yet), loading, failed or registry_unreachable."""
        if self.current is not None:
            return "serving"
        if self.has_champion is False:
            return "no_champion"
        if self.has_champion is None:
            return "registry_unreachable" if self.last_error else "loading"
        return "failed" if self.failed_version else "loading"

    @property
    def blocks_readiness(self) -> bool:
        """A pipeline with a champion this slot does not serve (yet) keeps the service unready;
        one with no champion yet does not: other models may be served meanwhile."""
        return self.state in ("loading", "failed", "registry_unreachable")

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = self.current.describe() if self.current else {"name": self.config.name}
        body["ready"] = self.current is not None
        body["state"] = self.state
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
    """The valid pipeline configs to serve (all, or those named; one per name, as the DAGs see
    them); broken ones are logged."""
    configs: dict[str, PipelineConfig] = {}
    for path, loaded in iter_pipeline_configs():
        if not isinstance(loaded, PipelineConfig):
            log.error("not serving %s: %s", path, loaded)
            continue
        if names is None or loaded.name in names:
            configs[loaded.name] = loaded
    return list(configs.values())
