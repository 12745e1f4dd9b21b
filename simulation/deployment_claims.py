"""How the deployment policies compare (point-estimate gate, statistical gate, shadow, canary):
promotions, promotions that did worse on later traffic, the skewed challenger's fate, labels spent."""

from __future__ import annotations

from dataclasses import dataclass

from simulation.records import (
    ALWAYS_DEPLOY,
    GATED,
    GATED_CANARY,
    GATED_SHADOW,
    ONLINE_POLICIES,
    POINT_GATE,
    Claim,
    DayRecord,
    SimulationResult,
    better_by,
    fmt,
    mean_of,
)
from simulation.scenario import Scenario

STABLE_PROMOTION_DROP = 0.6  # the statistical gate promotes at least 60% less in the stable period
QUALITY_TOLERANCE = 0.005  # ... while its mean quality stays within this of always-deploy


@dataclass(frozen=True)
class SkewedChallenger:
    """A version trained and gated on the skewed feature, and what became of it."""

    policy: str
    version: int
    staged_day: int
    fate: str  # shipped (direct) | promote | rollback | undecided
    decided_day: int | None
    max_share: float  # the largest share of a day's requests it answered
    traffic_share: float  # requests it answered / requests while it was staged or served
    reason: str


def stable_period(scenario: Scenario) -> tuple[int, int]:
    """Days 2 up to the first scheduled event: nothing changes, so a new version is churn."""
    firsts = [
        day
        for day in (
            scenario.drift_start,
            scenario.concept_day,
            scenario.broken_day,
            scenario.skew_day,
            scenario.label_delay_start,
        )
        if day is not None
    ]
    return 2, min(firsts, default=scenario.days + 1) - 1


def promotions(records: list[DayRecord], first: int = 1, last: int | None = None) -> int:
    """Versions that became champion between days ``first`` and ``last``."""
    return sum(r.new_version for r in records if r.day >= first and (last is None or r.day <= last))


def audits(records: list[DayRecord]) -> list[dict[str, object]]:
    """Every promotion judged against the version it replaced on the next days' traffic."""
    return [audit for r in records for audit in r.audits]


def skewed_challengers(result: SimulationResult, policy: str) -> list[SkewedChallenger]:
    """The policy's challengers trained and gated on the skewed feature."""
    scenario = result.scenario
    rows = result.policy(policy)
    found: list[SkewedChallenger] = []
    for record in rows:
        if not record.training_days or not scenario.skewed(record.day):
            continue
        if record.outcome == "staged" and record.new_challenger is not None:
            version = record.new_challenger
            later = [r for r in rows if r.day > record.day and r.staged_version == version]
            decided = next((r for r in later if r.online_action in ("promote", "rollback")), None)
            offered = [r for r in later if decided is None or r.day <= decided.day]
            found.append(
                SkewedChallenger(
                    policy=policy,
                    version=version,
                    staged_day=record.day,
                    fate=decided.online_action if decided else "undecided",
                    decided_day=decided.day if decided else None,
                    max_share=max((r.challenger_share for r in offered), default=0.0),
                    traffic_share=sum(r.challenger_share for r in offered) / max(len(offered), 1),
                    reason=decided.online_reason if decided else "",
                )
            )
        elif record.new_version and policy not in ONLINE_POLICIES:
            version = next((r.served_version for r in rows if r.day > record.day), record.served_version + 1)
            served = [r for r in rows if r.day > record.day and r.served_version == version]
            found.append(
                SkewedChallenger(
                    policy=policy,
                    version=version,
                    staged_day=record.day,
                    fate="shipped",
                    decided_day=record.day,
                    max_share=1.0 if served else 0.0,
                    traffic_share=1.0 if served else 0.0,
                    reason=f"served all traffic for {len(served)} days",
                )
            )
    return found


def labels_spent(records: list[DayRecord]) -> int:
    """Labelled pairs read by the online decisions that settled a challenger."""
    return sum(r.labels_spent for r in records if r.online_action in ("promote", "rollback"))


def deployment_claims(result: SimulationResult) -> list[Claim]:
    """Issue 29's claims, measured on the records of the deployment policies."""
    out: list[Claim] = []
    first, last = stable_period(result.scenario)
    point, gated = (
        promotions(result.policy(POINT_GATE), first, last),
        promotions(result.policy(GATED), first, last),
    )
    drop = None if point == 0 else 1 - gated / point
    out.append(
        Claim(
            "stable_promotions_fall",
            f"With the statistical gate, promotions in the stable period fall by at least "
            f"{STABLE_PROMOTION_DROP:.0%} (days {first}-{last}, against the point-estimate gate)",
            holds=None if drop is None else drop >= STABLE_PROMOTION_DROP,
            value=drop,
            detail=f"{gated} promotions against {point}" + ("" if drop is None else f" ({drop:.0%} fewer)"),
        )
    )
    means = {name: mean_of([r.value for r in result.policy(name)]) for name in (GATED, ALWAYS_DEPLOY)}
    gap = better_by(result, means[GATED], means[ALWAYS_DEPLOY])
    out.append(
        Claim(
            "gated_quality_near_always_deploy",
            f"... while the statistical gate's mean {result.metric} stays within {QUALITY_TOLERANCE} "
            "of always-deploy (all days)",
            holds=gap is not None and gap >= -QUALITY_TOLERANCE,
            value=gap,
            detail=f"gated {fmt(means[GATED])} vs always-deploy {fmt(means[ALWAYS_DEPLOY])} "
            f"(difference {fmt(gap, 4)})",
        )
    )
    for name in (POINT_GATE, GATED, GATED_SHADOW, GATED_CANARY, ALWAYS_DEPLOY):
        judged = audits(result.policy(name))
        worse = [a for a in judged if a["significantly_worse"]]
        days = [a["promoted_day"] for a in worse]
        out.append(
            Claim(
                f"{name}_significantly_worse_promotions",
                f"No version promoted by {name} is significantly worse than the one it replaced on "
                "the next 3 days' traffic (paired, same confidence as the gate)",
                holds=not worse if name in ONLINE_POLICIES else None,
                value=float(len(worse)),
                detail=f"{len(worse)} of {len(judged)} promotions"
                + (f" (promoted on days {days})" if days else ""),
            )
        )
    if result.scenario.skew_day is None:
        return out
    wait_days = result.settings.get("deploy", {}).get("online", {}).get("max_wait_hours", 72) / 24
    for name in ONLINE_POLICIES:
        skewed = skewed_challengers(result, name)
        contained = all(
            s.fate == "rollback" and s.max_share < 1 and (s.decided_day or 0) - s.staged_day <= wait_days
            for s in skewed
        )
        out.append(
            Claim(
                f"{name}_contains_skew",
                f"Under {ONLINE_POLICIES[name]} the skewed challenger never gets 100% of traffic and is "
                "rolled back within the evidence window (deploy.online.max_wait_hours)",
                holds=contained if skewed else None,
                value=float(len(skewed)),
                detail="; ".join(_describe(s) for s in skewed) or "no skewed challenger passed the gate",
            )
        )
    shipped = skewed_challengers(result, GATED)
    out.append(
        Claim(
            "direct_ships_skew",
            "Direct deploy (statistical gate, no online validation) ships the skewed challenger",
            holds=any(s.fate == "shipped" for s in shipped) if shipped else None,
            value=float(len(shipped)),
            detail="; ".join(_describe(s) for s in shipped) or "no skewed challenger passed the gate",
        )
    )
    return out


def _describe(skewed: SkewedChallenger) -> str:
    if skewed.fate == "shipped":
        return f"v{skewed.version} promoted on day {skewed.staged_day}, {skewed.reason}"
    waited = "" if skewed.decided_day is None else f" after {skewed.decided_day - skewed.staged_day} days"
    return (
        f"v{skewed.version} staged on day {skewed.staged_day}: {skewed.fate}{waited}, at most "
        f"{skewed.max_share:.0%} of a day's requests ({skewed.traffic_share:.1%} of its days' traffic); "
        f"{skewed.reason}"
    )
