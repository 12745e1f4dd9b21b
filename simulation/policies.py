"""The policies computed with library calls, one day at a time, on the same stream."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from include.ct.config import PipelineConfig, TrainingSpec
from include.ct.modeling.pipeline_building import build_pipeline, coerce_to_schema, split
from include.ct.modeling.window import choose_window
from include.ct.online.decision import live_confidence
from simulation.online import AUDIT_DAYS, Audit, Staged, judge, serve_day
from simulation.records import (
    GATE_RECORDS,
    LEVEL0,
    NEW_MODEL_OUTCOMES,
    ONLINE_POLICIES,
    ORACLE,
    PIPELINE_POLICIES,
    POINT_GATE,
    POLICIES,
    STATISTICAL_GATES,
    DayRecord,
    Outcome,
)
from simulation.scenario import DayBatch, Scenario, skew
from simulation.scoring import Scored, as_number, gate_decision, score_on

DEFAULT_RECENT_WINDOWS = (1, 3, 7)  # training.recent_windows the simulated pipeline tries


@dataclass
class Served:
    """One policy's champion, and its challenger under online validation."""

    model: Any = None
    version: int = 0
    replaced: Any = None  # the model a new version replaced, scored once on the next day
    staged: Staged | None = None
    audits: list[Audit] = field(default_factory=list)  # promotions waiting for later traffic
    registered: int = 0  # versions registered: a staged challenger is one, whatever its fate


def register(state: Served) -> int:
    """The registry's next version number for the policy's model."""
    state.registered += 1
    return state.registered


def promote(state: Served, model: Any, day: int, version: int) -> None:
    """``model`` becomes the policy's champion at the end of ``day``; it is audited on later days."""
    if state.model is not None:
        state.audits.append(Audit(version, day, model, state.model))
    state.replaced, state.model, state.version = state.model, model, version


def gate_configs(config: PipelineConfig) -> dict[str, PipelineConfig]:
    """The config each policy gates with: point estimates for ``point_gate``, the paired interval
    (at the config's confidence, else 95%) for the statistical gates."""
    point = config.promotion.model_copy(update={"confidence": None})
    paired = config.promotion.model_copy(update={"confidence": live_confidence(config)})
    gates = {POINT_GATE: config.model_copy(update={"promotion": point})}
    return gates | {name: config.model_copy(update={"promotion": paired}) for name in STATISTICAL_GATES}


def with_training(config: PipelineConfig, overrides: Mapping[str, Any] | None) -> PipelineConfig:
    """``config`` with ``training`` keys overridden (window, recent_windows), validated as in a file."""
    if not overrides:
        return config
    training = TrainingSpec.model_validate({**config.training.model_dump(), **overrides})
    return config.model_copy(update={"training": training})


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The training-window options both simulation CLIs take."""
    parser.add_argument("--window", type=int, help="training.window of the pipeline (accepted snapshots)")
    parser.add_argument(
        "--recent-windows",
        default=",".join(map(str, DEFAULT_RECENT_WINDOWS)),
        help="training.recent_windows (comma-separated snapshot counts; '' for the fixed window only)",
    )


def training_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``training`` overrides from the options of ``add_training_arguments``."""
    overrides: dict[str, Any] = {
        "recent_windows": [int(part) for part in args.recent_windows.split(",") if part.strip()]
    }
    if args.window:
        overrides["window"] = args.window
    return overrides


def with_params(config: PipelineConfig, model_params: dict[str, Any] | None) -> PipelineConfig:
    """``config`` with its estimator params overridden (e.g. a smaller ``max_iter`` for quick runs)."""
    if not model_params:
        return config
    params = {**config.model.params, **model_params}
    return config.model_copy(update={"model": config.model.model_copy(update={"params": params})})


class LibraryPolicies:
    """Policies computed with library calls, one day at a time, on the same stream.

    Fast mode steps every policy; full mode steps the baselines (``BASELINES``) beside the real
    pipeline. Each day the served model answers the day's labelled traffic (a staged canary
    answers its share) and is scored on it before anything trains on it; a staged challenger is
    judged online on the labels that arrived; then the batches whose labels arrived are validated
    with the real GX suite, and each policy acts on the day's challenger.
    """

    def __init__(
        self, config: PipelineConfig, scenario: Scenario, policies: Sequence[str] = POLICIES
    ) -> None:
        unknown = set(policies) - set(POLICIES)
        if unknown:
            raise ValueError(f"unknown policies {sorted(unknown)}; known: {POLICIES}")
        self.config = config
        self.scenario = scenario
        self.policies = tuple(p for p in POLICIES if p in policies)
        self.served = {name: Served() for name in PIPELINE_POLICIES if name in self.policies}
        self.gates = gate_configs(config)
        self.arriving: dict[int, list[DayBatch]] = {}
        self.carried: list[DayBatch] = []  # good batches of a failed run wait for the next one
        self.snapshots: list[list[int]] = []  # accepted runs' batches (by traffic day), oldest first
        self.frames: dict[int, pd.DataFrame] = {}  # schema-coerced accepted batches

    def step(self, today: DayBatch) -> list[DayRecord]:
        """Act on one day (days in order); returns one record per policy, oracle first."""
        from include.ct.data.validate import validate_frame

        config, features, target = self.config, self.config.feature_names, self.config.target
        day = today.day
        self.arriving.setdefault(today.labels_day, []).append(today)
        records: list[DayRecord] = []

        # The oracle: trained on the first part of today's own labelled traffic, scored on the rest.
        oracle_train, holdout = split(config, today.traffic)
        if ORACLE in self.policies:
            oracle = build_pipeline(config).fit(oracle_train[features], oracle_train[target])
            oracle_value = score_on(config, Scored(oracle, holdout, features), holdout)
            records.append(
                DayRecord(
                    policy=ORACLE,
                    day=day,
                    value=oracle_value,
                    holdout_value=oracle_value,
                    served_version=day,
                    trigger="oracle",
                    reason="trained on today's own labelled traffic (an upper bound, not a pipeline)",
                    outcome="trained",
                    training_days=[day],
                    events=today.events,
                )
            )

        # Serve today's traffic and score what each pipeline answered, before any retrain on it.
        served: dict[str, dict[str, Any]] = {}
        for name, state in self.served.items():
            answers, share = serve_day(config, state.model, state.staged, today.traffic, today.labels_day)
            replaced = None if state.replaced is None else Scored(state.replaced, today.traffic, features)
            state.replaced = None
            for audit in state.audits:
                audit.traffic.append(today.traffic)
            judged = [result for audit in state.audits if (result := audit.result(config)) is not None]
            state.audits = [audit for audit in state.audits if len(audit.traffic) < AUDIT_DAYS]
            served[name] = {
                "value": score_on(config, answers, today.traffic),
                "holdout_value": score_on(config, answers, holdout),
                "predecessor_value": score_on(config, replaced, today.traffic),
                "served_version": state.version,
                "challenger_share": share,
                "audits": judged,
            }

        # Extract + validate what arrived today (shared by every pipeline: same landing zone).
        landed = self.carried + self.arriving.pop(day, [])
        self.carried = []
        new_days = [b.day for b in landed]
        failed = [b for b in landed if not validate_frame(config, b.batch, f"day_{b.day:04d}.csv").success]
        quarantined = [b.day for b in failed]
        if failed:  # the run stops at validate; its good batches stay in the landing zone
            self.carried = [b for b in landed if b.day not in quarantined]
        elif landed:  # one snapshot per run, however many batches it took in
            self.snapshots.append([b.day for b in landed])
            self.frames.update({b.day: coerce_to_schema(config, b.batch) for b in landed})
        window = window_days(self.snapshots, config.training.window)

        if quarantined:
            trigger, reason = (
                "new_data",
                f"run failed at validate: the GX suite quarantined the batch of day "
                f"{', '.join(map(str, quarantined))}",
            )
        elif new_days:
            trigger, reason = "new_data", f"batches of days {', '.join(map(str, new_days))} arrived"
        else:
            trigger, reason = "none", no_batch_reason(self.waiting())

        challenger: Any = None
        gate_test = pd.DataFrame()
        needs_model = any(name != LEVEL0 or state.model is None for name, state in self.served.items())
        if new_days and not quarantined and needs_model:
            kept = self.snapshots[-config.training.window :] if config.training.window else self.snapshots
            frames = [self.offline(snapshot, day) for snapshot in kept]
            window = window_days(kept, choose_window(config, frames).snapshots)
            train, gate_test = split(config, self.offline(window, day))
            challenger = build_pipeline(config).fit(train[features], train[target])

        for name, state in self.served.items():
            common: dict[str, Any] = {
                "policy": name,
                "day": day,
                **served[name],
                "new_days": new_days,
                "quarantined_days": quarantined,
                "events": today.events,
                **self._judge_online(name, state, day),
            }
            if name == LEVEL0 and state.model is not None:
                records.append(
                    DayRecord(**common, trigger="none", reason="level 0 never retrains", outcome="kept")
                )
                continue
            if challenger is None:
                outcome: Outcome = "quarantined" if quarantined else "skipped"
                records.append(DayRecord(**common, trigger=trigger, reason=reason, outcome=outcome))
                continue
            if state.staged is not None:  # one DAG run at a time: the next waits for the online decision
                why = f"{reason}; the run waits behind version {state.staged.version} under online validation"
                records.append(DayRecord(**common, trigger=trigger, reason=why, outcome="waiting"))
                continue
            gate: dict[str, Any] = {"training_days": window}
            if name not in self.gates:  # always_deploy; level 0's first model
                outcome = "deployed"
                gate["challenger_value"] = score_on(
                    config, Scored(challenger, gate_test, features), gate_test
                )
            else:
                decision = gate_decision(self.gates[name], challenger, state.model, state.version, gate_test)
                outcome = GATE_RECORDS[decision.outcome]
                gate |= {
                    "decision_reasons": list(decision.reasons),
                    "challenger_value": as_number(decision.challenger),
                    "champion_value": None if decision.champion is None else as_number(decision.champion),
                }
                if decision.promote and name in ONLINE_POLICIES and state.model is not None:
                    outcome = "staged"
                    state.staged = self._stage(name, state, challenger, day, window)
                    gate["new_challenger"] = state.staged.version
            records.append(DayRecord(**common, trigger=trigger, reason=reason, outcome=outcome, **gate))
            if outcome in NEW_MODEL_OUTCOMES:
                promote(state, challenger, day, register(state))
        return records

    def offline(self, days: Sequence[int], run_day: int) -> pd.DataFrame:
        """Accepted batches as the run on ``run_day`` reads them (skewed while the skew lasts)."""
        frame = pd.concat([self.frames[d] for d in days], ignore_index=True)
        return skew(self.config, self.scenario, frame) if self.scenario.skewed(run_day) else frame

    def _stage(self, name: str, state: Served, challenger: Any, day: int, window: list[int]) -> Staged:
        strategy = ONLINE_POLICIES[name]
        deploy = self.config.deploy
        return Staged(
            model=challenger,
            version=register(state),
            strategy=strategy,
            share=deploy.shadow_share if strategy == "shadow" else deploy.canary_steps[0],
            staged_day=day,
            against=state.version,
            training_days=window,
        )

    def _judge_online(self, name: str, state: Served, day: int) -> dict[str, Any]:
        """The online decision on ``name``'s staged challenger once the day's labels are in."""
        staged = state.staged
        if staged is None:
            return {}
        decision, spent = judge(self.gates[name], staged, state.model, day)
        if decision.action == "promote":
            state.staged = None
            promote(state, staged.model, day, staged.version)
        elif decision.action == "rollback":
            state.staged = None
        elif decision.action == "advance" and decision.share is not None:
            staged.share, staged.requests_at_share = decision.share, 0
        return {
            "staged_version": staged.version,
            "online_action": decision.action,
            "online_reason": decision.reason,
            "labels_spent": spent,
        }

    def waiting(self) -> list[tuple[int, int]]:
        """(traffic day, labels day) of the batches whose labels have not arrived yet."""
        return [(b.day, due) for due, batches in sorted(self.arriving.items()) for b in batches]


def window_days(snapshots: Sequence[Sequence[int]], window: int | None) -> list[int]:
    """Traffic days in the training window: the last ``window`` accepted snapshots (all if None)."""
    kept = snapshots[-window:] if window else snapshots
    return sorted(d for snapshot in kept for d in snapshot)


def no_batch_reason(waiting: Sequence[tuple[int, int]]) -> str:
    """Why a day trained nothing: no labelled batch arrived (and which labels are still due)."""
    due = ", ".join(f"day {day} due day {labels_day}" for day, labels_day in waiting)
    return f"no new labelled batch (waiting for labels: {due or 'none'})"
