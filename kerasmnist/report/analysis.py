"""What the report states about its rows: orders, ratios, goal verdicts and noise flags.

Every ratio is paired by round (stats.py) and comes with its interval; an order is stated only
where the interval excludes a tie.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from kerasmnist.config import BUSY_SHARE, STEAL_SHARE, RunConfig
from kerasmnist.report import speeds
from kerasmnist.report.load import EXECUTION_KNOBS, Row, host_of, sweeps
from kerasmnist.report.stats import (UNSTABLE_CV, Learning, LineFit, Ratio, cv, fit_line, paired_difference, ratio,
                                     undecided_advice, unpaired_ratio, verdict)

# The performance goal: Keras at its best within 10% of the framework's own loop, learning as well.
GOAL_RATIO, GOAL_ACCURACY_POINTS = 0.9, 0.3


def ranked(row: Row) -> bool:
    return bool(row.entries) and not row.profiled


def ranked_for_backend(row: Row) -> bool:
    """A row ranked against other backends: not one superseded by its backend's chosen environment's
    (load.choose_environments)."""
    return ranked(row) and row.superseded_by is None


@dataclass(frozen=True)
class Standing:
    """A row against the fastest row that computed the same thing on the same machine and device."""

    fastest: Row
    versus_fastest: Ratio | None  # this row's steady time over the fastest's, per round; None for the fastest


def typical_time(rows: list[Row], seconds: str):
    """What picks the fastest of `rows`: each row's median over the rounds every one of them ran, where there are
    such rounds (a row that also holds an earlier compare's runs is then judged on the same rounds as the others,
    as its paired ratios are), else over all its runs."""
    shared = set.intersection(*(set(row.by_round(seconds)) for row in rows))

    def typical(row: Row) -> float:
        in_shared = [value for round_id, value in row.by_round(seconds).items() if round_id in shared]
        return statistics.median(in_shared) if in_shared else row.median(seconds)

    return typical


def standings(rows: list[Row], seconds: str = "steady_epoch_seconds") -> dict[int, Standing]:
    """id(row) -> its standing by the record figure `seconds` (a time: lower is faster), for every ranked row of
    a computation where some row has that figure."""
    by_computation: dict[tuple, list[Row]] = {}
    for row in filter(ranked_for_backend, rows):
        by_computation.setdefault(row.computation(), []).append(row)
    result = {}
    for group in by_computation.values():
        timed = [row for row in group if row.median(seconds) is not None]
        if not timed:
            continue  # no row has the figure (one epoch has no steady epochs): none is fastest
        fastest = min(timed, key=typical_time(timed, seconds))
        for row in group:
            versus = None if row is fastest else ratio(row.by_round(seconds), fastest.by_round(seconds))
            result[id(row)] = Standing(fastest, versus)
    return result


def gpu_speedup(row: Row, rows: list[Row]) -> Ratio | None:
    """For a GPU row: its CPU twin's steady time over its own, per round."""
    if row.device != "gpu" or not ranked(row):
        return None
    twin = next((other for other in rows if other.device == "cpu" and ranked(other)
                 and (other.machine, other.software) == (row.machine, row.software)
                 and _without(other.settings, "device", "jit_compile_resolved")
                 == _without(row.settings, "device", "jit_compile_resolved")), None)
    return ratio(twin.by_round("steady_epoch_seconds"), row.by_round("steady_epoch_seconds")) if twin else None


def _without(settings: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: value for key, value in settings.items() if key not in keys}


@dataclass(frozen=True)
class KerasNative:
    keras: Row
    native: Row
    throughput: Ratio  # Keras samples/s over native samples/s, per round
    accuracy_points: float  # mean test accuracy, Keras minus native, in points

    def per_round(self) -> dict[str, float]:
        native = self.native.by_round("samples_per_second")
        return {r: rate / native[r] for r, rate in self.keras.by_round("samples_per_second").items() if r in native}


def native_twin(row: Row, rows: list[Row]) -> Row | None:
    """The native row that ran the same computation with the same input path and threads as a Keras row."""
    if row.native or not ranked(row) or row.settings.get("precision") != "float32" or row.settings.get("data_parallel"):
        return None
    ignore = ("implementation", "jit_compile", "jit_compile_resolved", "steps_per_execution", "data_format")
    return next((other for other in rows if other.native and ranked(other)
                 and (other.machine, other.software) == (row.machine, row.software)
                 and _without(other.settings, *ignore) == _without(row.settings, *ignore)), None)


def keras_versus_native(rows: list[Row]) -> list[KerasNative]:
    pairs = []
    for row in rows:
        twin = native_twin(row, rows)
        throughput = twin and ratio(row.by_round("samples_per_second"), twin.by_round("samples_per_second"))
        if throughput:
            difference = (statistics.fmean(row.accuracy) - statistics.fmean(twin.accuracy)) * 100
            pairs.append(KerasNative(row, twin, throughput, difference))
    return pairs


@dataclass(frozen=True)
class KnobEffect:
    """One execution setting of a row against the same row without it (that setting at its default)."""

    row: Row
    knob: str
    without: Row
    speedup: Ratio  # the row's samples/s over the row without the setting, per round; above 1: the setting helps


def knob_effects(rows: list[Row]) -> list[KnobEffect]:
    """Every execution setting that has a twin row without it, on the same machine and software."""
    defaults = RunConfig().to_dict()
    effects = []
    for row in filter(ranked, rows):
        for knob in EXECUTION_KNOBS:
            if row.settings.get(knob, defaults[knob]) == defaults[knob]:
                continue
            wanted = _without(row.settings, "jit_compile_resolved") | {knob: defaults[knob]}
            without = next((other for other in rows if ranked(other) and other is not row
                            and (other.machine, other.software) == (row.machine, row.software)
                            and _without(other.settings, "jit_compile_resolved") == wanted), None)
            speedup = without and ratio(row.by_round("samples_per_second"), without.by_round("samples_per_second"))
            if speedup:
                effects.append(KnobEffect(row, knob, without, speedup))
    return effects


@dataclass(frozen=True)
class EnvironmentChange:
    """The same computation, run the same way on one machine, in two Python environments (issue 30's versions axis),
    or with two sets of versions: `row`'s steady epoch time over `baseline`'s (its backend's chosen environment's,
    load.choose_environments), and its test accuracy against it; paired by round where they shared rounds."""

    row: Row
    baseline: Row
    slower: Ratio  # row's steady epoch time over the baseline's; above 1: slower in row's environment
    paired: bool  # by round; else from unpaired runs, with Welch's interval (two compares never share a round)
    learning: Learning | None
    packages: dict[str, tuple[str | None, str | None]]  # what differs: name -> (baseline's version, row's)

    @property
    def verdict(self) -> str:
        """Slower or faster in the row's environment, tied, or undecided (stats.verdict)."""
        return verdict(self.slower)


def environment_changes(rows: list[Row], margin: float) -> list[EnvironmentChange]:
    """Each row superseded by its backend's chosen environment's row against that row."""
    changes = []
    for row in filter(ranked, rows):
        baseline = row.superseded_by
        if baseline is None or not ranked(baseline):
            continue
        times, baseline_times = row.by_round("steady_epoch_seconds"), baseline.by_round("steady_epoch_seconds")
        paired = ratio(times, baseline_times)
        slower = paired or unpaired_ratio(list(times.values()), list(baseline_times.values()))
        if slower:
            changes.append(EnvironmentChange(row, baseline, slower, bool(paired), learning_against(row, baseline, margin),
                                             _package_changes(baseline, row)))
    return changes


def accuracy_points(row: Row) -> dict[str, float]:
    """Round id -> the row's test accuracy, in percentage points."""
    return {round_id: 100 * accuracy for round_id, accuracy in row.by_round("test_accuracy").items()}


def learning_against(row: Row, baseline: Row, margin: float) -> Learning | None:
    """The row's test accuracy against the baseline's, paired by round, within `margin` points; None where they
    share no round."""
    found = paired_difference(accuracy_points(row), accuracy_points(baseline))
    return Learning(found, margin) if found else None


def _package_changes(baseline: Row, row: Row) -> dict[str, tuple[str | None, str | None]]:
    """The Python and package versions the two rows' runs recorded, where they differ."""
    old, new = baseline.versions, row.versions
    return {name: (old.get(name), new.get(name)) for name in sorted(set(old) | set(new))
            if old.get(name) != new.get(name)}


@dataclass(frozen=True)
class GoalVerdict:
    backend: str
    device: str
    chosen: KerasNative  # the Keras setting with the best ratio in the round it was picked from
    picked_round: str | None  # None where there was only one Keras setting to choose from
    confirmation: Ratio | None  # its ratio over the rounds it was not picked from

    @property
    def text(self) -> str:
        pair = self.chosen
        setting = pair.keras.name
        head = (f"- {self.backend} on {self.device}: *{setting}*, the only Keras setting run" if self.picked_round is None
                else f"- {self.backend} on {self.device}: the fastest Keras setting in round `{self.picked_round}` was "
                     f"*{setting}*")
        accuracy_ok = abs(pair.accuracy_points) <= GOAL_ACCURACY_POINTS
        if self.confirmation is None or not self.confirmation.has_interval:
            besides = " besides the one it was picked from" if self.picked_round else ""
            return f"{head}; too few rounds for an interval (2 or more are needed{besides}): goal undecided."
        confirmed = self.confirmation
        if confirmed.low >= GOAL_RATIO and accuracy_ok:
            verdict = "meets"
        elif confirmed.high < GOAL_RATIO or not accuracy_ok:
            verdict = "misses"
        else:
            verdict = "undecided: the interval straddles"
        rounds = f"{confirmed.rounds} {'other ' if self.picked_round else ''}rounds"
        advice = f"; {undecided_advice(confirmed, GOAL_RATIO)}" if verdict.startswith("undecided") else ""
        return (f"{head}; on the {rounds} it reaches {confirmed.text()} the native loop's "
                f"throughput, test accuracy {pair.accuracy_points:+.2f} points: {verdict} the goal of "
                f"{GOAL_RATIO}× (interval's lower bound) and {GOAL_ACCURACY_POINTS} points{advice}.")


def goal_verdicts(pairs: list[KerasNative]) -> list[GoalVerdict]:
    """Per machine, backend and device: the best Keras setting is picked on one round and judged on the
    others, so the pick's luck in that round does not inflate the verdict."""
    verdicts = []
    by_target: dict[tuple, list[KerasNative]] = {}
    for pair in pairs:
        by_target.setdefault((pair.keras.machine, pair.keras.backend, pair.keras.device), []).append(pair)
    for (_, backend, device), candidates in by_target.items():
        if len(candidates) == 1:  # nothing was picked, so every round may judge it
            only = candidates[0]
            verdicts.append(GoalVerdict(backend, device, only, None, only.throughput))
            continue
        picking_round = min(r for pair in candidates for r in pair.per_round())
        chosen = max((pair for pair in candidates if picking_round in pair.per_round()),
                     key=lambda pair: pair.per_round()[picking_round])
        others = {r: rate for r, rate in chosen.keras.by_round("samples_per_second").items() if r != picking_round}
        verdicts.append(GoalVerdict(backend, device, chosen, picking_round,
                                    ratio(others, chosen.native.by_round("samples_per_second"))))
    return verdicts


def stated_ratios(rows: list[Row]) -> list[tuple[Row, str, Ratio]]:
    """Every ratio the report states, with the row it is stated for and what it is."""
    standing_of = standings(rows)
    stated = [(row, "vs fastest", standing.versus_fastest) for row in rows
              if (standing := standing_of.get(id(row))) and standing.versus_fastest]
    stated += [(row, "GPU speed-up", gain) for row in rows if (gain := gpu_speedup(row, rows))]
    stated += [(pair.keras, "Keras / native", pair.throughput) for pair in keras_versus_native(rows)]
    stated += [(effect.row, f"{effect.knob} effect", effect.speedup) for effect in knob_effects(rows)]
    return stated


def half_width(found: Ratio) -> float:
    """The interval's larger distance from the estimate, as a share of it (infinite without an interval)."""
    if not found.has_interval:
        return float("inf")
    return max(found.high / found.estimate - 1, 1 - found.low / found.estimate)


def wide_ratios(rows: list[Row], target: float) -> list[tuple[Row, str, Ratio]]:
    """The stated ratios whose 95% interval is wider than ± target."""
    return [(row, what, found) for row, what, found in stated_ratios(rows) if half_width(found) > target]


def instability(row: Row) -> list[str]:
    """Why a row's times should not be trusted as they stand; empty when nothing was seen."""
    reasons = []
    epoch_cvs = [c["steady_epoch_cv"] for c in _contention(row) if c.get("steady_epoch_cv") is not None]
    if epoch_cvs and max(epoch_cvs) > UNSTABLE_CV:
        reasons.append(f"epoch CV up to {max(epoch_cvs):.0%}")
    repeat_cv = cv(row.steady)
    if repeat_cv is not None and repeat_cv > UNSTABLE_CV:
        reasons.append(f"repeats vary {repeat_cv:.0%}")
    busy = [c["other_cpu_seconds"] / (c["wall_seconds"] * c["logical_cores"]) for c in _contention(row)
            if c.get("other_cpu_seconds") is not None and c.get("wall_seconds")]
    if busy and max(busy) > BUSY_SHARE:
        reasons.append(f"other processes used up to {max(busy):.0%} of the CPUs")
    steal = [c["steal_seconds"] / (c["wall_seconds"] * c["logical_cores"]) for c in _contention(row)
             if c.get("steal_seconds") is not None and c.get("wall_seconds")]
    if steal and max(steal) > STEAL_SHARE:
        reasons.append(f"steal up to {max(steal):.0%}")
    return reasons


def governors_not_performance(row: Row) -> list[str]:
    """The CPU frequency governors other than performance in force during the row's runs, where their records have
    them (environment.cpu_scaling): such a governor lets the CPU's clock follow its load."""
    governors = {governor for run in row.runs for governor in run.environment["host"].get("cpu_governors") or []}
    return sorted(governors - {"performance"})


@dataclass(frozen=True)
class RowSpeeds:
    """The speeds of a row's steady epochs (its runs pooled) and of its runs' steady figures."""

    epochs: speeds.Speeds
    runs: speeds.Speeds

    @property
    def several(self) -> bool:
        return self.epochs.several or self.runs.several

    def text(self) -> str:
        """What was found, each view that found several speeds: 'steady epochs at two speeds: ...'."""
        found = [f"{what} at {view.text(unit)}" for what, unit, view in
                 (("steady epochs", "epochs", self.epochs), ("runs", "runs", self.runs)) if view.several]
        return "; ".join(found)


def steady_epochs(row: Row) -> list[float]:
    """Every ok run's epochs after its first (the compile epoch), in run order."""
    return [seconds for run in row.runs for seconds in (run.epoch_seconds or [])[1:]]


def row_speeds(row: Row) -> RowSpeeds:
    return RowSpeeds(speeds.detect(steady_epochs(row)), speeds.detect(row.steady))


def fewest_steady_epochs(row: Row) -> int | None:
    """The fewest steady epochs of any ok run, where that is under speeds.MIN_STEADY_EPOCHS; else None."""
    counts = [max(len(run.epoch_seconds or []) - 1, 0) for run in row.runs]
    return min(counts) if counts and min(counts) < speeds.MIN_STEADY_EPOCHS else None


def _contention(row: Row) -> list[dict[str, Any]]:
    return [run.contention for run in row.runs if run.contention]


def peak_rates(bench: list[dict[str, Any]]) -> dict[tuple[str, str, str, str], float]:
    """(machine, backend, device, invocation) -> the best matmul GFLOP/s measured there in that invocation,
    over every size and repeat: the best measured GEMM rate."""
    best: dict[tuple[str, str, str, str], float] = {}
    for entry in bench:
        rates = [row["gflops_per_second"] for row in entry.rows if row.get("gflops_per_second")]
        if entry.status == "ok" and rates:
            key = (host_of(entry), entry.backend, entry.device, entry.invocation)
            best[key] = max(best.get(key, 0.0), *rates)
    return best


def share_of_peak(row: Row, peaks: dict[tuple[str, str, str, str], float]) -> list[float]:
    """Each float32 run's achieved GFLOP/s over the best GEMM rate measured in its own invocation."""
    if row.settings.get("precision") != "float32":
        return []  # a mixed-precision run is not set against a float32 rate
    shares = []
    for entry in row.entries:
        peak = peaks.get((row.machine, row.backend, row.device, entry.invocation))
        achieved = entry.record.achieved_gflops_per_second
        if peak and achieved:
            shares.append(achieved / peak)
    return shares


@dataclass(frozen=True)
class StepCost:
    """One setting's seconds per training step against the batch size, and the line fitted through them."""

    name: str  # the row's name, less its batch size
    device: str
    points: list[tuple[int, float]]  # (batch size, seconds per step) for every ok run
    fit: LineFit | None  # seconds per step = fixed + per_sample × batch size
    backend: str

    def medians(self) -> dict[int, float]:
        """Batch size -> the median seconds per step of its runs, in order of batch size."""
        by_size: dict[int, list[float]] = {}
        for size, seconds in sorted(self.points):
            by_size.setdefault(size, []).append(seconds)
        return {size: statistics.median(seconds) for size, seconds in by_size.items()}


def seconds_per_step(row: Row) -> list[float]:
    """Each run's steady epoch over its steps (the last, partial batch counts as a step)."""
    batch = row.settings["batch_size"]
    return [run.steady_epoch_seconds / -(-run.data.train_size // batch) for run in row.runs
            if run.steady_epoch_seconds and run.data]


def step_costs(model_rows: list[Row]) -> list[StepCost]:
    """For every setting run at several batch sizes (a sweep): its fixed cost per step and its cost per sample.
    The fixed part is what a step costs whatever it computes (Python dispatch, launches, the optimizer's
    per-variable calls); it is what a GPU, which makes the per-sample part small, leaves in front."""
    costs = []
    for (_, _, name, device), line in sweeps([row for row in model_rows if ranked(row)]).items():
        points = [(size, seconds) for size, row in line for seconds in seconds_per_step(row)]
        costs.append(StepCost(name, device, points, fit_line([float(s) for s, _ in points], [t for _, t in points]),
                              line[0][1].backend))
    return costs


@dataclass(frozen=True)
class SweepStop:
    """A setting run at several batch sizes (a sweep): its throughput at each, and where doubling stops paying."""

    name: str  # the row's name, less its batch size
    device: str
    rates: list[tuple[int, float]]  # (batch size, median training samples/s), by batch size
    best_size: int  # the batch size up to which every step up gained at least `gain`
    gain: float  # the gain a step up must bring to be worth having


def sweep_stops(model_rows: list[Row], gain: float = 1.10) -> list[SweepStop]:
    """Per sweep, the usual advice checked: double the batch until throughput stops growing by `gain` a step."""
    stops = []
    for (_, _, name, device), line in sweeps(model_rows).items():
        rates = [(size, row.median("samples_per_second") or 0) for size, row in line]
        best_size = rates[0][0]
        for (_, rate), (next_size, next_rate) in zip(rates, rates[1:]):
            if next_rate < rate * gain:
                break
            best_size = next_size
        stops.append(SweepStop(name, device, rates, best_size, gain))
    return stops
