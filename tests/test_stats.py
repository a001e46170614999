"""The report's statistics on synthetic data with a known answer, and the contention meter's figures."""

import math

import numpy as np
from scipy import stats

from kerasmnist.child.contention import ContentionMeter
from kerasmnist.report.stats import fit_line, mean_interval, order_text, ratio, unpaired_ratio, verdict


def rounds_of(times):
    return {f"round {i}": value for i, value in enumerate(times)}


def noisy(rng, mean, rounds, drift):
    """Per-round times: a shared machine drift times 3% independent noise."""
    return mean * drift * rng.lognormal(0.0, 0.03, rounds)


def test_two_rows_ten_percent_apart_are_ranked_despite_drift():
    rng = np.random.default_rng(1)
    drift = rng.uniform(0.7, 1.4, 6)  # the machine slows and speeds up far more than the 10% to find
    slower, faster = noisy(rng, 1.1, 6, drift), noisy(rng, 1.0, 6, drift)
    found = ratio(rounds_of(slower), rounds_of(faster))
    assert found.rounds == 6 and found.excludes(1.0)
    assert found.low < 1.1 < found.high
    assert "slower, 6 rounds" in order_text(found) and "tied" not in order_text(found)


def test_two_rows_from_one_distribution_are_called_tied():
    rng = np.random.default_rng(2)
    drift = rng.uniform(0.7, 1.4, 6)
    found = ratio(rounds_of(noisy(rng, 1.0, 6, drift)), rounds_of(noisy(rng, 1.0, 6, drift)))
    assert not found.excludes(1.0) and found.low < 1.0 < found.high
    assert "tied within the noise, 6 rounds" in order_text(found)


def test_the_interval_covers_the_true_ratio_about_95_percent_of_the_time():
    rng = np.random.default_rng(3)
    covered = 0
    for _ in range(400):
        drift = rng.uniform(0.8, 1.2, 4)
        found = ratio(rounds_of(noisy(rng, 1.2, 4, drift)), rounds_of(noisy(rng, 1.0, 4, drift)))
        covered += found.low <= 1.2 <= found.high
    assert 0.91 <= covered / 400 <= 0.99


def test_a_tie_says_how_many_more_rounds_would_likely_decide_it():
    found = ratio(rounds_of([1.05, 1.10, 1.00]), rounds_of([1.0, 1.0, 1.0]))
    assert not found.excludes(1.0)
    needed = found.rounds_to_decide()
    assert needed is not None and needed > 3
    assert f"about {needed - 3} more rounds would likely decide it" in order_text(found)


def test_ratios_pair_only_shared_rounds_and_one_round_has_no_interval():
    found = ratio({"a": 2.0, "b": 4.0}, {"b": 2.0, "c": 1.0})
    assert found.rounds == 1 and math.isclose(found.estimate, 2.0) and not found.has_interval
    # One round says nothing of the noise: no tie is claimed, and a 2x gap needs few rounds to be decided.
    assert order_text(found) == "2.00× undecided: 1 round, no interval (about 3 rounds would decide it)"
    assert ratio({"a": 1.0}, {"b": 1.0}) is None


def test_an_unpaired_ratio_is_welchs_interval_on_log_times_and_covers_the_true_ratio():
    """Runs of two machines, 1.5 times apart, 5 and 4 runs with different spreads: the estimate is the ratio of the
    geometric means, the bounds are scipy's Welch interval on the log times, exponentiated."""
    rng = np.random.default_rng(4)
    slower, faster = rng.lognormal(math.log(1.5), 0.04, 5), rng.lognormal(0.0, 0.08, 4)
    found = unpaired_ratio(list(slower), list(faster))
    welch = stats.ttest_ind(np.log(slower), np.log(faster), equal_var=False).confidence_interval(0.95)
    assert math.isclose(found.low, math.exp(welch.low)) and math.isclose(found.high, math.exp(welch.high))
    assert math.isclose(found.estimate, math.exp(np.log(slower).mean() - np.log(faster).mean()))
    assert found.low < 1.5 < found.high and found.rounds == 4 and verdict(found) == "slower"


def test_the_unpaired_interval_covers_the_true_ratio_about_95_percent_of_the_time():
    rng = np.random.default_rng(5)
    covered = 0
    for _ in range(400):
        found = unpaired_ratio(list(rng.lognormal(math.log(1.2), 0.03, 4)), list(rng.lognormal(0.0, 0.09, 3)))
        covered += found.low <= 1.2 <= found.high
    assert 0.91 <= covered / 400 <= 0.99


def test_the_same_runs_unpaired_give_a_wider_interval_than_paired_by_round():
    """A drift shared by each round cancels in a paired ratio and widens an unpaired one."""
    rng = np.random.default_rng(6)
    drift = rng.uniform(0.8, 1.25, 6)
    slower, faster = noisy(rng, 1.1, 6, drift), noisy(rng, 1.0, 6, drift)
    paired, unpaired = ratio(rounds_of(slower), rounds_of(faster)), unpaired_ratio(list(slower), list(faster))
    assert paired.excludes(1.0) and unpaired.high - unpaired.low > 2 * (paired.high - paired.low)


def test_an_unpaired_ratio_with_one_run_on_a_side_has_no_interval():
    found = unpaired_ratio([2.0], [1.0, 1.1, 0.9])
    assert found.rounds == 1 and not found.has_interval and verdict(found).startswith("undecided: 1 round")
    assert unpaired_ratio([], [1.0]) is None


def test_mean_interval_of_repeats():
    low, high = mean_interval([1.0, 1.1, 0.9, 1.0])
    assert low < 1.0 < high and mean_interval([1.0]) is None


def test_contention_figures_are_consistent():
    meter = ContentionMeter()
    for _ in range(2):  # two spans, as two epochs
        meter.start()
        total = 0
        for i in range(2_000_000):  # burn this process's CPU
            total += i
        meter.stop()
    summary = meter.summary(steady_epoch_cv=0.05)
    assert 0 < summary["own_cpu_seconds"] <= summary["wall_seconds"] * summary["logical_cores"] + 0.05
    assert summary["other_cpu_seconds"] >= 0 and summary["steal_seconds"] >= 0  # Linux: /proc/stat is read
    assert summary["other_cpu_seconds"] <= summary["wall_seconds"] * summary["logical_cores"] + 0.05
    assert summary["load_average_start"] >= 0 and summary["load_average_end"] >= 0
    assert summary["steady_epoch_cv"] == 0.05


def test_a_line_fit_recovers_fixed_and_per_sample_costs_within_its_intervals():
    rng = np.random.default_rng(0)
    fixed, per_sample = 400e-6, 20e-6  # 400 µs a step, 20 µs a sample
    covered = 0
    for _ in range(200):
        sizes = [16, 64, 256, 1024] * 3
        times = [(fixed + per_sample * size) * (1 + 0.03 * rng.standard_normal()) for size in sizes]
        fit = fit_line(sizes, times)
        covered += fit.fixed_interval[0] <= fixed <= fit.fixed_interval[1] and \
            fit.per_unit_interval[0] <= per_sample <= fit.per_unit_interval[1]
    assert 0.85 <= covered / 200 <= 1.0  # both 95% intervals cover the truth in most trials
    assert fit_line([16, 16, 16], [1.0, 1.1, 0.9]) is None and fit_line([16, 64], [1.0, 2.0]) is None


def test_points_that_bend_away_from_a_line_are_told_apart_from_noise():
    sizes = [16, 64, 256, 1024] * 2
    noise = [1.0, 1.02, 0.99, 1.01, 1.01, 0.98, 1.0, 0.99]
    straight = fit_line(sizes, [(1e-3 + 1e-5 * size) * n for size, n in zip(sizes, noise)])
    bent = fit_line(sizes, [(1e-5 * size ** 1.3) * n for size, n in zip(sizes, noise)])  # per sample grows with size
    assert straight.fits and straight.lack_of_fit_p > 0.05
    assert not bent.fits and bent.lack_of_fit_p < 0.01



# Learning verdicts: test accuracy in points, paired by round, against a margin (stats.Learning).

def learning(differences, margin=1.0, base=95.0):
    from kerasmnist.report.stats import Learning, paired_difference

    accuracies = rounds_of([base + d for d in differences])
    return Learning(paired_difference(accuracies, rounds_of([base] * len(differences))), margin)


def test_rows_that_learn_alike_learn_as_well_and_a_bug_learns_worse():
    from kerasmnist.report.stats import AS_WELL, BETTER, WORSE

    rng = np.random.default_rng(3)
    alike = learning(rng.normal(0.0, 0.3, 6))
    assert alike.verdict == AS_WELL and alike.text().startswith("learns as well (")
    worse = learning(rng.normal(-8.0, 0.3, 6))  # keras#20713's size of bug: several points
    assert worse.verdict == WORSE and worse.difference.high < -1.0
    assert worse.text().startswith("learns worse by 8.") and "6 rounds" in worse.text()
    assert learning(rng.normal(3.0, 0.2, 4)).verdict == BETTER


def test_one_round_is_never_as_well_and_says_how_many_rounds_would_decide():
    from kerasmnist.report.stats import UNDECIDED

    once = learning([0.0])
    assert once.verdict == UNDECIDED and once.equivalence_p() is None
    assert "1 round: no interval" in once.text() and "rounds would decide it" in once.text()
    assert once.rounds_to_decide() >= 2


def test_a_difference_beside_the_margin_is_undecided():
    """Lower by about a point, its interval excluding zero but reaching inside the margin: neither as well nor
    decidedly worse."""
    from kerasmnist.report.stats import UNDECIDED

    found = learning([-0.5, -1.4, -0.9, -0.8])
    assert found.difference.high < 0 < -found.difference.low - 1.0  # excludes zero, reaches past -1
    assert found.difference.high > -1.0 and found.verdict == UNDECIDED


def test_the_equivalence_p_is_two_one_sided_t_tests():
    from scipy import stats

    differences = [0.2, -0.3, 0.5, 0.1, -0.1, 0.4]
    expected = max(stats.ttest_1samp(np.add(differences, 1.0), 0.0, alternative="greater").pvalue,
                   stats.ttest_1samp(np.subtract(differences, 1.0), 0.0, alternative="less").pvalue)
    assert math.isclose(learning(differences).equivalence_p(), expected, rel_tol=1e-9)


def test_rows_exactly_at_the_margin_are_called_as_well_at_most_five_percent_of_the_time():
    """The equivalence test's error rate, simulated: a true difference of exactly the margin (the worst case)
    must be called 'as well' in at most 5% of matrices of 6 rounds; a true difference of zero mostly is."""
    from kerasmnist.report.stats import AS_WELL

    rng = np.random.default_rng(7)
    at_margin = [learning(rng.normal(-1.0, 0.4, 6)).verdict == AS_WELL for _ in range(2000)]
    alike = [learning(rng.normal(0.0, 0.4, 6)).verdict == AS_WELL for _ in range(500)]
    assert np.mean(at_margin) <= 0.05 + 0.015  # 5% plus three binomial standard errors
    assert np.mean(alike) >= 0.9
