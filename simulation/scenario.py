"""The simulated stream: scheduled events and each day's batch and labelled traffic."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from include.ct.config import PipelineConfig
from include.ct.data.samples import schema_batch
from include.ct.modeling.pipeline_building import coerce_to_schema
from tools import datagen


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
    skew_day: int | None = Field(
        default=None,
        description="from here the runs' training data has skew_feature in another unit (an offline "
        "feature pipeline changed; live requests did not)",
    )
    skew_days: int = Field(default=3, ge=1, description="how many days' runs read the skewed feature")
    skew_feature: str | None = Field(default=None, description="default: the schema's first numeric feature")
    skew_factor: float = Field(default=7 / 30, gt=0, description="skewed value = value x factor")
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
            "skew_day": max(2, round(days * 0.5)),
            "label_delay_start": max(2, round(days * 0.8)),
            "label_delay_length": max(1, round(days * 0.1)),
        }
        return {**{k: v for k, v in defaults.items() if k not in data}, **data}

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        for name in ("drift_start", "concept_day", "broken_day", "skew_day", "label_delay_start"):
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

    def skewed(self, day: int) -> bool:
        """Whether the run on ``day`` trains and gates on the skewed feature (live traffic never has it)."""
        return self.skew_day is not None and self.skew_day <= day < self.skew_day + self.skew_days

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
        if self.skewed(day):
            events.append(
                f"skewed training data ({self.skew_feature or 'first numeric feature'} "
                f"x{self.skew_factor:.3g})"
            )
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
        if self.skew_day is not None:
            last_skewed = min(self.days, self.skew_day + self.skew_days - 1)
            feature = self.skew_feature or "a feature"
            marks.append(
                (
                    self.skew_day,
                    f"skew: {feature} x{self.skew_factor:.2g} offline ({self.skew_day}-{last_skewed})",
                )
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


def skewed_feature(config: PipelineConfig, scenario: Scenario) -> str:
    """The feature the skew event changes the unit of."""
    if scenario.skew_feature is not None:
        if scenario.skew_feature not in config.features:
            raise ValueError(f"skew_feature '{scenario.skew_feature}' is not a feature of '{config.name}'")
        return scenario.skew_feature
    numeric = [name for name, spec in config.features.items() if spec.type in ("integer", "float")]
    if not numeric:
        raise ValueError(f"'{config.name}' has no numeric feature to skew: set skew_day=None")
    return numeric[0]


def skew(config: PipelineConfig, scenario: Scenario, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the skewed feature in the other unit, still inside its schema (so no offline
    check rejects it): the training data no longer means what live requests mean."""
    name = skewed_feature(config, scenario)
    values = frame[name] * scenario.skew_factor
    if config.features[name].type == "integer":
        values = values.round().astype(frame[name].dtype)
    return frame.assign(**{name: values})


def stream(config: PipelineConfig, scenario: Scenario) -> Iterator[DayBatch]:
    """Every day of the scenario, in order."""
    for day in range(1, scenario.days + 1):
        yield day_batch(config, scenario, day)
