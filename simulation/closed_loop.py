"""Closed-loop simulation: replay a seeded stream of days through the CT logic and compare policies.

Fast mode calls the library itself (GX validation suite, ``pipeline_building.split``/``build_pipeline``,
``evaluate.decide``) without Airflow or MLflow, so the gate's behaviour under covariate drift, a
concept change, a broken batch and late labels is measured against baselines on the same stream.
The full mode (``bench/simulation.py``) runs the gated policy through real Airflow runs, an MLflow
server and the prediction service, and turns each run into the same ``DayRecord``
(``pipeline_record``) beside the same baselines (``LibraryPolicies``).

    python -m simulation --days 60 --rows-per-day 2000 --seed 7 --out bench --fast
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from include.ct.config import PipelineConfig, TrainingSpec, find_pipeline_config, metric_higher_is_better
from include.ct.data.samples import schema_batch
from include.ct.modeling.evaluate import GateDecision, decide, paired_comparisons
from include.ct.modeling.metrics import compute_metrics, score, slice_metrics
from include.ct.modeling.pipeline_building import build_pipeline, coerce_to_schema, split
from include.ct.modeling.window import choose_window
from tools import datagen

log = logging.getLogger(__name__)

GATED, ALWAYS_DEPLOY, LEVEL0, ORACLE = "gated", "always_deploy", "level0", "oracle"
POLICIES: tuple[str, ...] = (GATED, ALWAYS_DEPLOY, LEVEL0, ORACLE)
PIPELINE_POLICIES: tuple[str, ...] = (GATED, ALWAYS_DEPLOY, LEVEL0)  # they train on landed batches
POLICY_LABELS: dict[str, str] = {
    GATED: "gated (the CT pipeline)",
    ALWAYS_DEPLOY: "retrain daily, always deploy (no gate)",
    LEVEL0: "level 0 (trained on day 1, never retrained)",
    ORACLE: "oracle (trained on the day's own labels)",
}
Outcome = Literal[
    "promoted", "rejected", "deployed", "quarantined", "skipped", "kept", "trained", "failed"
]  # failed: full mode only, a run that broke elsewhere than at validate (e.g. a deploy rolled back)
BASELINES: tuple[str, ...] = (ALWAYS_DEPLOY, LEVEL0, ORACLE)  # library computations in full mode
GATE_OUTCOMES = ("promoted", "rejected", "quarantined", "failed")
NEW_MODEL_OUTCOMES = frozenset({"promoted", "deployed"})

RECOVERY_TOLERANCE = 0.02  # metric units: "back within two points of the oracle"
RECOVERY_MAX_DAYS = 2
ORACLE_GAP_MAX = 0.03  # "within a few points of the oracle"
DEFAULT_RECENT_WINDOWS = (1, 3, 7)  # training.recent_windows the simulated pipeline tries
REPORT_NAME = "simulation.md"


class Scenario(BaseModel):
    """The stream: its length, size, seed and the scheduled events (an event set to None is off).

    Event days left out are spread over the stream in proportion to ``days``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    days: int = Field(default=60, ge=3)
    rows_per_day: int = Field(default=2000, ge=100)
    seed: int = 7
    drift_start: int | None = Field(default=None, description="first day of gradual covariate drift")
    drift_ramp_days: int = Field(default=1, ge=1, description="days until the drift reaches drift_max")
    drift_max: float = Field(default=1.0, ge=0, le=1)
    concept_day: int | None = Field(default=None, description="the label relationship changes from here")
    concept_kind: Literal["flip", "label_drift"] = Field(
        default="flip", description="datagen's concept_flip (other drivers) or label_drift (reweighted)"
    )
    concept_strength: float = Field(default=1.0, ge=0, le=1)
    broken_day: int | None = Field(default=None, description="that day's batch breaks the schema")
    breakage: str = "wrong_type"
    label_delay_start: int | None = Field(default=None, description="first day whose labels are late")
    label_delay_length: int = Field(default=1, ge=1, description="how many days have late labels")
    label_delay: int = Field(default=3, ge=1, description="days the late labels arrive after the traffic")

    @model_validator(mode="before")
    @classmethod
    def _spread_events(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        days = int(data.get("days", 60))
        defaults: dict[str, int] = {
            "drift_start": max(2, round(days * 0.25)),
            "drift_ramp_days": max(1, round(days * 0.25)),
            "broken_day": max(2, round(days * 0.4)),
            "concept_day": max(2, round(days * 0.6)),
            "label_delay_start": max(2, round(days * 0.8)),
            "label_delay_length": max(1, round(days * 0.1)),
        }
        return {**{k: v for k, v in defaults.items() if k not in data}, **data}

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        for name in ("drift_start", "concept_day", "broken_day", "label_delay_start"):
            value = getattr(self, name)
            if value is not None and not 2 <= value <= self.days:
                raise ValueError(
                    f"{name} {value} is outside days 2..{self.days} (day 1 trains the first model)"
                )
        if self.breakage not in datagen.BREAKAGES:
            raise ValueError(f"breakage '{self.breakage}' is not one of {datagen.BREAKAGES}")
        return self

    def drift(self, day: int) -> float:
        """Covariate drift amount on ``day``: 0 before the start, then a linear ramp to drift_max."""
        if self.drift_start is None or day < self.drift_start:
            return 0.0
        return self.drift_max * min(1.0, (day - self.drift_start + 1) / self.drift_ramp_days)

    def concept(self, day: int) -> float:
        """How far the label relationship has changed on ``day`` (0 before the concept change)."""
        return self.concept_strength if self.concept_day is not None and day >= self.concept_day else 0.0

    def labels_day(self, day: int) -> int:
        """The day the labels of ``day``'s traffic arrive (its batch lands only with its labels)."""
        if self.label_delay_start is not None and (
            self.label_delay_start <= day < self.label_delay_start + self.label_delay_length
        ):
            return day + self.label_delay
        return day

    def active_events(self, day: int) -> list[str]:
        """Short labels of the events in force on ``day``, for records and reports."""
        events = []
        if (amount := self.drift(day)) > 0:
            events.append(f"drift {amount:.2f}")
        if self.concept(day) > 0:
            events.append("new concept")
        if day == self.broken_day:
            events.append(f"broken batch ({self.breakage})")
        if self.labels_day(day) != day:
            events.append(f"labels +{self.labels_day(day) - day}d")
        return events

    def event_marks(self) -> list[tuple[int, str]]:
        """(day, label) of every scheduled event, for plots and the report."""
        marks: list[tuple[int, str]] = []
        if self.drift_start is not None:
            marks.append((self.drift_start, "drift starts"))
            full = self.drift_start + self.drift_ramp_days - 1
            if full <= self.days and self.drift_ramp_days > 1:
                marks.append((full, f"drift reaches {self.drift_max:g}"))
        if self.broken_day is not None:
            marks.append((self.broken_day, f"broken batch ({self.breakage})"))
        if self.concept_day is not None:
            marks.append(
                (self.concept_day, f"concept change ({self.concept_kind} {self.concept_strength:g})")
            )
        if self.label_delay_start is not None:
            last = min(self.days, self.label_delay_start + self.label_delay_length - 1)
            marks.append(
                (
                    self.label_delay_start,
                    f"labels {self.label_delay}d late (days {self.label_delay_start}-{last})",
                )
            )
        return sorted(marks)


@dataclass(frozen=True, eq=False)
class DayBatch:
    """One day of the stream: the landed batch (maybe broken) and the true labelled traffic."""

    day: int
    batch: pd.DataFrame  # what lands in the landing zone, with labels, as upstream sent it
    traffic: pd.DataFrame  # the day's requests and their true labels, schema-coerced
    labels_day: int  # when the batch (its labels) becomes available for training
    broken: bool
    events: list[str]


def day_batch(config: PipelineConfig, scenario: Scenario, day: int) -> DayBatch:
    """Generate day ``day`` of the stream, seeded by (scenario.seed, day)."""
    drift, concept = scenario.drift(day), scenario.concept(day)
    if config.name == "churn":
        raw = datagen.churn_batch(
            scenario.rows_per_day,
            day=day,
            seed=scenario.seed,
            drift=drift,
            label_drift=concept if scenario.concept_kind == "label_drift" else 0.0,
            concept_flip=concept if scenario.concept_kind == "flip" else 0.0,
        )
    elif concept > 0:
        raise ValueError(f"the generator for '{config.name}' has no concept change: set concept_day=None")
    else:
        raw = schema_batch(config, scenario.rows_per_day, day=day, seed=scenario.seed, drift=drift)
    columns = [
        *config.features,
        config.target,
        *([config.timestamp] if config.timestamp else []),
        *([config.id_column] if config.id_column else []),
    ]
    clean = raw[columns]
    broken = day == scenario.broken_day
    batch = datagen.break_batch(clean, config, scenario.breakage) if broken else clean
    return DayBatch(
        day=day,
        batch=batch,
        traffic=coerce_to_schema(config, clean),
        labels_day=scenario.labels_day(day),
        broken=broken,
        events=scenario.active_events(day),
    )


def stream(config: PipelineConfig, scenario: Scenario) -> Iterator[DayBatch]:
    """Every day of the scenario, in order."""
    for day in range(1, scenario.days + 1):
        yield day_batch(config, scenario, day)


@dataclass(frozen=True)
class DayRecord:
    """What one policy did and scored on one day; independent of how the day was run (fast or full)."""

    policy: str
    day: int
    value: float | None  # served model's primary metric on the day's labelled traffic (oracle: held out)
    holdout_value: float | None  # the same model on the oracle's held-out rows of the day (paired)
    served_version: int  # the version that answered the day's traffic (0: none yet)
    trigger: str  # new_data | none | oracle
    reason: str
    outcome: Outcome
    decision_reasons: list[str] = field(default_factory=list)
    challenger_value: float | None = None  # on the gate's held-out data
    champion_value: float | None = None  # on the same rows
    new_days: list[int] = field(default_factory=list)  # batches (by traffic day) that arrived today
    quarantined_days: list[int] = field(default_factory=list)
    training_days: list[int] = field(default_factory=list)  # traffic days the new model's window held
    predecessor_value: float | None = None  # after a new model: the replaced one on today's traffic
    events: list[str] = field(default_factory=list)
    run_seconds: float | None = None  # full mode: how long the day's Airflow DAG run took

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Claim:
    """One claim of the issue, measured on the records: holds True/False, or None for a bare count."""

    key: str
    statement: str
    holds: bool | None
    value: float | None
    detail: str


@dataclass
class SimulationResult:
    """Every (policy, day) record of one simulated stream, plus what is needed to judge them."""

    pipeline: str
    metric: str
    higher_is_better: bool
    scenario: Scenario
    mode: str
    records: list[DayRecord]
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)  # the config keys that shape the outcome
    run_info: dict[str, Any] = field(default_factory=dict)  # full mode: how it ran (versions, timings)

    @classmethod
    def of(
        cls, config: PipelineConfig, scenario: Scenario, mode: str, records: list[DayRecord], started: float
    ) -> SimulationResult:
        """The result of ``config`` on ``scenario``, timed from ``started`` (``time.perf_counter``)."""
        return cls(
            pipeline=config.name,
            metric=config.metric,
            higher_is_better=metric_higher_is_better(config.metric),
            scenario=scenario,
            mode=mode,
            settings=settings_of(config),
            records=records,
            seconds=time.perf_counter() - started,
        )

    def policy(self, name: str) -> list[DayRecord]:
        """The records of one policy, by day."""
        return sorted((r for r in self.records if r.policy == name), key=lambda r: r.day)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "scenario": self.scenario.model_dump(),
            "mode": self.mode,
            "seconds": self.seconds,
            "settings": self.settings,
            "run_info": self.run_info,
            "records": [r.to_dict() for r in self.records],
            "claims": [asdict(c) for c in claims(self)],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimulationResult:
        """Rebuild a result from ``to_dict`` output (e.g. ``simulation.json``) to re-render its report."""
        return cls(
            pipeline=data["pipeline"],
            metric=data["metric"],
            higher_is_better=data["higher_is_better"],
            scenario=Scenario.model_validate(data["scenario"]),
            mode=data["mode"],
            records=[DayRecord(**record) for record in data["records"]],
            seconds=data.get("seconds", 0.0),
            settings=data.get("settings", {}),
            run_info=data.get("run_info", {}),
        )


@dataclass
class _Served:
    model: Any = None
    version: int = 0
    replaced: Any = None  # the model a new version replaced, scored once on the next day


class Answers:
    """Predictions (and class probabilities) already made for the rows of a frame, answered by row
    index: lets the library's metric and slice functions score a model, or a service's HTTP
    answers, without predicting again."""

    def __init__(
        self,
        index: pd.Index,
        predicted: Sequence[Any],
        probabilities: Sequence[Sequence[float]] | None = None,
        classes: Sequence[Any] | None = None,
    ) -> None:
        self.classes_ = None if classes is None else list(classes)
        self._predicted = pd.Series(list(predicted), index=index)
        self._proba = None if probabilities is None else pd.DataFrame(list(probabilities), index=index)

    def predict(self, rows: pd.DataFrame) -> Any:
        return self._predicted.loc[rows.index].to_numpy()

    @property
    def predict_proba(self) -> Callable[[pd.DataFrame], Any]:
        """Class probabilities by row; absent (``hasattr`` False) when there are none."""
        proba = self._proba
        if proba is None:
            raise AttributeError("these answers have no class probabilities")
        return lambda rows: proba.loc[rows.index].to_numpy()


class Scored(Answers):
    """A fitted model's predictions on one frame, computed once (the same numbers as the model)."""

    def __init__(self, model: Any, frame: pd.DataFrame, features: list[str]) -> None:
        self.model = model
        classes = getattr(model, "classes_", None)
        rows = frame[features]
        proba = model.predict_proba(rows) if classes is not None and hasattr(model, "predict_proba") else None
        super().__init__(frame.index, list(model.predict(rows)), proba, classes)


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _score(config: PipelineConfig, model: Any, frame: pd.DataFrame) -> float | None:
    if model is None:
        return None
    return _number(
        compute_metrics(config, model, frame[config.feature_names], frame[config.target])[config.metric]
    )


def _gate(
    config: PipelineConfig, challenger: Any, champion: Any, champion_version: int, test: pd.DataFrame
) -> GateDecision:
    """The real gate (``evaluate.decide``) on challenger and champion scored on the same held-out rows."""
    features = config.feature_names
    scored = Scored(challenger, test, features)
    challenger_metrics = compute_metrics(config, scored, test[features], test[config.target])
    challenger_slices = slice_metrics(config, scored, test)
    if champion is None:
        return decide(config, challenger_metrics, challenger_slices, None, None)
    incumbent = Scored(champion, test, features)
    comparison, slice_comparisons = None, None
    if config.promotion.confidence is not None:  # judged on the paired interval, as evaluate does
        comparison, slice_comparisons = paired_comparisons(
            config,
            test,
            score(config, challenger, test[features]),
            score(config, champion, test[features]),
            config.promotion.confidence,
        )
    return decide(
        config,
        challenger_metrics,
        challenger_slices,
        compute_metrics(config, incumbent, test[features], test[config.target]),
        slice_metrics(config, incumbent, test),
        champion_version=str(champion_version),
        comparison=comparison,
        slice_comparisons=slice_comparisons,
    )


def settings_of(config: PipelineConfig) -> dict[str, Any]:
    """The config keys that shape a simulation's outcome, for the report."""
    return {
        "training.window": config.training.window,
        "training.recent_windows": list(config.training.recent_windows),
        "training.test_size": config.training.test_size,
        "split": "time-aware" if config.timestamp else "random",
        "promotion": config.promotion.model_dump(),
        "model": {"type": config.model.type, **config.model.params},
    }


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
    pipeline. Each day the served model is scored on the day's labelled traffic before anything
    trains on it; then the batches whose labels arrived are validated with the real GX suite, and
    each policy acts.
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
        self.served = {name: _Served() for name in PIPELINE_POLICIES if name in self.policies}
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
            oracle_value = _score(config, Scored(oracle, holdout, features), holdout)
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

        # Score what each pipeline serves on today's traffic, before any retrain on today's data.
        scores: dict[str, tuple[float | None, float | None, float | None]] = {}
        for name, state in self.served.items():
            on_traffic = None if state.model is None else Scored(state.model, today.traffic, features)
            replaced = None if state.replaced is None else Scored(state.replaced, today.traffic, features)
            scores[name] = (
                _score(config, on_traffic, today.traffic),
                _score(config, on_traffic, holdout),
                _score(config, replaced, today.traffic),
            )
            state.replaced = None

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
            frames = [pd.concat([self.frames[d] for d in snapshot], ignore_index=True) for snapshot in kept]
            window = window_days(kept, choose_window(config, frames).snapshots)
            train, gate_test = split(config, pd.concat([self.frames[d] for d in window], ignore_index=True))
            challenger = build_pipeline(config).fit(train[features], train[target])

        for name, state in self.served.items():
            value, holdout_value, predecessor = scores[name]
            common: dict[str, Any] = {
                "policy": name,
                "day": day,
                "value": value,
                "holdout_value": holdout_value,
                "served_version": state.version,
                "new_days": new_days,
                "quarantined_days": quarantined,
                "predecessor_value": predecessor,
                "events": today.events,
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
            if name == GATED:
                decision = _gate(config, challenger, state.model, state.version, gate_test)
                outcome = "promoted" if decision.promote else "rejected"
                gate: dict[str, Any] = {
                    "decision_reasons": list(decision.reasons),
                    "challenger_value": _number(decision.challenger),
                    "champion_value": None if decision.champion is None else _number(decision.champion),
                }
            else:
                outcome = "deployed"
                gate = {
                    "challenger_value": _score(config, Scored(challenger, gate_test, features), gate_test)
                }
            records.append(
                DayRecord(
                    **common,
                    trigger=trigger,
                    reason=reason,
                    outcome=outcome,
                    training_days=window,
                    **gate,
                )
            )
            if outcome in NEW_MODEL_OUTCOMES:
                state.replaced = state.model
                state.model = challenger
                state.version += 1
        return records

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


# --- full mode: what one real DAG run did, as a DayRecord -----------------------------------

_BATCH_DAY = re.compile(r"day_(\d+)")
_FAILED_TASK_STATES = frozenset({"failed", "upstream_failed"})


def batch_day(file_name: str) -> int | None:
    """The traffic day of a landed batch file (``day_0007.csv`` -> 7); None for other names."""
    found = _BATCH_DAY.search(Path(file_name).name)
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class PipelineRun:
    """What one real CT DAG run did, read back from Airflow's metadata DB, MLflow and the data folders."""

    run_id: str
    state: str  # the DAG run's final state: success | failed
    tasks: dict[str, str]  # task_id -> state
    pending: list[str]  # batch files waiting in the landing zone when the run started
    trigger: str  # as given in the run conf (and tagged ct.trigger on the MLflow run)
    reason: str
    seconds: float | None = None  # the DAG run's duration
    quarantined: dict[str, str] = field(default_factory=dict)  # file -> what it broke (its report)
    decision: dict[str, Any] | None = None  # the evaluate step's decision: promote, reasons, values
    version: str | None = None  # the model version registered from the challenger, if any
    version_tags: dict[str, str] = field(default_factory=dict)  # its tags after the run
    champion: str | None = None  # the version holding the champion alias after the run
    training_days: list[int] = field(default_factory=list)  # traffic days in the challenger's window
    error: str = ""  # the end of the run's output when it failed other than at validate


def _value(raw: Any) -> float | None:
    return None if raw is None else _number(float(raw))


def pipeline_record(
    run: PipelineRun,
    *,
    day: int,
    value: float | None,
    holdout_value: float | None,
    served_version: int,
    predecessor_value: float | None = None,
    waiting: Sequence[tuple[int, int]] = (),
    events: Sequence[str] = (),
) -> DayRecord:
    """The gated policy's record of ``day`` from what its real DAG run did (full mode).

    Same vocabulary as fast mode: quarantined (failed at validate), skipped (nothing new),
    rejected or promoted by the gate; ``failed`` when the run broke elsewhere, e.g. a promoted
    challenger that failed infra validation or was rolled back by the deploy checks.
    """
    common: dict[str, Any] = {
        "policy": GATED,
        "day": day,
        "value": value,
        "holdout_value": holdout_value,
        "served_version": served_version,
        "new_days": sorted(d for f in run.pending if (d := batch_day(f)) is not None),
        "quarantined_days": sorted(d for f in run.quarantined if (d := batch_day(f)) is not None),
        "predecessor_value": predecessor_value,
        "events": list(events),
        "run_seconds": run.seconds,
    }
    if run.quarantined:
        why = "; ".join(f"{name}: {broke}" for name, broke in sorted(run.quarantined.items()))
        reason = f"run failed at validate: the GX suite quarantined {why}"
        return DayRecord(**common, trigger=run.trigger, reason=reason, outcome="quarantined")
    if run.tasks.get("extract") == "skipped" or (run.state == "success" and not run.pending):
        return DayRecord(**common, trigger="none", reason=no_batch_reason(waiting), outcome="skipped")
    decision = run.decision
    if decision is None:
        broken = sorted(task for task, state in run.tasks.items() if state in _FAILED_TASK_STATES)
        reason = f"run {run.state} before a gate decision (tasks {', '.join(broken) or 'none'} failed)"
        if run.error:
            reason += f": {run.error.strip().splitlines()[-1][:300]}"
        return DayRecord(
            **common, trigger=run.trigger, reason=reason, outcome="failed", training_days=run.training_days
        )
    gate: dict[str, Any] = {
        "decision_reasons": [str(r) for r in decision.get("reasons") or []],
        "challenger_value": _value(decision.get("challenger")),
        "champion_value": _value(decision.get("champion")),
        "training_days": run.training_days,
    }
    if not decision.get("promote"):
        return DayRecord(**common, trigger=run.trigger, reason=run.reason, outcome="rejected", **gate)
    if run.version is not None and run.champion == run.version and run.tasks.get("deploy") == "success":
        return DayRecord(**common, trigger=run.trigger, reason=run.reason, outcome="promoted", **gate)
    verdict = run.version_tags.get("ct.decision", "not deployed")
    why = run.version_tags.get("ct.decision_reason", "")
    failed = [task for task in ("register", "deploy") if run.tasks.get(task) in _FAILED_TASK_STATES]
    reason = (
        f"the gate promoted the challenger but version {run.version or '(none)'} did not become "
        f"champion ({verdict}{', ' + ', '.join(failed) + ' failed' if failed else ''})"
        + (f": {why[:300]}" if why else "")
    )
    return DayRecord(**common, trigger=run.trigger, reason=reason, outcome="failed", **gate)


def run_fast(
    config: PipelineConfig, scenario: Scenario, *, model_params: dict[str, Any] | None = None
) -> SimulationResult:
    """Fast mode: every policy on the same stream through library calls (no Airflow, no MLflow).

    ``model_params`` overrides estimator params (e.g. a smaller ``max_iter`` for quick runs).
    """
    config = with_params(config, model_params)
    started = time.perf_counter()
    policies = LibraryPolicies(config, scenario)
    records: list[DayRecord] = []
    for today in stream(config, scenario):
        day_records = policies.step(today)
        records.extend(day_records)
        _log_day(scenario, today.day, day_records)
    return SimulationResult.of(config, scenario, "fast", records, started)


def fmt(value: float | None, digits: int = 3) -> str:
    """A metric value for the reports: ``-`` when there is none."""
    return "-" if value is None else f"{value:.{digits}f}"


def _log_day(scenario: Scenario, day: int, records: list[DayRecord]) -> None:
    parts = []
    for record in sorted(records, key=lambda r: POLICIES.index(r.policy)):
        after = {"promoted": " +", "deployed": " +", "rejected": " x", "quarantined": " Q"}.get(
            record.outcome, ""
        )
        parts.append(f"{record.policy} {fmt(record.value)} v{record.served_version}{after}")
    events = f" [{', '.join(records[0].events)}]" if records and records[0].events else ""
    log.info("day %d/%d%s: %s", day, scenario.days, events, " | ".join(parts))


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _better(result: SimulationResult, a: float | None, b: float | None) -> float | None:
    """How much better ``a`` is than ``b`` in the metric's direction (None if either is missing)."""
    if a is None or b is None:
        return None
    return a - b if result.higher_is_better else b - a


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
        return _better(result, oracle.get(record.day), record.holdout_value)

    out: list[Claim] = []

    # (a) No promotion of a challenger worse than the champion on the gate's own held-out rows.
    promoted = [r for r in gated if r.outcome == "promoted"]
    violations = [
        r.day
        for r in promoted
        if r.challenger_value is None
        or (r.champion_value is not None and (_better(result, r.challenger_value, r.champion_value) or 0) < 0)
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
            if (margin := _better(result, r.value, r.predecessor_value)) is not None
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
    mean_gap = _mean(list(gaps))
    out.append(
        Claim(
            "oracle_gap_after_drift",
            f"The gated pipeline stays within {oracle_gap_max} of the oracle after drift "
            f"(mean over days {after}-{scenario.days}, same held-out rows)",
            holds=mean_gap is not None and mean_gap <= oracle_gap_max,
            value=mean_gap,
            detail=f"mean gap {fmt(mean_gap)}, worst day {fmt(max(gaps, default=None))}"
            + "".join(
                f"; {label} ({_days(lo, hi)}) {fmt(_mean([oracle_gap(r) for r in window]))}"
                for label, lo, hi in periods(scenario)
                if lo >= after and (window := [r for r in gated if lo <= r.day <= hi])
            ),
        )
    )
    gated_mean = _mean([r.value for r in post])
    level0_mean = _mean([level0.get(r.day) for r in post])
    margin = _better(result, gated_mean, level0_mean)
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
    return out


def _days(first: int, last: int) -> str:
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


def write_report(result: SimulationResult, out_dir: Path | str) -> Path:
    """Write ``simulation.md``, the PNG plots and ``simulation.json`` into ``out_dir``; return the report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(result, out)
    scenario = result.scenario
    full = result.mode == "full"
    direction = "higher is better" if result.higher_is_better else "lower is better"
    lines = [
        f"# Closed-loop simulation: {result.pipeline} ({result.mode} mode)",
        "",
        f"{scenario.days} days x {scenario.rows_per_day} rows, seed {scenario.seed}; metric "
        f"`{result.metric}` ({direction}); ran in {result.seconds:.0f} s. Pipeline settings: "
        + ", ".join(f"{key} `{value}`" for key, value in result.settings.items())
        + ".",
        *_full_mode_lines(result),
        "",
        "Each day the model each policy serves is scored on that day's labelled traffic *before* "
        "anything trains on it. Then the batches whose labels arrived are validated with the "
        "pipeline's GX suite (a failing one is quarantined and the run trains nothing), and each "
        "policy acts: **gated** trains on the config's window of accepted snapshots (one per run) or, "
        "with `training.recent_windows`, on the newest of them that best predict the newest rows, "
        "with the time-aware split and the real `evaluate.decide` gate; **always_deploy** trains the same "
        "model and deploys it unconditionally; **level0** keeps the day-1 model; **oracle** trains on "
        "the first part of the day's own traffic and is scored on the rest (an upper bound on "
        "adapting; with one day of data, a pipeline with more data can beat it in stable periods). "
        + (
            "Fast mode: library calls, no Airflow, no MLflow, no prediction service."
            if result.mode == "fast"
            else ""
        ),
        "",
        "## Events",
        "",
        "| day | event |",
        "|---:|---|",
        *(f"| {day} | {label} |" for day, label in scenario.event_marks()),
        "",
        "## Claims",
        "",
        "| | claim | measured |",
        "|---|---|---|",
    ]
    for claim in claims(result):
        mark = {True: "✓", False: "✗", None: "#"}[claim.holds]
        lines.append(f"| {mark} | {claim.statement} | {claim.detail} |")
    lines += [
        "",
        "✓ holds, ✗ does not hold on this stream, # a count (no pass mark).",
        "",
        f"## Mean {result.metric} per policy",
        "",
    ]
    spans = periods(scenario)
    lines.append(
        "| policy | "
        + " | ".join(f"{label} ({_days(lo, hi)})" for label, lo, hi in spans)
        + " | all days | new versions |"
    )
    lines.append("|---|" + "---:|" * (len(spans) + 2))
    for name in POLICIES:
        rows = result.policy(name)
        cells = [fmt(_mean([r.value for r in rows if lo <= r.day <= hi])) for _, lo, hi in spans]
        versions = "daily" if name == ORACLE else str(sum(r.outcome in NEW_MODEL_OUTCOMES for r in rows))
        overall = fmt(_mean([r.value for r in rows]))
        lines.append(f"| {POLICY_LABELS[name]} | {' | '.join(cells)} | {overall} | {versions} |")
    lines += ["", "## Plots", "", *(f"![{p.stem}]({p.name})" for p in plots), "", "## Gate decisions", ""]
    lines += ["| day | decision | reasons |", "|---:|---|---|"]
    for record in result.policy(GATED):
        if record.outcome in GATE_OUTCOMES:
            why = "; ".join(record.decision_reasons) if record.decision_reasons else record.reason
            lines.append(f"| {record.day} | {record.outcome} | {why} |")
    lines += ["", "## Days", ""]
    lines += [
        f"Each cell: {result.metric} on the day's traffic and the version that served it. Gate: the "
        "decision after the day's run (challenger vs champion on the gate's held-out rows).",
        "",
        "| day | events | gated | gate | trained on days | always_deploy | level0 | oracle |"
        + (" DAG run |" if full else ""),
        "|---:|---|---|---|---|---|---|---|" + ("---:|" if full else ""),
    ]
    by_day: dict[int, dict[str, DayRecord]] = {}
    for record in result.records:
        by_day.setdefault(record.day, {})[record.policy] = record
    for day in sorted(by_day):
        row = by_day[day]
        gate = row[GATED]
        if gate.outcome in ("promoted", "rejected"):
            verdict = f"{'promote' if gate.outcome == 'promoted' else 'reject'} {fmt(gate.challenger_value)}"
            verdict += f" vs {fmt(gate.champion_value)}" if gate.champion_value is not None else ""
        else:
            verdict = gate.outcome
        cells = [f"{fmt(row[p].value)} v{row[p].served_version}" for p in (GATED,)]
        lines.append(
            f"| {day} | {', '.join(gate.events)} | {cells[0]} | {verdict} | {day_span(gate.training_days)} | "
            f"{fmt(row[ALWAYS_DEPLOY].value)} v{row[ALWAYS_DEPLOY].served_version} | "
            f"{fmt(row[LEVEL0].value)} v{row[LEVEL0].served_version} | {fmt(row[ORACLE].value)} |"
            + (f" {fmt(gate.run_seconds, 0)} s |" if full else "")
        )
    report = out / REPORT_NAME
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "simulation.json").write_text(json.dumps(result.to_dict(), indent=1), encoding="utf-8")
    return report


def day_span(days: Sequence[int]) -> str:
    """Days as compact ranges: [1, 2, 3, 7] -> "1-3, 7"."""
    spans: list[list[int]] = []
    for day in sorted(days):
        if spans and day == spans[-1][1] + 1:
            spans[-1][1] = day
        else:
            spans.append([day, day])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _full_mode_lines(result: SimulationResult) -> list[str]:
    """How a full-mode run was done and how long it took (empty in fast mode)."""
    if result.mode != "full":
        return []
    info = result.run_info
    runs = [r.run_seconds for r in result.policy(GATED) if r.run_seconds is not None]
    days = result.scenario.days
    versions = ", ".join(
        f"{name} {info[key]}" for name, key in (("Airflow", "airflow"), ("MLflow", "mlflow")) if key in info
    )
    return [
        "",
        "Full mode: the **gated** policy is the real pipeline `"
        + str(info.get("pipeline", result.pipeline))
        + "`. Each day the day's traffic is sent to the prediction service process "
        "(`python -m include.ct_serving serve`, `POST /v1/models/<name>/predict`) and scored on "
        "its answers; then the batches whose labels arrived land as CSV files in the landing "
        "zone and one real Airflow run (`airflow dags test`, SQLite metadata DB) extracts, "
        "validates, trains, evaluates, gates, registers and deploys against a `mlflow server` "
        "process (SQLite store, local artifacts); the deploy task reloads the service and "
        "smoke-tests it over HTTP. What happened is read back from Airflow's task states, the "
        "MLflow runs and model versions, and the data folders. The baselines are library "
        f"computations on the same stream{' (' + versions + ')' if versions else ''}.",
        "",
        f"Timing: {result.seconds:.0f} s in all, {info.get('setup_seconds', 0):.0f} s of it starting "
        f"the services; {(result.seconds - info.get('setup_seconds', 0)) / days:.0f} s per simulated "
        f"day; DAG runs median {fmt(_median(runs), 0)} s, max {fmt(max(runs, default=None), 0)} s"
        + (
            f"; {info['cpu_seconds_per_day']:.0f} CPU-seconds per day (harness and DAG runs, not the servers)"
            if "cpu_seconds_per_day" in info
            else ""
        )
        + (f"; {info['cpus']} CPUs" if "cpus" in info else "")
        + (f", load average {info['load_average']} at the end" if "load_average" in info else "")
        + ".",
    ]


def _median(values: list[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def write_plots(result: SimulationResult, out_dir: Path) -> list[Path]:
    """Quality over time per policy and served version over time, events marked; returns the PNGs."""
    from include.ct.modeling.plots import pyplot

    plt = pyplot()
    scenario = result.scenario
    styles = {GATED: "-", ALWAYS_DEPLOY: "--", LEVEL0: ":", ORACLE: "-."}

    def mark_events(ax: Any) -> None:
        if scenario.label_delay_start is not None:
            ax.axvspan(
                scenario.label_delay_start - 0.5,
                min(scenario.days, scenario.label_delay_start + scenario.label_delay_length - 1) + 0.5,
                color="grey",
                alpha=0.15,
            )
        for day, label in scenario.event_marks():
            ax.axvline(day, color="grey", linewidth=0.8, linestyle="--")
            ax.text(
                day,
                1.0,
                f" {label}",
                rotation=90,
                va="top",
                ha="left",
                fontsize=7,
                transform=ax.get_xaxis_transform(),
            )

    fig, ax = plt.subplots(figsize=(11, 5))
    for name in POLICIES:
        rows = [r for r in result.policy(name) if r.value is not None]
        ax.plot(
            [r.day for r in rows],
            [r.value for r in rows],
            styles[name],
            label=POLICY_LABELS[name],
            linewidth=1.4,
            marker="." if name == GATED else None,
        )
    promoted = [r for r in result.policy(GATED) if r.outcome == "promoted" and r.day < scenario.days]
    served_next = {r.day: r.value for r in result.policy(GATED)}
    points = [(r.day + 1, served_next.get(r.day + 1)) for r in promoted]
    ax.scatter(
        [d for d, v in points if v is not None],
        [v for _, v in points if v is not None],
        marker="^",
        color="green",
        zorder=3,
        label="gated: first day of a promoted version",
    )
    mark_events(ax)
    ax.set_xlabel("day")
    ax.set_ylabel(f"{result.metric} on the day's traffic")
    ax.set_title(f"{result.pipeline}: served model quality per policy ({result.mode} mode)")
    ax.legend(fontsize=8, loc="lower left")
    quality = _save(plt, fig, out_dir / "simulation_quality.png")

    fig, ax = plt.subplots(figsize=(11, 3.5))
    for name in PIPELINE_POLICIES:
        rows = result.policy(name)
        ax.step(
            [r.day for r in rows],
            [r.served_version for r in rows],
            where="post",
            linestyle=styles[name],
            label=POLICY_LABELS[name],
        )
    rejected = [r.day for r in result.policy(GATED) if r.outcome == "rejected"]
    version = {r.day: r.served_version for r in result.policy(GATED)}
    ax.scatter(
        rejected,
        [version[d] for d in rejected],
        marker="x",
        color="red",
        zorder=3,
        label="gated: challenger rejected",
    )
    mark_events(ax)
    ax.set_xlabel("day")
    ax.set_ylabel("served version")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=4)
    versions = _save(plt, fig, out_dir / "simulation_versions.png")
    return [quality, versions]


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def log_to_mlflow(
    result: SimulationResult,
    paths: list[Path],
    tracking_uri: str | None = None,
    *,
    experiment: str = "ct_simulation",
) -> str:
    """Log the report files, per-day metrics and the claims to an MLflow run; return its run id.

    Uses its own client (``tracking_uri``, else ``MLFLOW_TRACKING_URI``): no global MLflow state.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    scenario = result.scenario
    run = client.create_run(
        experiment_id,
        run_name=f"{result.pipeline}-{result.mode}-{scenario.days}d-seed{scenario.seed}",
        tags={"ct.pipeline": result.pipeline, "ct.simulation_mode": result.mode},
    )
    run_id = str(run.info.run_id)
    stamp = int(time.time() * 1000)
    metrics = [
        Metric(f"{r.policy}_{result.metric}", r.value, stamp, r.day)
        for r in result.records
        if r.value is not None
    ] + [Metric(f"{r.policy}_served_version", float(r.served_version), stamp, r.day) for r in result.records]
    summary: dict[str, float] = {"seconds": result.seconds}
    for claim in claims(result):
        if claim.value is not None:
            summary[f"claim_{claim.key}"] = claim.value
        if claim.holds is not None:
            summary[f"claim_{claim.key}_holds"] = float(claim.holds)
    for name in POLICIES:
        if (mean := _mean([r.value for r in result.policy(name)])) is not None:
            summary[f"mean_{name}_{result.metric}"] = mean
    metrics += [Metric(key, value, stamp, 0) for key, value in summary.items()]
    params = [Param(k, str(v)) for k, v in {**scenario.model_dump(), **result.settings}.items()]
    try:
        client.log_batch(run_id, params=params, tags=[RunTag("ct.claims", _claims_line(result))])
        for start in range(0, len(metrics), 1000):  # the tracking API takes at most 1000 per batch
            client.log_batch(run_id, metrics=metrics[start : start + 1000])
        for path in paths:
            client.log_artifact(run_id, str(path), artifact_path="simulation")
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)
    return run_id


def _claims_line(result: SimulationResult) -> str:
    marks = {True: "holds", False: "fails", None: "count"}
    return "; ".join(f"{c.key}: {marks[c.holds]} ({c.detail})" for c in claims(result))[:5000]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pipeline", default="churn", help="pipeline config name")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--rows-per-day", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="bench", help="folder for simulation.md and the plots")
    parser.add_argument(
        "--fast",
        action="store_true",
        help="library calls, no Airflow (required here; the full mode is python -m bench.simulation)",
    )
    parser.add_argument("--max-iter", type=int, help="override the estimator's max_iter (quicker runs)")
    add_training_arguments(parser)
    parser.add_argument(
        "--concept",
        choices=("flip", "label_drift"),
        default="flip",
        help="the concept change: other features drive churn (flip) or the same ones reweighted",
    )
    parser.add_argument("--mlflow", action="store_true", help="also log to MLflow (MLFLOW_TRACKING_URI)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (implies --mlflow)")
    args = parser.parse_args(argv)
    if not args.fast:
        parser.error(
            "only --fast runs here: the full mode (real Airflow runs, MLflow server, prediction "
            "service) is `python -m bench.simulation`"
        )
    config = with_training(find_pipeline_config(args.pipeline), training_overrides(args))
    scenario = Scenario(
        days=args.days, rows_per_day=args.rows_per_day, seed=args.seed, concept_kind=args.concept
    )
    params = {"max_iter": args.max_iter} if args.max_iter else None
    result = run_fast(config, scenario, model_params=params)
    report = write_report(result, args.out)
    print(f"wrote {report} ({result.seconds:.0f} s)")
    for claim in claims(result):
        mark = {True: "holds", False: "DOES NOT HOLD", None: "count"}[claim.holds]
        print(f"  [{mark}] {claim.statement}: {claim.detail}")
    if args.mlflow or args.tracking_uri:
        paths = [report, report.with_name("simulation.json"), *sorted(report.parent.glob("simulation_*.png"))]
        run_id = log_to_mlflow(result, paths, args.tracking_uri)
        print(f"logged to MLflow run {run_id}")
    return 0


def progress_logging(progress_log: logging.Logger = log) -> None:
    """One progress line per day on ``progress_log``; other libraries only warn (GX pins some of
    its loggers at INFO)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)
    progress = logging.StreamHandler()
    progress.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    progress_log.addHandler(progress)
    progress_log.setLevel(logging.INFO)
    progress_log.propagate = False


if __name__ == "__main__":
    progress_logging()
    sys.exit(main())
