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

Rows that share no round (rows of different machines) cannot be paired: their ratio comes from their runs, each
run one sample, with Welch's interval on log times (unpaired_ratio).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np
from scipy import stats


CONFIDENCE = 0.95
MOST_ROUNDS_WORTH_SUGGESTING = 50
# The most a row's figures may vary (steady epochs within a run, or runs over rounds) for the report to call
# it stable (analysis.instability).
UNSTABLE_CV = 0.10
# With one round the rounds' spread is unknown: how many rounds would decide a ratio is then estimated as if
# each of its two rows varied over rounds as much as a stable row may, independently of the other.
ASSUMED_LOG_SD = math.sqrt(2) * math.log1p(UNSTABLE_CV)
TIED = "tied within the noise"  # only ever said of an interval that spans 1


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

    def inverse(self) -> Ratio:
        """The same comparison the other way round (B over A): a time ratio as a throughput ratio."""
        return Ratio(1 / self.estimate, self.high and 1 / self.high, self.low and 1 / self.low, self.rounds,
                     self.log_sd)

    def rounds_to_decide(self, value: float = 1.0) -> int | None:
        """About how many rounds in all would make the interval exclude `value`, if the estimate and the
        spread stay as they are (with one round, the spread a stable row may have: ASSUMED_LOG_SD); None
        when no plausible number would (the difference is below the noise)."""
        log_sd = ASSUMED_LOG_SD if self.log_sd is None else self.log_sd
        difference = abs(math.log(self.estimate / value))
        if log_sd == 0:
            return self.rounds if difference else None
        return fewest_rounds(log_sd, difference, 0.5 + CONFIDENCE / 2)

    def text(self, digits: int = 2) -> str:
        if not self.has_interval:
            return f"{self.estimate:.{digits}f}× (1 round: no interval)"
        return f"{self.estimate:.{digits}f}× [{self.low:.{digits}f}–{self.high:.{digits}f}]"


def fewest_rounds(sd: float, room: float, quantile: float) -> int | None:
    """The fewest rounds (2 to MOST_ROUNDS_WORTH_SUGGESTING) whose t interval half-width at `quantile`, for
    per-round figures of spread `sd`, is below `room`; None where none is."""
    for rounds in range(2, MOST_ROUNDS_WORTH_SUGGESTING + 1):
        if stats.t.ppf(quantile, rounds - 1) * sd / math.sqrt(rounds) < room:
            return rounds
    return None


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


def unpaired_ratio(numerators: list[float], denominators: list[float]) -> Ratio | None:
    """numerator / denominator from runs that share no round (rows of different machines never do), each run one
    sample: the ratio of the geometric means, with Welch's 95% interval on the difference of the mean log times
    (scipy.stats.ttest_ind, equal_var=False) turned back into a ratio. No drift cancels between unpaired runs, so
    the interval is wider than a paired one over as many rounds.

    Its `rounds` is the smaller run count: with fewer than 2 runs on either side there is no interval. Its log_sd
    is the spread of a run's log time on both sides together, sqrt(sd_a² + sd_b²), so that Ratio.rounds_to_decide
    estimates how many runs on each side would decide it (on the fewer degrees of freedom of a paired ratio:
    erring towards more runs). None where either side has no positive time."""
    logs = [np.log([seconds for seconds in side if seconds > 0]) for side in (numerators, denominators)]
    if not all(len(side) for side in logs):
        return None
    estimate, rounds = math.exp(logs[0].mean() - logs[1].mean()), min(len(side) for side in logs)
    if rounds < 2:
        return Ratio(estimate, None, None, rounds, None)
    log_sd = math.sqrt(sum(np.var(side, ddof=1) for side in logs))
    if log_sd == 0:
        return Ratio(estimate, estimate, estimate, rounds, 0.0)
    low, high = stats.ttest_ind(*logs, equal_var=False).confidence_interval(CONFIDENCE)
    return Ratio(estimate, math.exp(low), math.exp(high), rounds, log_sd)


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


def verdict(found: Ratio, above: str = "slower", below: str = "faster") -> str:
    """What a ratio of A over B lets the report say of A: `above` or `below` where its interval excludes 1;
    tied within the noise where its interval spans 1; undecided where it has no interval (one round), which
    is no claim of a tie. A tie and an undecided ratio say what would decide them."""
    if found.excludes(1.0):
        return above if found.estimate > 1 else below
    if not found.has_interval:
        return f"undecided: {_rounds(found.rounds)}, no interval ({undecided_advice(found)})"
    return f"{TIED} ({undecided_advice(found)})"


def order_text(ratio_of_slower: Ratio) -> str:
    """'1.90× [1.7–2.1] slower, 4 rounds' when the interval excludes a tie; else the tie, or the lack of an
    interval, and what would decide it."""
    found, rounds = ratio_of_slower, _rounds(ratio_of_slower.rounds)
    if found.excludes(1.0):
        return f"{found.text()} {verdict(found)}, {rounds}"
    if not found.has_interval:
        return f"{found.estimate:.2f}× {verdict(found)}"
    return f"{found.text()} {TIED}, {rounds} ({undecided_advice(found)})"


def _rounds(count: int) -> str:
    return f"{count} round{'s' if count != 1 else ''}"


def undecided_advice(found: Ratio, value: float = 1.0) -> str:
    """What would decide a ratio whose interval does not exclude `value` (or that has no interval)."""
    needed = found.rounds_to_decide(value)
    if needed is None and found.has_interval:
        return f"the difference is below this machine's noise: more than {MOST_ROUNDS_WORTH_SUGGESTING} rounds"
    if needed is None:
        return (f"more than {MOST_ROUNDS_WORTH_SUGGESTING} rounds would be needed at the {UNSTABLE_CV:.0%} spread a "
                "stable row may have")
    if not found.has_interval:
        return f"about {needed} rounds would decide it"
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


# Learning: does a row's model learn as well as another's? Test accuracy in percentage points, paired by round
# (a round's cells share their seed), decided by an equivalence test within a margin.
#
# The default margin (config.ACCURACY_MARGIN_POINTS) and the paired spread it was chosen from are measured in
# reports/learning-margin/README.md.
MEASURED_PAIRED_SD = 0.4  # points; the rounds-needed estimate assumes it where one round gives no spread
AS_WELL, WORSE, BETTER, UNDECIDED = "learns as well", "learns worse", "learns better", "undecided"


@dataclass(frozen=True)
class Difference:
    """A mean of paired differences (A − B per shared round), with its 95% t interval (None with one round)."""

    estimate: float
    low: float | None
    high: float | None
    rounds: int
    sd: float | None  # of the per-round differences; None with one round

    def text(self, unit: str = " points", digits: int = 2) -> str:
        if self.low is None:
            return f"{self.estimate:+.{digits}f}{unit} (1 round: no interval)"
        return f"{self.estimate:+.{digits}f}{unit} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def paired_difference(a: dict[str, float], b: dict[str, float]) -> Difference | None:
    """a − b paired by round id; None when the two share no round."""
    differences = [a[r] - b[r] for r in sorted(set(a) & set(b))]
    if not differences:
        return None
    low, high = mean_interval(differences) or (None, None)
    return Difference(statistics.fmean(differences), low, high, len(differences),
                      statistics.stdev(differences) if len(differences) > 1 else None)


@dataclass(frozen=True)
class Learning:
    """Whether row A learns as well as row B: the paired difference in test accuracy (A − B, points) against
    ±margin. As well: two one-sided t tests at 5% both reject a difference beyond the margin (the 90% interval
    lies within ±margin); worse or better: the 95% interval excludes zero and lies wholly beyond the margin;
    undecided otherwise, and always with one round."""

    difference: Difference
    margin: float

    def equivalence_p(self) -> float | None:
        """The larger p of the two one-sided tests (difference ≤ −margin; difference ≥ +margin); None with one
        round. Equivalent within the margin where it is below 5%."""
        found = self.difference
        if found.sd is None:
            return None
        if found.sd == 0:
            return 0.0 if abs(found.estimate) < self.margin else 1.0
        scale, freedom = found.sd / math.sqrt(found.rounds), found.rounds - 1
        above_lower = stats.t.sf((found.estimate + self.margin) / scale, freedom)
        below_upper = stats.t.cdf((found.estimate - self.margin) / scale, freedom)
        return float(max(above_lower, below_upper))

    @property
    def verdict(self) -> str:
        found = self.difference
        p = self.equivalence_p()
        if p is not None and p < 1 - CONFIDENCE:
            return AS_WELL
        if found.low is not None and (found.high < -self.margin or found.low > self.margin):
            return WORSE if found.estimate < 0 else BETTER
        return UNDECIDED

    def rounds_to_decide(self) -> int | None:
        """About how many rounds in all would decide it (equivalent, or beyond the margin) if the difference and
        its spread stay as they are (with one round, the spread MEASURED_PAIRED_SD); None when no plausible
        number would (the difference sits at the margin)."""
        found = self.difference
        sd = MEASURED_PAIRED_SD if found.sd is None else found.sd
        room = abs(abs(found.estimate) - self.margin)
        if room == 0:
            return None
        one_sided = abs(found.estimate) < self.margin  # equivalence: each one-sided test at 5%
        return fewest_rounds(sd, room, CONFIDENCE if one_sided else 0.5 + CONFIDENCE / 2)

    def text(self) -> str:
        """'learns as well (+0.03 points [-0.20, +0.26], 6 rounds)', 'learns worse by 8.10 points [...]',
        'undecided (...; about N rounds would decide it)'."""
        found, verdict = self.difference, self.verdict
        figures = f"{found.text()}, {_rounds(found.rounds)}"
        if verdict in (WORSE, BETTER):
            return f"{verdict} by {abs(found.estimate):.2f} points ({figures})"
        if verdict == AS_WELL:
            return f"{verdict} ({figures})"
        needed = self.rounds_to_decide()
        advice = (f"about {needed} rounds would decide it" if needed and needed > found.rounds
                  else "more rounds would decide it" if needed
                  else "no number of rounds: the difference sits at the margin"
                  if math.isclose(abs(found.estimate), self.margin)
                  else f"more than {MOST_ROUNDS_WORTH_SUGGESTING} rounds at this spread")
        return f"{verdict} ({figures}; {advice})"
