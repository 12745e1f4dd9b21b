"""Policy names, one policy's record of one day, and a simulated stream's result."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from include.ct.config import PipelineConfig, metric_higher_is_better
from simulation.scenario import Scenario

GATED, ALWAYS_DEPLOY, LEVEL0, ORACLE = "gated", "always_deploy", "level0", "oracle"
POINT_GATE, GATED_SHADOW, GATED_CANARY = "point_gate", "gated_shadow", "gated_canary"
POLICIES: tuple[str, ...] = (POINT_GATE, GATED, GATED_SHADOW, GATED_CANARY, ALWAYS_DEPLOY, LEVEL0, ORACLE)
PIPELINE_POLICIES: tuple[str, ...] = tuple(p for p in POLICIES if p != ORACLE)  # they train on landed batches
ONLINE_POLICIES: dict[str, str] = {GATED_SHADOW: "shadow", GATED_CANARY: "canary"}  # -> deploy.strategy
STATISTICAL_GATES: tuple[str, ...] = (GATED, GATED_SHADOW, GATED_CANARY)  # judged on the paired interval
POLICY_LABELS: dict[str, str] = {
    POINT_GATE: "direct (point-estimate gate, deployed at once)",
    GATED: "gated (the CT pipeline: statistical gate, deployed at once)",
    GATED_SHADOW: "statistical gate + shadow on live labels",
    GATED_CANARY: "statistical gate + canary on live labels",
    ALWAYS_DEPLOY: "retrain daily, always deploy (no gate)",
    LEVEL0: "level 0 (trained on day 1, never retrained)",
    ORACLE: "oracle (trained on the day's own labels)",
}
Outcome = Literal[
    "promoted",
    "rejected",
    "inconclusive",
    "deployed",
    "quarantined",
    "skipped",
    "kept",
    "trained",
    "failed",
    "staged",
    "waiting",
]  # failed: full mode only, a run that broke elsewhere than at validate (e.g. a deploy rolled back);
# staged: the gate promoted it to online validation; waiting: the run queued behind a staged version
BASELINES: tuple[str, ...] = (ALWAYS_DEPLOY, LEVEL0, ORACLE)  # library computations in full mode
NOT_PROMOTED = ("rejected", "inconclusive")  # the gate's two ways of keeping the champion
GATE_RECORDS: dict[str, Outcome] = {  # the gate's decision -> the day's record
    "promote": "promoted",
    "reject": "rejected",
    "inconclusive": "inconclusive",
}
GATE_OUTCOMES = ("promoted", *NOT_PROMOTED, "quarantined", "failed", "staged")
NEW_MODEL_OUTCOMES = frozenset({"promoted", "deployed"})


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
    staged_version: int | None = None  # online policies: the challenger exposed to the day's traffic
    new_challenger: int | None = None  # the version the day's run staged for online validation
    challenger_share: float = 0.0  # share of the day's requests the staged challenger answered
    online_action: str = ""  # the online decision at the day's end: promote | rollback | advance | wait
    online_reason: str = ""
    labels_spent: int = 0  # labelled pairs the day's online decision read
    audits: list[dict[str, Any]] = field(default_factory=list)  # promotions judged on 3 later days

    @property
    def new_version(self) -> bool:
        """Whether a version became the policy's champion on this day (by the gate or online)."""
        return self.outcome in NEW_MODEL_OUTCOMES or self.online_action == "promote"

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
    date: str = field(default_factory=lambda: datetime.now(UTC).date().isoformat())  # of the run
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
            "date": self.date,
            "settings": self.settings,
            "run_info": self.run_info,
            "records": [r.to_dict() for r in self.records],
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
            date=data.get("date", ""),
            settings=data.get("settings", {}),
            run_info=data.get("run_info", {}),
        )


def settings_of(config: PipelineConfig) -> dict[str, Any]:
    """The config keys that shape a simulation's outcome, for the report."""
    return {
        "training.window": config.training.window,
        "training.recent_windows": list(config.training.recent_windows),
        "training.test_size": config.training.test_size,
        "split": "time-aware" if config.timestamp else "random",
        "promotion": config.promotion.model_dump(),
        "deploy": {
            "shadow_share": config.deploy.shadow_share,
            "canary_steps": list(config.deploy.canary_steps),
            "online": config.deploy.online.model_dump(
                include={"max_wait_hours", "min_labels", "tolerance", "step_min_requests"}
            ),
        },
        "model": {"type": config.model.type, **config.model.params},
    }


def fmt(value: float | None, digits: int = 3) -> str:
    """A metric value for the reports: ``-`` when there is none."""
    return "-" if value is None else f"{value:.{digits}f}"


def mean_of(values: list[float | None]) -> float | None:
    """The mean of the values present (None when there are none)."""
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def better_by(result: SimulationResult, a: float | None, b: float | None) -> float | None:
    """How much better ``a`` is than ``b`` in the metric's direction (None if either is missing)."""
    if a is None or b is None:
        return None
    return a - b if result.higher_is_better else b - a
