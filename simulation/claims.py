"""The issue's claims, measured on a simulation's records."""

from __future__ import annotations

from simulation.deployment_claims import deployment_claims
from simulation.records import (
    ALWAYS_DEPLOY,
    GATED,
    GATED_CANARY,
    GATED_SHADOW,
    LEVEL0,
    ORACLE,
    POINT_GATE,
    Claim,
    DayRecord,
    SimulationResult,
    better_by,
    fmt,
    mean_of,
)
from simulation.scenario import Scenario

RECOVERY_TOLERANCE = 0.02  # metric units: "back within two points of the oracle"
RECOVERY_MAX_DAYS = 2


ORACLE_GAP_MAX = 0.03  # "within a few points of the oracle"


def claims(
    result: SimulationResult,
    *,
    recovery_tolerance: float = RECOVERY_TOLERANCE,
    recovery_max_days: int = RECOVERY_MAX_DAYS,
    oracle_gap_max: float = ORACLE_GAP_MAX,
) -> list[Claim]:
    """The issue's claims, measured on the records; each Claim's detail says what was counted."""
    scenario = result.scenario
    gated = result.policy(GATED)
    oracle = {r.day: r.holdout_value for r in result.policy(ORACLE)}
    level0 = {r.day: r.value for r in result.policy(LEVEL0)}

    def oracle_gap(record: DayRecord) -> float | None:
        """How far the oracle is ahead of ``record``'s model on the same held-out rows of its day."""
        return better_by(result, oracle.get(record.day), record.holdout_value)

    out: list[Claim] = []

    # (a) No promotion of a challenger worse than the champion on the gate's own held-out rows.
    promoted = [r for r in gated if r.outcome == "promoted"]
    violations = [
        r.day
        for r in promoted
        if r.challenger_value is None
        or (
            r.champion_value is not None
            and (better_by(result, r.challenger_value, r.champion_value) or 0) < 0
        )
    ]
    out.append(
        Claim(
            "gate_never_promotes_worse",
            "The gate never promotes a model worse than the champion on the gate's own held-out data",
            holds=not violations,
            value=float(len(violations)),
            detail=f"{len(violations)} violations in {len(promoted)} promotions"
            + (f" (days {violations})" if violations else ""),
        )
    )

    # (b) New versions that did worse than the one they replaced on the next day's traffic (a count).
    for name, verb in ((GATED, "promoted"), (ALWAYS_DEPLOY, "deployed")):
        margins = [
            (r.day, margin)
            for r in result.policy(name)
            if (margin := better_by(result, r.value, r.predecessor_value)) is not None
        ]
        worse = [day for day, margin in margins if margin < 0]
        out.append(
            Claim(
                f"{name}_worse_than_predecessor_next_day",
                f"Days on which a version {verb} by {name} did worse than its predecessor "
                "on the next day's traffic",
                holds=None,
                value=float(len(worse)),
                detail=f"{len(worse)} of {len(margins)} new versions"
                + (f" (on days {worse})" if worse else ""),
            )
        )

    # (c) Recovery: days from the concept change until gated is within tolerance of the oracle.
    statement = (
        f"Quality recovers within {recovery_max_days} days of the concept change "
        f"(gated within {recovery_tolerance} of the oracle on the same held-out rows)"
    )
    if scenario.concept_day is None:
        out.append(Claim("recovery_days", statement, None, None, "no concept change in this stream"))
    else:
        change = scenario.concept_day
        after_change = [r for r in gated if r.day >= change]
        recovered = next(
            (r.day for r in after_change if (g := oracle_gap(r)) is not None and g <= recovery_tolerance),
            None,
        )
        days = None if recovered is None else recovered - change
        first_gaps = ", ".join(fmt(oracle_gap(r)) for r in after_change[: recovery_max_days + 3])
        out.append(
            Claim(
                "recovery_days",
                statement,
                holds=days is not None and days <= recovery_max_days,
                value=None if days is None else float(days),
                detail=(
                    f"not recovered by day {scenario.days}"
                    if days is None
                    else f"{days} days (day {recovered})"
                )
                + f"; oracle minus gated from day {change}: {first_gaps}",
            )
        )

    # (d), (e): from the first day of drift (covariate or concept) to the end of the stream.
    starts = [d for d in (scenario.drift_start, scenario.concept_day) if d is not None]
    after = min(starts) if starts else 2
    post = [r for r in gated if r.day >= after]
    gaps = [g for r in post if (g := oracle_gap(r)) is not None]
    mean_gap = mean_of(list(gaps))
    out.append(
        Claim(
            "oracle_gap_after_drift",
            f"The gated pipeline stays within {oracle_gap_max} of the oracle after drift "
            f"(mean over days {after}-{scenario.days}, same held-out rows)",
            holds=mean_gap is not None and mean_gap <= oracle_gap_max,
            value=mean_gap,
            detail=f"mean gap {fmt(mean_gap)}, worst day {fmt(max(gaps, default=None))}"
            + "".join(
                f"; {label} ({days_label(lo, hi)}) {fmt(mean_of([oracle_gap(r) for r in window]))}"
                for label, lo, hi in periods(scenario)
                if lo >= after and (window := [r for r in gated if lo <= r.day <= hi])
            ),
        )
    )
    gated_mean = mean_of([r.value for r in post])
    level0_mean = mean_of([level0.get(r.day) for r in post])
    margin = better_by(result, gated_mean, level0_mean)
    out.append(
        Claim(
            "gated_beats_level0_after_drift",
            f"The gated pipeline beats level 0 after drift (mean {result.metric} over days "
            f"{after}-{scenario.days})",
            holds=margin is not None and margin > 0,
            value=margin,
            detail=f"gated {fmt(gated_mean)} vs level 0 {fmt(level0_mean)} (difference {fmt(margin)})",
        )
    )
    if all(result.policy(name) for name in (POINT_GATE, GATED_SHADOW, GATED_CANARY)):
        out += deployment_claims(result)
    return out


def days_label(first: int, last: int) -> str:
    """A span of days for tables and claims: ``day 5`` or ``days 5-9``."""
    return f"day {first}" if first == last else f"days {first}-{last}"


def periods(scenario: Scenario) -> list[tuple[str, int, int]]:
    """(label, first day, last day) of the stream cut at the drift start and the concept change."""
    cuts = sorted({d for d in (scenario.drift_start, scenario.concept_day) if d is not None})
    names = {scenario.drift_start: "drift", scenario.concept_day: "new concept"}
    bounds = [2, *cuts, scenario.days + 1]
    labels = ["before events", *(names[c] for c in cuts)]
    return [
        (label, lo, hi - 1) for label, lo, hi in zip(labels, bounds[:-1], bounds[1:], strict=True) if hi > lo
    ]
