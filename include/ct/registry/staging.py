"""The staged challenger: a registered version under online validation, kept in the registry.

The ``challenger`` alias names it; tags on the version say how it is exposed (``infra``: loaded
only, the register step's infra check on the live service; ``shadow`` or ``canary``), which share
of requests it scores or answers, and since when. The prediction service reads this
state back from the registry on every poll, so a restarted service resumes the same validation.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from include.ct.config import PipelineConfig
from include.ct.registry import registry

log = logging.getLogger(__name__)

CHALLENGER_ALIAS = "challenger"
INFRA = "infra"  # loaded beside the champion, given no traffic
STRATEGIES = (INFRA, "shadow", "canary")
STRATEGY = f"{registry.TAG_PREFIX}online_strategy"
SHARE = f"{registry.TAG_PREFIX}online_share"
STAGED_AT = f"{registry.TAG_PREFIX}online_staged_at"
AGAINST = f"{registry.TAG_PREFIX}online_against"
STATUS = f"{registry.TAG_PREFIX}online_status"
REASON = f"{registry.TAG_PREFIX}online_reason"
STEPS = f"{registry.TAG_PREFIX}online_steps"


@dataclass(frozen=True)
class StagedChallenger:
    """The version under online validation, how it is exposed and the champion it is judged against."""

    version: str
    strategy: str  # infra | shadow | canary
    share: float  # shadow: share of requests it also scores; canary: share it answers
    staged_at: datetime
    against: str  # the champion's version when it was staged

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "staged_at": self.staged_at.isoformat()}


def _from_version(version: Any) -> StagedChallenger | None:
    tags = version.tags
    if tags.get(STRATEGY) not in STRATEGIES or STAGED_AT not in tags:
        return None
    return StagedChallenger(
        version=str(version.version),
        strategy=tags[STRATEGY],
        share=float(tags.get(SHARE, "0") or 0),
        staged_at=datetime.fromisoformat(tags[STAGED_AT]),
        against=tags.get(AGAINST, ""),
    )


def staged_challenger(config: PipelineConfig) -> StagedChallenger | None:
    """The staged challenger; None only when the registry says there is none (errors propagate)."""
    from mlflow.exceptions import MlflowException

    try:
        version = registry.client().get_model_version_by_alias(config.registered_model_name, CHALLENGER_ALIAS)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return _from_version(version)


def stage(
    config: PipelineConfig, version: str, *, strategy: str, share: float, against: str
) -> StagedChallenger:
    """Stage ``version`` (``strategy`` ``infra``, ``shadow`` or ``canary``); staging it again the
    same way keeps its start time and share, so a retried task does not restart its validation."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r} is not one of {STRATEGIES}")
    current = staged_challenger(config)
    if current is not None and current.version == version and current.strategy == strategy:
        log.info("version %s is already staged (%s, share %s)", version, current.strategy, current.share)
        return current
    staged_at = datetime.now(UTC)
    tags = {
        STRATEGY: strategy,
        SHARE: repr(float(share)),
        STAGED_AT: staged_at.isoformat(),
        AGAINST: against,
        STATUS: "staged",
    }
    record_step(config, version, f"staged ({strategy}, share {share:g})", tags)
    registry.client().set_registered_model_alias(config.registered_model_name, CHALLENGER_ALIAS, version)
    log.info("staged version %s (%s, share %g) against v%s", version, strategy, share, against)
    return StagedChallenger(version, strategy, float(share), staged_at, against)


def record_step(config: PipelineConfig, version: str, step: str, tags: dict[str, str] | None = None) -> None:
    """Append one line to the version's online-validation log (``ct.online_steps``) and set ``tags``."""
    current = registry.version_tags(config, version).get(STEPS, "")
    line = f"{datetime.now(UTC).isoformat(timespec='seconds')} {step}"
    registry.set_version_tags(config, version, {**(tags or {}), STEPS: f"{current}\n{line}".strip()[-5000:]})


def traffic_path(steps: str) -> list[str]:
    """The traffic a version's online validation went through, from its ``ct.online_steps`` text:
    ``["canary at 5%", "25%"]`` (the last staging's strategy and share, then each new share)."""
    path: list[str] = []
    for line in steps.splitlines():
        step = line.split(" ", 1)[-1]
        staged = re.fullmatch(r"staged \((shadow|canary), share ([0-9.e+-]+)\)", step)
        moved = re.match(r"share ([0-9.e+-]+): ", step)
        if staged:
            path = [f"{staged.group(1)} at {float(staged.group(2)):.0%}"]
        elif moved and path:
            path.append(f"{float(moved.group(1)):.0%}")
    return path


def set_share(config: PipelineConfig, version: str, share: float, reason: str) -> None:
    """Move a staged canary to its next traffic share."""
    record_step(config, version, f"share {share:g}: {reason}", {SHARE: repr(float(share))})


def unstage(config: PipelineConfig, version: str | None = None) -> None:
    """Remove the ``challenger`` alias (the version's tags keep its history); with ``version``, only
    if it names that version."""
    if version is not None:
        current = staged_challenger(config)
        if current is None or current.version != version:
            return
    from mlflow.exceptions import MlflowException

    try:
        registry.client().delete_registered_model_alias(config.registered_model_name, CHALLENGER_ALIAS)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
