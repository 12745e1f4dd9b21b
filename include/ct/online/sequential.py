"""Always-valid confidence intervals: evidence that may be looked at after every new label.

A fixed-sample interval read again and again as labels arrive promotes noise sooner or later.
The mixture sequential probability ratio test (mSPRT, Robbins 1970; Johari et al. 2017, "Peeking
at A/B tests") gives an interval that covers the true difference at every look at once, for an
estimate that is asymptotically normal with a known variance: here the paired improvement and
the variance its paired test (DeLong, paired proportions, paired bootstrap) reports.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from include.ct.modeling.paired import PairedComparison


@dataclass(frozen=True)
class SequentialInterval:
    """An improvement (positive = better) and its always-valid interval after ``n`` paired rows."""

    improvement: float
    low: float
    high: float
    n: int
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (
            f"{self.improvement:+.4f} [{self.low:+.4f}, {self.high:+.4f}] "
            f"(always-valid {self.confidence:.0%}, n={self.n})"
        )


def always_valid_interval(
    comparison: PairedComparison, *, confidence: float, planned_n: int
) -> SequentialInterval:
    """The mSPRT interval of ``comparison``'s improvement, valid however often it is recomputed.

    The variance is read off the comparison's own two-sided interval. The normal mixture's scale is
    the estimate's variance at ``planned_n`` rows (the first look that may decide), where the
    interval is tightest relative to a fixed-sample one.
    """
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + comparison.confidence / 2))
    standard_error = max((comparison.high - comparison.low) / (2 * z), 0.0)
    variance = standard_error**2
    if variance == 0 or comparison.n == 0:
        return SequentialInterval(
            comparison.improvement, comparison.improvement, comparison.improvement, comparison.n, confidence
        )
    mixture = variance * comparison.n / max(planned_n, 1)
    alpha = 1 - confidence
    half_width = math.sqrt(
        variance
        * (variance + mixture)
        / mixture
        * (math.log((variance + mixture) / variance) + 2 * math.log(1 / alpha))
    )
    return SequentialInterval(
        comparison.improvement,
        comparison.improvement - half_width,
        comparison.improvement + half_width,
        comparison.n,
        confidence,
    )
