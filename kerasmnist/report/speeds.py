"""Whether a set of epoch times holds one speed or several (issue 19).

Some configurations run each epoch at one of two speeds (Keras's TensorFlow trainer on a CPU toggles
between two, 1.6× apart, in runs of one to four epochs). A single median then hides a mixture, so the
report asks of every row's times whether they fall into clusters, and how many.

Method: Gaussian mixtures of 1 to MAX_SPEEDS components fitted to the log times (scikit-learn's
GaussianMixture), the number chosen by the Bayesian information criterion. Logarithms because timing
noise is multiplicative: one speed with a constant coefficient of variation is one Gaussian in log
space, however fast it is. Three guards keep noise from being called two speeds:

- MIN_BIC_GAIN: each extra speed must lower the BIC by at least 10, what Kass and Raftery (1995) call
  very strong evidence (a Bayes factor above about 150), not merely by any amount.
- MIN_SEPARATION: adjacent speeds' medians at least 1.2× apart. A mixture fit that cuts one Gaussian in
  two puts the halves' means ±0.8 σ from the centre (the half-normal's mean, σ·√(2/π)), 1.6 σ apart: for
  a single speed with 10% CV (the most the report accepts as stable, analysis.UNSTABLE_CV) that is
  1.17×. Clusters closer than 1.2× are what noise that the report already accepts makes of one speed.
- MIN_ASHMAN_D: adjacent speeds' log times separated by Ashman's D of at least 2 (Ashman, Bird and Zepf
  1994: |mean gap| / √((σ₁² + σ₂²)/2), above 2 for a clean separation), so that a wide group of
  stragglers is not called a speed of its own. Two speeds 1.6× apart with 20% CV each have D ≈ 2.4.
- MIN_POINTS_PER_SPEED and MIN_SHARE: a speed holds at least 3 times and 5% of them; two slow
  epochs are outliers (a cluster of two has no spread to speak of), and 3 strays among hundreds of
  epochs do not hide anything a median reports.

Fewer than 2 × MIN_POINTS_PER_SPEED times are one speed by construction: too few to tell.
"""

from __future__ import annotations

import functools
import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kerasmnist.config import MIN_STEADY_EPOCHS

MAX_SPEEDS = 3
MIN_BIC_GAIN = 10.0
MIN_SEPARATION = 1.2
MIN_POINTS_PER_SPEED = 3
MIN_SHARE = 0.05
MIN_ASHMAN_D = 2.0
# Timings are not repeatable below about 1% from one epoch to the next: the floor on each component's
# log-space variance, so that identical figures (rounded logs, synthetic entries) make no zero-width speed.
LOG_VARIANCE_FLOOR = 0.01 ** 2


@dataclass(frozen=True)
class Speed:
    """One cluster of times: its median, how many times it holds and their share of all."""

    median: float
    count: int
    share: float


@dataclass(frozen=True)
class Speeds:
    """The speeds found in a set of times, fastest first; one speed when no guard passed."""

    speeds: tuple[Speed, ...]

    @property
    def several(self) -> bool:
        return len(self.speeds) > 1

    @property
    def points(self) -> int:
        return sum(speed.count for speed in self.speeds)

    def text(self, unit: str = "epochs") -> str:
        """'two speeds: 1.31 s (60% of 20 epochs), 2.11 s (40%)'; the median alone for one speed."""
        if not self.several:
            return f"one speed: {self.speeds[0].median:.2f} s" if self.speeds else "no times"
        count = {2: "two", 3: "three"}.get(len(self.speeds), str(len(self.speeds)))
        figures = [f"{speed.median:.2f} s ({speed.share:.0%}" + (f" of {self.points} {unit})" if i == 0 else ")")
                   for i, speed in enumerate(self.speeds)]
        return f"{count} speeds: " + ", ".join(figures)


def detect(times: Sequence[float], seed: int = 0) -> Speeds:
    """The speeds in `times` (seconds; others are left out); `seed` fixes the mixture fits' initialisation."""
    return _detect(tuple(float(t) for t in times if t > 0), seed)


@functools.lru_cache(maxsize=1024)  # a report asks about each row from several places; the fits take tens of ms
def _detect(times: tuple[float, ...], seed: int) -> Speeds:
    best = [list(times)]
    if len(times) < 2 * MIN_POINTS_PER_SPEED or len(set(times)) < 2:
        return _speeds(best)
    logs = np.log(np.asarray(times, dtype=float)).reshape(-1, 1)  # scikit-learn wants one column
    best_bic = _fit(logs, 1, seed)[0]
    for components in range(2, MAX_SPEEDS + 1):
        if len(times) < components * MIN_POINTS_PER_SPEED:
            break
        bic, labels = _fit(logs, components, seed)
        groups = _groups(times, labels)
        if len(groups) == components and bic <= best_bic - MIN_BIC_GAIN and _distinct(groups, len(times)):
            best, best_bic = groups, bic
    return _speeds(best)


def _fit(logs: np.ndarray, components: int, seed: int) -> tuple[float, list[int]]:
    """The BIC of a `components`-Gaussian fit and each time's component."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    mixture = GaussianMixture(components, reg_covar=LOG_VARIANCE_FLOOR, init_params="k-means++", n_init=5,
                              random_state=seed)
    with warnings.catch_warnings():  # a component left with no points is rejected by the caller
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = mixture.fit_predict(logs)
    return float(mixture.bic(logs)), [int(label) for label in labels]


def _groups(times: Sequence[float], labels: list[int]) -> list[list[float]]:
    """The times of each component, fastest group first."""
    members: dict[int, list[float]] = {}
    for time, label in zip(times, labels):
        members.setdefault(label, []).append(time)
    return sorted(members.values(), key=statistics.median)


def _distinct(groups: list[list[float]], total: int) -> bool:
    """The guards: every group big enough, adjacent groups far enough apart and not overlapping."""
    big_enough = all(len(group) >= MIN_POINTS_PER_SPEED and len(group) / total >= MIN_SHARE for group in groups)
    return big_enough and all(statistics.median(faster) * MIN_SEPARATION <= statistics.median(slower)
                              and _ashman_d(faster, slower) >= MIN_ASHMAN_D
                              for faster, slower in zip(groups, groups[1:]))


def _ashman_d(first: list[float], second: list[float]) -> float:
    """Ashman's D of two groups' log times: the gap between their means over their pooled spread."""
    a, b = np.log(first), np.log(second)
    spread = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2 + LOG_VARIANCE_FLOOR)
    return abs(b.mean() - a.mean()) / spread


def _speeds(groups: list[list[float]]) -> Speeds:
    total = sum(map(len, groups))
    return Speeds(tuple(Speed(statistics.median(group), len(group), len(group) / total) for group in groups if group))
