"""Model slots: the serving version of each pipeline, its staged challenger, the swaps, and the
poller that follows the ``champion`` and ``challenger`` aliases."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from include.ct.config import PipelineConfig, effective_pipeline_configs
from include.ct.monitoring.prediction_log import PredictionLog
from include.ct.registry import registry, staging
from include.ct.registry.served_model import ModelLoadError, ServedModel, load_served_model
from include.ct.registry.staging import StagedChallenger
from include.ct_serving.schema import record_model
from include.ct_serving.settings import ServingSettings
from include.ct_serving.shadow import ShadowScorer
from include.ct_serving.traffic import VersionStats

log = logging.getLogger("ct.serving")


class ModelSlot:
    """The serving model of one pipeline and its staged challenger; a swap is one reference
    assignment. Both are read back from the registry, so a restarted service resumes a shadow or
    canary validation where it was."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.current: ServedModel | None = None
        self.last_error: str | None = None
        self.checked_at: datetime | None = None
        self.failed_version: str | None = None  # not retried by the poller until asked to
        self.has_champion: bool | None = None  # None until the registry has answered once
        self.staged: StagedChallenger | None = None
        self.challenger: ServedModel | None = None
        self.challenger_error: str | None = None
        self.failed_challenger: str | None = None
        self.stats: dict[str, VersionStats] = {}
        self._lock = asyncio.Lock()
        self.record_adapter = record_model(config)

    async def refresh(self, *, retry_failed: bool = False) -> bool:
        """Follow ``champion`` (True if the serving version was swapped), then ``challenger``.

        A version that failed to load is not loaded again on every poll, only when
        ``retry_failed`` (the reload endpoint) asks for it.
        """
        async with self._lock:
            swapped = await self._refresh_champion(retry_failed)
            if self.has_champion is not None:  # the registry answered
                await self._refresh_challenger(retry_failed)
            return swapped

    async def _refresh_champion(self, retry_failed: bool) -> bool:
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
            if self.challenger is not None and self.challenger.version == target:
                loaded = self.challenger  # promoted: the staged copy is loaded and checked already
            else:
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

    async def _refresh_challenger(self, retry_failed: bool) -> None:
        try:
            staged = await asyncio.to_thread(staging.staged_challenger, self.config)
        except Exception as exc:  # noqa: BLE001 - registry unreachable: keep what is loaded
            log.warning("%s: could not read the staged challenger: %s", self.config.name, exc)
            return
        if staged is None or self.current is None or staged.version == self.current.version:
            if self.challenger is not None:
                log.info(
                    "%s: challenger v%s unstaged, unloading it", self.config.name, self.challenger.version
                )
            self.staged, self.challenger, self.challenger_error = None, None, None
            return
        self.staged = staged
        self.stats_for(staged.version, "challenger").at_share(staged.share)
        if self.challenger is not None and self.challenger.version == staged.version:
            return
        if staged.version == self.failed_challenger and not retry_failed:
            return
        self.challenger = None
        started = time.perf_counter()
        try:
            loaded = await asyncio.to_thread(load_served_model, self.config, staged.version)
        except ModelLoadError as exc:
            self.challenger_error = str(exc)
            self.failed_challenger = staged.version
            log.error("%s: cannot load challenger v%s: %s", self.config.name, staged.version, exc)
            return
        self.challenger, self.challenger_error, self.failed_challenger = loaded, None, None
        gc.freeze()
        log.info(
            "%s: challenger v%s loaded for %s at %.0f%% in %.2f s",
            self.config.name,
            loaded.version,
            staged.strategy,
            staged.share * 100,
            time.perf_counter() - started,
        )

    def stats_for(self, version: str, role: str) -> VersionStats:
        """The request figures of ``version`` in this process (created on first use)."""
        stats = self.stats.get(version)
        if stats is None or stats.role != role:
            stats = self.stats[version] = VersionStats(role)
        return stats

    def stats_of(self, served: ServedModel) -> VersionStats:
        """The request figures of a loaded version, in its role here (challenger or champion)."""
        return self.stats_for(served.version, "challenger" if served is self.challenger else "champion")

    @property
    def challenger_state(self) -> str | None:
        """serving, loading or failed while a challenger is staged; None otherwise."""
        if self.staged is None:
            return None
        if self.challenger is not None and self.challenger.version == self.staged.version:
            return "serving"
        return "failed" if self.failed_challenger == self.staged.version else "loading"

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
        body["mode"] = self.staged.strategy if self.staged else "direct"
        body["challenger"] = self.staged.version if self.staged else None
        body["challenger_state"] = self.challenger_state
        body["challenger_error"] = self.challenger_error
        body["share"] = self.staged.share if self.staged else None
        body["staged_at"] = self.staged.staged_at.isoformat() if self.staged else None
        live = {self.current.version if self.current else None, self.staged.version if self.staged else None}
        body["versions"] = {v: stats.snapshot() for v, stats in self.stats.items() if v in live}
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
        self.shadow = ShadowScorer(self.prediction_log)
        self._poller: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.prediction_log is not None:
            self.prediction_log.start()
        self.shadow.start()
        if self.settings.poll_seconds > 0:
            self._poller = asyncio.create_task(self._poll_forever())
        elif self.settings.load_on_start:  # no polling: load once, then reloads come over HTTP
            self._poller = asyncio.create_task(self._refresh_all())

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await asyncio.to_thread(self.shadow.close)
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
    configs: list[PipelineConfig] = []
    for path, loaded in effective_pipeline_configs():
        if not isinstance(loaded, PipelineConfig):
            log.error("not serving %s: %s", path, loaded)
        elif names is None or loaded.name in names:
            configs.append(loaded)
    return configs
