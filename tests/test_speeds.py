"""The multi-speed detector on synthetic epoch times with a known answer."""

import numpy as np
import pytest

from kerasmnist.report import speeds
from kerasmnist.report.speeds import detect


def lognormal(rng, count, cv, centre=1.0):
    """`count` times around `centre` with multiplicative noise of coefficient of variation `cv`."""
    return list(centre * np.exp(rng.normal(0.0, np.sqrt(np.log(1 + cv ** 2)), count)))


def two_speeds(rng, count, slow_share, ratio=1.6, cv=0.05):
    slow = round(count * slow_share)
    times = lognormal(rng, count - slow, cv) + lognormal(rng, slow, cv, centre=ratio)
    rng.shuffle(times)
    return times


def test_one_speed_with_5_percent_noise_is_one_speed():
    found = detect(lognormal(np.random.default_rng(1), 40, 0.05))
    assert len(found.speeds) == 1 and found.speeds[0].count == 40 and found.speeds[0].share == 1.0
    assert found.speeds[0].median == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("slow_share", [0.1, 0.3, 0.5])
def test_two_speeds_1_6x_apart_are_found_with_their_medians_and_shares(slow_share):
    found = detect(two_speeds(np.random.default_rng(2), 40, slow_share))
    assert found.several and len(found.speeds) == 2
    fast, slow = found.speeds
    assert fast.median == pytest.approx(1.0, rel=0.05) and slow.median == pytest.approx(1.6, rel=0.05)
    assert slow.share == pytest.approx(slow_share) and fast.share == pytest.approx(1 - slow_share)
    assert fast.count + slow.count == 40


@pytest.mark.parametrize("slow_share", [0.3, 0.5])
def test_two_speeds_are_found_in_the_epochs_of_two_short_runs(slow_share):
    """Two runs of 7 steady epochs (speeds.MIN_STEADY_EPOCHS), pooled as the report pools them."""
    assert detect(two_speeds(np.random.default_rng(3), 2 * speeds.MIN_STEADY_EPOCHS, slow_share)).several


def test_three_speeds_are_told_apart_from_two():
    rng = np.random.default_rng(4)
    found = detect(lognormal(rng, 20, 0.05) + lognormal(rng, 20, 0.05, 1.6) + lognormal(rng, 20, 0.05, 2.56))
    assert [speed.median for speed in found.speeds] == pytest.approx([1.0, 1.6, 2.56], rel=0.05)
    assert [speed.count for speed in found.speeds] == [20, 20, 20]


@pytest.mark.parametrize("cv", [0.10, 0.20])
@pytest.mark.parametrize("count", [14, 40])
def test_noise_alone_is_rarely_called_two_speeds(cv, count):
    """Over many seeds: lognormal noise with 10 to 20% CV (as much as a busy CPU gives) stays one speed."""
    called = sum(detect(lognormal(np.random.default_rng(seed), count, cv), seed).several for seed in range(40))
    assert called <= 1  # at most 2.5%; none in 200 seeds of each case when the guards were chosen


def test_two_stragglers_are_not_a_speed():
    times = lognormal(np.random.default_rng(5), 18, 0.05) + [2.0, 2.1]
    assert not detect(times).several


def test_a_wide_spread_of_stragglers_is_not_a_speed():
    """Three slow epochs far apart from each other (0.7 to 3 s) are outliers, not a speed: Ashman's D < 2.
    The steady epochs of reports/performance's TensorFlow FFN row (jit_compile, steps_per_execution 16)."""
    times = [0.929, 0.525, 0.695, 0.487, 0.457, 0.43, 0.454, 0.461, 3.013, 0.485, 0.436, 0.394, 0.495, 0.504,
             0.531, 0.559, 0.447, 0.504, 0.451, 0.501]
    assert not detect(times).several


def test_speeds_closer_than_the_minimum_separation_are_one():
    """1.1x apart with 1% noise is cleanly bimodal, but under MIN_SEPARATION: one speed for this report."""
    assert not detect(two_speeds(np.random.default_rng(7), 40, 0.5, ratio=1.1, cv=0.01)).several


def test_too_few_times_or_identical_times_are_one_speed():
    assert not detect([1.0, 1.6, 1.0, 1.6, 1.0]).several  # under 2 x MIN_POINTS_PER_SPEED
    assert detect([1.0] * 10).speeds == (speeds.Speed(1.0, 10, 1.0),)
    assert detect([]).speeds == ()


def test_the_same_seed_gives_the_same_answer():
    times = two_speeds(np.random.default_rng(8), 30, 0.3)
    assert detect(times, seed=3) == detect(list(times), seed=3)


def test_the_text_names_each_speed_with_its_share():
    found = detect([1.0, 1.01, 0.99, 1.02, 1.0, 0.98, 1.6, 1.61, 1.59, 1.62])
    assert found.text() == "two speeds: 1.00 s (60% of 10 epochs), 1.60 s (40%)"
    assert detect([1.0, 1.02]).text() == "one speed: 1.01 s"
