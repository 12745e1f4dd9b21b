"""Stage a challenger on the live service, read the evidence, and carry out the online decision.

``stage_version`` puts a registered version under shadow or canary validation (the service's load
of it is its infra validation); ``assess`` reads the service and the evidence and decides;
``carry_out`` promotes (the direct deploy path: alias move, smoke and latency checks, rollback on
failure), rolls back (``rejected_online``) or moves a canary to its next share. Each is idempotent.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from include.ct.config import PipelineConfig
from include.ct.online.decision import (
    INFRA_PREFIX,
    Action,
    OnlineDecision,
    decide,
    guardrail_decision,
    live_confidence,
)
from include.ct.online.evidence import gather
from include.ct.registry import registry, staging
from include.ct.registry.deploy import (
    DECISION,
    DECISION_REASON,
    REASON_CHARS,
    UNDEPLOYABLE,
    DeploymentError,
    InfraValidationError,
    ServiceClient,
    decision_tags,
    deploy_version,
    wait_for_challenger,
)

log = logging.getLogger(__name__)

ONLINE_STRATEGIES = ("shadow", "canary")
SETTLED = ("promoted", "rejected_online", "rejected_infra")  # how online validation can end


class OnlineValidationError(Exception):
    """The challenger could not be staged for online validation; the champion is untouched."""


@dataclass
class StageResult:
    """A staged challenger, or a first version deployed directly (nothing to compare it with)."""

    model_name: str
    version: str
    strategy: str
    staged: dict[str, Any] | None
    deployed_directly: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stage_version(
    config: PipelineConfig, version: str, test_path: str, *, reason: str, service: ServiceClient | None
) -> StageResult:
    """Stage ``version`` for ``deploy.strategy`` beside the champion; with no champion yet, deploy it."""
    strategy = config.deploy.strategy
    if strategy not in ONLINE_STRATEGIES:
        raise ValueError(f"deploy.strategy {strategy!r} needs no online validation")
    tags = registry.version_tags(config, version)
    if tags.get(DECISION) in UNDEPLOYABLE:
        raise DeploymentError(
            f"version {version} is marked {tags[DECISION]}: {tags.get(DECISION_REASON, '')}"
        )
    champion = registry.get_champion(config)
    if champion is None or str(champion.version) == version:
        why = "no champion to compare with" if champion is None else "already the champion"
        deploy_version(config, version, test_path, reason=f"{reason} ({why})", service=service)
        return StageResult(config.registered_model_name, version, strategy, None, True, why)
    if service is None:
        raise OnlineValidationError(
            f"deploy.strategy {strategy} needs the prediction service (the ct_serving connection or "
            "CT_SERVING_URL), which scores live traffic with the challenger"
        )
    share = config.deploy.shadow_share if strategy == "shadow" else config.deploy.canary_steps[0]
    staged = staging.stage(config, version, strategy=strategy, share=share, against=str(champion.version))
    service.reload(config.name)
    try:
        wait_for_challenger(service, config, version)
    except InfraValidationError as exc:
        staging.unstage(config)
        staging.record_step(
            config,
            version,
            f"rejected_infra: {exc}",
            {**decision_tags("rejected_infra", str(exc)), staging.STATUS: "rejected_infra"},
        )
        service.reload(config.name)
        raise OnlineValidationError(str(exc)) from exc
    return StageResult(
        config.registered_model_name, version, strategy, staged.to_dict(), False, f"staged for {strategy}"
    )


def assess(
    config: PipelineConfig, version: str, service_status: dict[str, Any] | None, now: datetime | None = None
) -> OnlineDecision:
    """Read the live evidence on staged ``version`` and decide; a version no longer staged is settled."""
    staged = staging.staged_challenger(config)
    if staged is None or staged.version != version:
        return OnlineDecision(_settled_action(config, version), f"version {version} is no longer staged")
    guarded = guardrail_decision(config, staged, service_status)
    if guarded is not None:  # the service's own figures decide: no need to read the evidence
        return guarded
    evidence = gather(
        config,
        challenger=staged.version,
        champion=staged.against,
        since=staged.staged_at,
        confidence=live_confidence(config),
    )
    return decide(config, staged, service_status, evidence, now or datetime.now(UTC))


def settled_outcome(config: PipelineConfig, version: str) -> dict[str, Any] | None:
    """How online validation of ``version`` already ended (promoted or rejected), read back from its
    tags; None while it was never staged or is still under validation. A retried deploy reports
    this instead of deploying again."""
    tags = registry.version_tags(config, version)
    status = tags.get(staging.STATUS)
    if status not in SETTLED:
        return None
    action: Action = "promote" if status == "promoted" else "rollback"
    steps = [line.split(" ", 1)[-1] for line in tags.get(staging.STEPS, "").splitlines()]
    prefix = f"{status}: "
    reasons = [step.removeprefix(prefix) for step in steps if step.startswith(prefix)]
    reason = reasons[-1] if reasons else tags.get(staging.REASON, status)
    return {"action": action, "version": version, "reason": reason, "already": True}


def _settled_action(config: PipelineConfig, version: str) -> Action:
    """A version taken off staging elsewhere (a retry, a person): promoted if it was, or if it is
    the champion (a promotion whose last tag was never written); else rolled back."""
    tags = registry.version_tags(config, version)
    if tags.get(staging.STATUS) == "promoted":
        return "promote"
    champion = registry.get_champion(config)
    return "promote" if champion is not None and str(champion.version) == version else "rollback"


def carry_out(
    config: PipelineConfig,
    version: str,
    decision: OnlineDecision,
    test_path: str,
    service: ServiceClient | None,
) -> dict[str, Any]:
    """Apply ``decision`` to staged ``version``: promote, roll back or take the next canary step."""
    staged = staging.staged_challenger(config)
    if staged is None or staged.version != version:
        action = _settled_action(config, version)
        log.info("version %s is no longer staged (%s): nothing to do", version, action)
        return {"action": action, "version": version, "already": True}
    if decision.action == "advance" and decision.share is not None:
        staging.set_share(config, version, decision.share, decision.reason)
        if service is not None:
            service.reload(config.name)
        log.info("version %s: canary share now %.0f%% (%s)", version, decision.share * 100, decision.reason)
        return {"action": "advance", "version": version, "share": decision.share}
    if decision.action == "promote":
        result = _promote(config, version, test_path, decision.reason, service)
        return {"action": "promote", "version": version, "deploy": result}
    if decision.action == "rollback":
        # A version the service could not load failed its infra check, not the comparison.
        outcome = "rejected_infra" if decision.reason.startswith(INFRA_PREFIX) else "rejected_online"
        staging.record_step(
            config,
            version,
            f"{outcome}: {decision.reason}",
            {
                **decision_tags(outcome, decision.reason),
                staging.STATUS: outcome,
                staging.REASON: decision.reason[:REASON_CHARS],
            },
        )
        staging.unstage(config)
        if service is not None:
            service.reload(config.name)
        log.warning("version %s rolled back from online validation: %s", version, decision.reason)
        return {"action": "rollback", "version": version, "champion": staged.against}
    return {"action": "wait", "version": version}


def complete_interrupted_promotion(
    config: PipelineConfig, version: str, test_path: str, service: ServiceClient | None
) -> dict[str, Any] | None:
    """Finish a promotion an earlier try of the deploy task began and never recorded: ``version``
    was under online validation and already holds ``champion``. The deploy's checks run again
    (nothing moves twice; a failure moves the alias back) and the promotion is recorded. None
    when that is not what happened."""
    tags = registry.version_tags(config, version)
    if tags.get(staging.STATUS) in SETTLED or tags.get(staging.STRATEGY) not in ONLINE_STRATEGIES:
        return None
    champion = registry.get_champion(config)
    if champion is None or str(champion.version) != version:
        return None
    reason = "completed by a retry: an earlier try moved the champion and stopped before recording it"
    log.warning("version %s is the champion but its promotion was never recorded: %s", version, reason)
    _promote(config, version, test_path, reason, service)
    return {"action": "promote", "version": version, "reason": reason, "already": True}


def _promote(
    config: PipelineConfig, version: str, test_path: str, reason: str, service: ServiceClient | None
) -> dict[str, Any]:
    """Deploy ``version`` (alias, service, checks) and only then record it as promoted; a failed
    deploy (the alias is moved back) is recorded as ``rejected_online`` and re-raised."""
    try:
        result = deploy_version(config, version, test_path, reason=f"online: {reason}", service=service)
    except DeploymentError as exc:
        failure = f"promotion failed: {exc}"
        try:
            staging.record_step(
                config,
                version,
                f"rejected_online: {failure}",
                {staging.STATUS: "rejected_online", staging.REASON: failure[:REASON_CHARS]},
            )
            staging.unstage(config, version)
            if service is not None:
                service.reload(config.name)
        except Exception:  # the deploy's own error is the one to report
            log.exception("could not record the failed promotion of version %s", version)
        raise
    staging.record_step(config, version, f"promoted: {reason}", {staging.STATUS: "promoted"})
    return result.to_dict()
