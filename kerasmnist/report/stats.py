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
    needed = ratio_of_slower.rounds_to_decide()
    if not ratio_of_slower.has_interval:
        advice = "run 2 or more rounds for an interval"
    elif needed is None:
        advice = f"the difference is below this machine's noise (more than {MOST_ROUNDS_WORTH_SUGGESTING} rounds)"
    else:
        more = max(needed - ratio_of_slower.rounds, 1)
        advice = f"about {more} more round{'s' if more > 1 else ''} would likely decide it"
    return f"tied within the noise: {ratio_of_slower.text()}, {rounds}; {advice}"
