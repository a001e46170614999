"""Intervals for the report's ratios, and when an order may be stated.

The unit of replication is a round: one pass over a compare's cells, run adjacent in time, each
cell in its own process. Epochs inside a run are not independent samples (they share a process,
a compiled program and the machine's state), so they never count as samples here.

A ratio between two rows (time of A over time of B) is computed per round, from the two cells of
that round, so a machine that drifts over an hour slows both alike and the drift cancels. The
ratios' logarithms are then averaged, and the 95% interval is Student's t on those logarithms
(scipy.stats.t), turned back into a ratio. With the 3 to 6 rounds a CPU matrix affords, a
bootstrap cannot reach its tails (3 rounds have 10 distinct resamples); the t interval accounts
for so few samples, and logarithms of timing ratios are close to symmetric.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
MOST_ROUNDS_WORTH_SUGGESTING = 50


@dataclass(frozen=True)
class Ratio:
    """A ratio of two rows' figures over the rounds they share: its geometric mean and 95% interval."""

    estimate: float
    low: float | None  # None with fewer than 2 rounds: no interval
    high: float | None
    rounds: int
    log_sd: float | None  # spread of the per-round log ratios, for the rounds-needed estimate

    @property
    def has_interval(self) -> bool:
        return self.low is not None

    def excludes(self, value: float) -> bool:
        """Whether the interval lies wholly above or below `value` (an order can be stated)."""
        return self.has_interval and (self.low > value or self.high < value)

    def rounds_to_decide(self, value: float = 1.0) -> int | None:
        """About how many rounds in all would make the interval exclude `value`, if the estimate and the
        spread stay as they are; None when no plausible number would (the difference is below the noise)."""
        if self.log_sd is None:
            return None
        difference = abs(math.log(self.estimate / value))
        if self.log_sd == 0:
            return self.rounds if difference else None
        for rounds in range(2, MOST_ROUNDS_WORTH_SUGGESTING + 1):
            if stats.t.ppf(0.5 + CONFIDENCE / 2, rounds - 1) * self.log_sd / math.sqrt(rounds) < difference:
                return rounds
        return None

    def text(self, digits: int = 2) -> str:
        if not self.has_interval:
            return f"{self.estimate:.{digits}f}× (1 round: no interval)"
        return f"{self.estimate:.{digits}f}× [{self.low:.{digits}f}–{self.high:.{digits}f}]"


def ratio(numerators: dict[str, float], denominators: dict[str, float]) -> Ratio | None:
    """numerator / denominator paired by round id; None when the two share no round."""
    shared = sorted(set(numerators) & set(denominators))
    logs = [math.log(numerators[r] / denominators[r]) for r in shared if numerators[r] > 0 and denominators[r] > 0]
    if not logs:
        return None
    mean = statistics.fmean(logs)
    if len(logs) < 2:
        return Ratio(math.exp(mean), None, None, 1, None)
    sd = statistics.stdev(logs)
    if sd == 0:
        return Ratio(math.exp(mean), math.exp(mean), math.exp(mean), len(logs), 0.0)
    low, high = stats.t.interval(CONFIDENCE, len(logs) - 1, loc=mean, scale=sd / math.sqrt(len(logs)))
    return Ratio(math.exp(mean), math.exp(low), math.exp(high), len(logs), sd)


def mean_interval(values: list[float]) -> tuple[float, float] | None:
    """The 95% t interval of the mean of independent repeats; None with fewer than 2."""
    if len(values) < 2:
        return None
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    if sd == 0:
        return mean, mean
    low, high = stats.t.interval(CONFIDENCE, len(values) - 1, loc=mean, scale=sd / math.sqrt(len(values)))
    return float(low), float(high)


def cv(values: list[float]) -> float | None:
    """Coefficient of variation: standard deviation over the mean."""
    return statistics.stdev(values) / statistics.fmean(values) if len(values) > 1 else None


def order_text(ratio_of_slower: Ratio, what: str = "slower") -> str:
    """'1.90× slower [1.7–2.1], 4 rounds' when the interval excludes a tie, else the tie and what would decide it."""
    rounds = f"{ratio_of_slower.rounds} round{'s' if ratio_of_slower.rounds != 1 else ''}"
    if ratio_of_slower.excludes(1.0):
        return f"{ratio_of_slower.text()} {what}, {rounds}"
    return f"tied within the noise: {ratio_of_slower.text()}, {rounds}; {undecided_advice(ratio_of_slower)}"


def undecided_advice(found: Ratio, value: float = 1.0) -> str:
    """What would decide a ratio whose interval does not exclude `value`."""
    needed = found.rounds_to_decide(value)
    if not found.has_interval:
        return "run 2 or more rounds for an interval"
    if needed is None:
        return f"the difference is below this machine's noise (more than {MOST_ROUNDS_WORTH_SUGGESTING} rounds)"
    more = max(needed - found.rounds, 1)
    return f"about {more} more round{'s' if more > 1 else ''} would likely decide it"


@dataclass(frozen=True)
class LineFit:
    """y = fixed + per_unit × x, with each coefficient's 95% interval."""

    fixed: float
    fixed_interval: tuple[float, float]
    per_unit: float
    per_unit_interval: tuple[float, float]
    points: int
    lack_of_fit_p: float | None  # small: the points bend away from any line; None without repeated x

    @property
    def fits(self) -> bool:
        """Whether a straight line describes the points: the lack-of-fit test does not reject it at 5% (untested
        counts as passing), and the fixed part may be positive: a cost below zero means the points bend."""
        return (self.lack_of_fit_p is None or self.lack_of_fit_p >= 1 - CONFIDENCE) and self.fixed_interval[1] >= 0


def fit_line(x: list[float], y: list[float]) -> LineFit | None:
    """Least squares on relative residuals (scipy.optimize.curve_fit with sigma = y): timings at small and
    large x are about equally noisy in relative terms, so no end of the line dominates the fit. The
    intervals are Student's t on the fit's own covariance (n - 2 degrees of freedom); None with fewer
    than 3 points or fewer than 2 distinct x, where a line has no interval."""
    if len(x) < 3 or len(set(x)) < 2:
        return None
    from scipy.optimize import curve_fit

    (fixed, per_unit), covariance = curve_fit(lambda v, a, b: a + b * v, x, y, sigma=y, absolute_sigma=False)
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, len(x) - 2) * np.sqrt(np.diag(covariance))
    return LineFit(float(fixed), (float(fixed - half[0]), float(fixed + half[0])), float(per_unit),
                   (float(per_unit - half[1]), float(per_unit + half[1])), len(x),
                   _lack_of_fit_p(np.asarray(x, float), np.asarray(y, float), fixed + per_unit * np.asarray(x, float)))


def _lack_of_fit_p(x: np.ndarray, y: np.ndarray, fitted: np.ndarray) -> float | None:
    """The classic lack-of-fit F test, on the same relative scale as the fit: the residuals' part that the
    repeats at each x cannot explain, against the repeats' own spread (pure error)."""
    levels = np.unique(x)
    if len(x) <= len(levels) or len(levels) < 3:
        return None
    weights = 1 / y ** 2
    residual = float(np.sum(weights * (y - fitted) ** 2))
    pure = float(sum(np.sum(weights[x == level] * (y[x == level] - y[x == level].mean()) ** 2) for level in levels))
    if pure == 0:
        return 0.0 if residual > 0 else 1.0
    statistic = ((residual - pure) / (len(levels) - 2)) / (pure / (len(x) - len(levels)))
    return float(stats.f.sf(statistic, len(levels) - 2, len(x) - len(levels)))
