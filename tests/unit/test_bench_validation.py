"""The validation benchmark's pandas floor checks exactly what the pipeline's GX suite checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.validation import churn_frame, gx_failures, pandas_failures
from include.ct.config import PipelineConfig
from tools import datagen


def _with_nulls(frame: pd.DataFrame) -> pd.DataFrame:
    broken = frame.copy()
    broken["support_calls"] = broken["support_calls"].astype("float64")
    broken.loc[broken.index[::11], "support_calls"] = np.nan
    broken.loc[broken.index[::13], "region"] = None
    return broken


def _with_infinity(frame: pd.DataFrame) -> pd.DataFrame:
    broken = frame.copy()
    broken.loc[broken.index[::17], "monthly_fee"] = np.inf
    return broken


def test_floor_and_gx_accept_a_good_frame(churn: PipelineConfig) -> None:
    frame = churn_frame(churn, 300)
    assert pandas_failures(churn, frame) == set()
    assert gx_failures(churn, frame) == set()


@pytest.mark.parametrize("breakage", [*datagen.BREAKAGES, "nulls", "infinity", "too_few_rows"])
def test_floor_and_gx_reject_a_bad_frame_by_the_same_rules(churn: PipelineConfig, breakage: str) -> None:
    good = churn_frame(churn, 300)
    if breakage == "nulls":
        frame = _with_nulls(good)
    elif breakage == "infinity":
        frame = _with_infinity(good)
    elif breakage == "too_few_rows":
        frame = good.head(20)
    else:
        frame = datagen.break_batch(good, churn, breakage)
    floor = pandas_failures(churn, frame)
    assert floor, "the breakage should break a rule"
    assert floor == gx_failures(churn, frame)
