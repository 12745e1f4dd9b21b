"""The online decision on a staged challenger: promote, roll back, take the next canary step, or wait.

Guardrails come first and need no labels: a challenger the service could not load, or whose
error rate or p99 latency is over budget, is rolled back at once. Quality is judged on the
always-valid interval of the live paired improvement, so the evidence may be read on every poll:
promote once the challenger is surely no worse than ``tolerance`` (a canary at whichever step it
has reached), roll back once it is surely worse than that, and give up (roll back) when
``max_wait_hours`` pass without either.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from include.ct.config import PipelineConfig
from include.ct.online.evidence import LiveEvidence
from include.ct.online.sequential import SequentialInterval, always_valid_interval
from include.ct.registry.staging import StagedChallenger

Action = Literal["promote", "rollback", "advance", "wait"]
INFRA_PREFIX = "infra: "  # a rollback whose reason starts so is an infra failure (``rejected_infra``)


@dataclass(frozen=True)
class OnlineDecision:
    """What to do with the staged challenger now, why, and (for ``advance``) the next share."""

    action: Action
    reason: str
    share: float | None = None
    interval: SequentialInterval | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    guardrails: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["interval"] = self.interval.to_dict() if self.interval else None
        return body


def live_confidence(config: PipelineConfig) -> float:
    """The confidence live evidence is judged at: the gate's ``promotion.confidence``, or 95% where
    the offline gate reads point estimates (a sequential test needs one)."""
    return config.promotion.confidence or 0.95


def guardrail_breach(config: PipelineConfig, version_stats: dict[str, Any] | None) -> str | None:
    """Why the challenger's own service figures forbid it more traffic, or None."""
    online = config.deploy.online
    if not version_stats:
        return None
    requests = int(version_stats.get("requests", 0))
    if requests < online.guardrail_min_requests:
        return None
    errors = int(version_stats.get("errors", 0))
    if errors / requests > online.error_rate_budget:
        return (
            f"error rate {errors}/{requests} = {errors / requests:.2%} over the budget of "
            f"{online.error_rate_budget:.2%}"
        )
    p99 = version_stats.get("p99_ms")
    if p99 is not None and p99 > online.latency_p99_ms:
        return f"p99 latency {p99:.1f} ms over the budget of {online.latency_p99_ms:g} ms"
    return None


def next_share(config: PipelineConfig, share: float) -> float | None:
    """The canary step after ``share``, or None at the last step."""
    later = [step for step in config.deploy.canary_steps if step > share + 1e-12]
    return later[0] if later else None


def guardrail_decision(
    config: PipelineConfig, staged: StagedChallenger, service_status: dict[str, Any] | None
) -> OnlineDecision | None:
    """The rollback the service's own figures call for (a failed load, errors, latency), or None:
    judged before any evidence is read, so a breach never waits on the prediction log."""
    stats = (service_status or {}).get("versions", {}).get(staged.version)
    if service_status is not None and service_status.get("challenger_state") == "failed":
        problem = service_status.get("challenger_error") or "the service could not load it"
        return OnlineDecision(
            "rollback",
            f"{INFRA_PREFIX}version {staged.version} did not load: {problem}",
            guardrails=dict(stats or {}),
        )
    breach = guardrail_breach(config, stats)
    if breach:
        return OnlineDecision("rollback", f"guardrail: {breach}", guardrails=dict(stats or {}))
    return None


def decide(
    config: PipelineConfig,
    staged: StagedChallenger,
    service_status: dict[str, Any] | None,
    evidence: LiveEvidence,
    now: datetime,
) -> OnlineDecision:
    """The next move for ``staged``, given the service's view of it and the live evidence."""
    online = config.deploy.online
    stats = (service_status or {}).get("versions", {}).get(staged.version)
    interval: SequentialInterval | None = None

    def made(action: Action, reason: str, share: float | None = None) -> OnlineDecision:
        return OnlineDecision(action, reason, share, interval, evidence.to_dict(), dict(stats or {}))

    guarded = guardrail_decision(config, staged, service_status)
    if guarded is not None:
        return made(guarded.action, guarded.reason)

    if evidence.comparison is not None and evidence.labelled_pairs >= online.min_labels:
        interval = always_valid_interval(
            evidence.comparison, confidence=live_confidence(config), planned_n=online.min_labels
        )
        if interval.high < -online.tolerance:
            return made(
                "rollback",
                f"live {evidence.metric}: challenger worse than the champion by more than "
                f"{online.tolerance:g}: {interval.describe()}",
            )
        # Proven at any canary step: the steps bound the exposure while evidence accumulates,
        # and the always-valid interval already covers every look.
        if interval.low > -online.tolerance:
            return made(
                "promote",
                f"live {evidence.metric}: challenger no worse than the champion beyond "
                f"{online.tolerance:g}: {interval.describe()}",
            )

    waited_hours = (now - staged.staged_at).total_seconds() / 3600
    if waited_hours >= online.max_wait_hours:
        so_far = interval.describe() if interval else f"{evidence.labelled_pairs} labelled pairs"
        return made(
            "rollback", f"no conclusion within {online.max_wait_hours:g} h ({so_far}); the champion stays"
        )
    if staged.strategy == "canary" and stats is not None:
        following = next_share(config, staged.share)
        at_share = int(stats.get("requests_at_share", 0))
        if following is not None and at_share >= online.step_min_requests:
            return made(
                "advance",
                f"{at_share} healthy requests at {staged.share:.0%}: next step {following:.0%}",
                share=following,
            )
    if evidence.labelled_pairs < online.min_labels:
        needed = f"{evidence.labelled_pairs}/{online.min_labels} labelled pairs"
    else:
        needed = interval.describe() if interval else "no comparable labels yet"
    if evidence.unmatched_labels:  # visible while waiting: ids that never reach a pair point at the client
        needed += f"; {evidence.unmatched_labels} labels matched no paired prediction (ignored)"
    return made("wait", f"waiting for evidence: {needed}")
