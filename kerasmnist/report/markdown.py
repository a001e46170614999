"""report.md: a pure function of the rows, the statistics about them and the benchmark entries."""

from __future__ import annotations

import statistics
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kerasmnist.config import BACKENDS, DEVICES
from kerasmnist.report import analysis, headline, speeds
from kerasmnist.report.mdtable import head, line as table_line
from kerasmnist.records import BenchEntry, CellEntry
from kerasmnist.report.load import (NOT_DESCRIBED, Results, Row, describe, host_label, host_of, latest_bench,
                                    model_sections, section_header, section_settings)
from kerasmnist.report.plots import HEADLINE_PLOT, PLOTS
from kerasmnist.report.stats import CONFIDENCE, UNSTABLE_CV, order_text, verdict

METHOD = (
    "How to read the numbers. A *round* is one pass of a compare command over its cells, each cell a fresh "
    "process, run adjacent in time; a new command starts new rounds. Times are wall-clock seconds of one epoch's "
    "training steps (validation excluded), the device synchronised at epoch boundaries; *steady* is the median of "
    "epochs 2 and later of a run, then the median (min–max) over its runs. Every ratio (*vs fastest*, *GPU "
    "speed-up*, Keras / native) is computed per round from the two cells of that round, and its "
    f"{CONFIDENCE:.0%} interval [low–high] is Student's t on the rounds' log ratios (scipy.stats.t): with 2 to 6 "
    "rounds a bootstrap cannot reach its tails. An order is stated only where the interval excludes 1; where it "
    "spans 1 the rows are called tied within the noise, with about how many more rounds would likely decide it. "
    "With one round there is no interval and nothing is decided: *undecided*, with about how many rounds would "
    f"decide it if each row's rounds varied by {UNSTABLE_CV:.0%}, the most a row called stable may. Rows are "
    "ranked only against rows that computed the same thing (same data, epochs, batch size, precision and model "
    "settings) on the same machine and device; profiled rows are never ranked. *GFLOP/s* counts every layer's training FLOPs "
    "per sample (kerasmnist/child/models/flops.py: products with weights and between activations, normalisation, gates "
    "and softmax; the first weighted layer computes no input gradient), *unknown* where a layer is one the count "
    "does not know; in brackets, its share of "
    "the best measured GEMM rate of this backend on this device (the fastest of several matrix sizes and repeats, "
    "timed by the same compare command), not given for mixed precision. *Time to accuracy* is checked at epoch "
    "ends, so its resolution is one epoch and it includes the compile epoch. *Stability* flags a row whose steady "
    f"epochs or runs vary by more than {UNSTABLE_CV:.0%}, or whose runs shared the machine with other "
    f"processes using over {analysis.BUSY_SHARE:.0%} of its CPU time or {analysis.STEAL_SHARE:.0%} steal. "
    "*Speeds*: a row's steady epochs (its runs pooled), and its runs' steady figures, are fitted with Gaussian "
    f"mixtures of 1 to {speeds.MAX_SPEEDS} speeds on log times (scikit-learn), the number chosen by BIC; a further "
    f"speed counts only if it lowers the BIC by {speeds.MIN_BIC_GAIN:g} or more, its median is "
    f"{speeds.MIN_SEPARATION:g}× from its neighbour's, the two are apart by Ashman's D ≥ {speeds.MIN_ASHMAN_D:g}, "
    f"and it holds at least {speeds.MIN_POINTS_PER_SPEED} times and {speeds.MIN_SHARE:.0%} of them. A row at "
    "several speeds shows each speed's median and share instead of one figure. Its steady figure and every ratio "
    "still use each run's median steady epoch: with an odd count of at least "
    f"{speeds.MIN_STEADY_EPOCHS} steady epochs that is an epoch of the speed that held most of that run, and the "
    "run-to-run flips between speeds widen the intervals as they should. Rows whose runs had fewer steady epochs "
    "are named: their figure may be one speed's."
)


def render(results: Results, rows: list[Row], found: dict[str, list[headline.Headline]],
           changes: list[analysis.EnvironmentChange], plotted: list[str], results_dirs: list[Path],
           inventory: str) -> str:
    """report.md, from the rows, their headlines by what they rank (training, inference, time_to_accuracy:
    headline.headlines, which decide every order and learning verdict) and what changed between environments."""
    training = found["training"]
    cells, bench = results.cells, results.bench
    counts = {status: sum(e.status == status for e in cells) for status in ("ok", "skipped", "failed")}
    lines = [
        "# kerasmnist comparison report",
        "",
        f"{len(cells)} cells: {counts['ok']} ok, {counts['skipped']} skipped, {counts['failed']} failed, in "
        f"{len({e.round for e in cells})} rounds. Report built {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC "
        f"by `kerasmnist report {' '.join(str(d) for d in results_dirs)}` from the results below.",
        "",
        *headline.markdown_table(training),
        *headline.cross_machine_table(rows),
        *environment_section(changes),
        *(headline.markdown_table(found["inference"], "Which backend infers fastest")
          if any(row.values(headline.INFERENCE.seconds) for row in rows) else []),
        *(headline.markdown_table(found["time_to_accuracy"], "Which backend reaches the target accuracy first")
          if any(row.values(headline.TIME_TO_ACCURACY.seconds) for row in rows) else []),
        *([f"Every row's throughput relative to the fastest: [{HEADLINE_PLOT}]({HEADLINE_PLOT}).", ""]
          if HEADLINE_PLOT in plotted else []),
        "Made by (in the order they ran):",
        "",
        *[f"    {command}" for command in commands_in_order(cells, bench)],
        "",
        *([inventory] if inventory else []),
        "## Environment",
        "",
        *environment_table([(e.host, e.record.environment, e.record.started_at) for e in cells if e.record]
                           + [(e.host, e.environment, e.started_at) for e in bench if e.environment]),
        "",
        METHOD,
    ]
    standings, peaks = analysis.standings(rows), analysis.peak_rates(bench)
    for model_rows in model_sections(rows):
        lines += model_section(model_rows, rows, standings, peaks,
                               [found for found in training if found.section == model_rows[0].model_title])
    lines += matmul_section(bench)
    lines += ["", "## Plots", ""]
    lines += [f"![{PLOTS[name]}]({name})" for name in plotted] or ["No finished cells to plot."]
    if cells and "gpu_speedup.png" not in plotted:
        lines += ["", "No row has both CPU and GPU results here, so there is no GPU speed-up plot."]
    lines += wall_time_section(cells)
    lines += problems_section(cells, bench)
    if results.ignored:
        lines += ["", "## Ignored lines", "", *[f"- {line}" for line in results.ignored]]
    if cells:
        lines += ["", "Per-cell figures: [results.csv](results.csv); per-row figures with intervals: "
                      "[rows.csv](rows.csv).", ""]
    return "\n".join(lines)


def commands_in_order(cells: list[CellEntry], bench: list[BenchEntry]) -> list[str]:
    """Each command once, in the order it first ran: a folder is often filled by several commands."""
    return list(dict.fromkeys(command for _, command in sorted(
        [(e.finished_at, e.command) for e in cells if e.command]
        + [(e.started_at, e.command) for e in bench if e.command])))


def model_section(model_rows: list[Row], rows: list[Row], standings: dict[int, analysis.Standing],
                  peaks: dict, training: list[headline.Headline]) -> list[str]:
    shared, _ = section_settings(model_rows)
    header = ", ".join(part for key, value in shared.items()
                       if key not in NOT_DESCRIBED
                       and (part := describe(key, value)))
    several_machines = len({(row.machine, row.software) for row in rows}) > 1

    def line(*cells: str) -> str:
        """A table row; the machine column only appears when several machines' results are merged."""
        return table_line(*(cells if several_machines else cells[1:]))

    # Peak GPU memory only where a GPU ran: the counters do not cover the CPU.
    with_memory = any(row.values("peak_device_memory_bytes") for row in model_rows)
    columns = ["machine", "row", "device", "runs", "rounds", "steady epoch s", "first epoch s", "samples/s",
               "inference samples/s", "GFLOP/s (of best GEMM)", "test accuracy", "time to accuracy", "vs fastest [95%]",
               "GPU speed-up [95%]", "stability", "peak host memory", *(["peak GPU memory"] if with_memory else [])]
    title, identity = model_rows[0].model_title, section_header(model_rows)
    lines = ["", f"## Model `{title}`", "", *([f"{identity}.", ""] if identity else []),
             f"All rows: {header}." if header else "", "",
             *head(*(columns if several_machines else columns[1:]))]
    for row in model_rows:
        lines.append(line(machine_label(row, rows), row.name, row.device, run_counts(row),
                          str(len({e.round for e in row.entries})), steady_text(row),
                          _spread(row.values("first_epoch_seconds")), _rate(row.median("samples_per_second")),
                          _rate(row.median("inference_samples_per_second")), gflops_text(row, peaks), accuracy_text(row), time_to_accuracy_text(row),
                          versus_fastest_text(row, standings), speedup_text(row, rows), stability_text(row),
                          memory_text(row, "peak_host_memory_bytes"),
                          *([memory_text(row, "peak_device_memory_bytes")] if with_memory else [])))
    lines += ["", *fastest_lines(training), *keras_native_lines(model_rows), *knob_effect_lines(model_rows),
              *epoch_pause_lines(model_rows), *short_of_target(model_rows),
              *sweep_verdicts(model_rows), *step_cost_lines(model_rows), *where_the_time_goes(model_rows)]
    lines += several_speeds_lines(model_rows) + few_steady_epochs_lines(model_rows)
    unstable = [row for row in model_rows if analysis.instability(row)]
    if unstable:
        lines += ["", f"{len(unstable)} row{' is' if len(unstable) == 1 else 's are'} marked unstable: their times "
                      "moved more than the differences this report ranks may be. Close other programs, give each run the whole machine "
                      "(`--cpu-threads`), and add rounds (`--rounds`) before acting on them."]
    return lines + governor_lines(model_rows)


def governor_lines(model_rows: list[Row]) -> list[str]:
    """The rows whose runs had a CPU frequency governor other than performance in force, beside the unstable rows'
    sentence: such a governor lets the clock follow the load, which a benchmark's CPU should not."""
    governed = [(row, governors) for row in model_rows if (governors := analysis.governors_not_performance(row))]
    if not governed:
        return []
    return ["", "Run under a CPU frequency governor other than performance: "
            + ", ".join(f"{row.name} on {row.device} ({', '.join(governors)})" for row, governors in governed)
            + ". It lets the CPU's clock follow its load, so a run's times can move with how busy the CPU was and how "
              "soon its clock rose; for timing, set the governor to performance (`sudo cpupower frequency-set -g "
              "performance`, or `pyperf system tune`)."]


def memory_text(row: Row, key: str) -> str:
    """The most memory any run of the row held at once: GPU memory by the framework's own counter, host memory
    as the training process's peak resident set."""
    peaks = row.values(key)
    return f"{max(peaks) / 2**20:,.0f} MiB" if peaks else "n/a"


def short_of_target(model_rows: list[Row]) -> list[str]:
    """With compare --target-ci: the ratios whose interval was still wider than the target at the last round."""
    targets = {entry.target_ci for row in model_rows for entry in row.entries if entry.target_ci}
    if not targets:
        return []
    target = min(targets)
    wide = analysis.wide_ratios(model_rows, target)
    if not wide:
        return ["", f"Every ratio above reached the ±{target:.0%} target (compare --target-ci)."]
    lines = []
    for ordered, heading in ((True, f"The order stands; only the ±{target:.0%} precision target (compare --target-ci) "
                                    "was missed: the interval excludes 1 but is wider than the target"),
                             (False, f"Stopped short of the ±{target:.0%} target with the order undecided "
                                     "(compare --target-ci; add rounds with --max-rounds)")):
        listed = [f"- {row.name} on {row.device}, {what}: {found.text()}, {found.rounds} rounds"
                  for row, what, found in wide if found.excludes(1.0) == ordered]
        lines += ["", f"{heading}:", "", *listed] if listed else []
    return lines


def machine_label(row: Row, rows: list[Row]) -> str:
    """The host, and the versions too where one host ran with several."""
    versions = {other.software for other in rows if other.machine == row.machine}
    return row.machine if len(versions) == 1 else f"{row.machine}; {row.software}"


def run_counts(row: Row) -> str:
    others = {status: sum(o.status == status for o in row.others) for status in ("skipped", "failed")}
    return f"{len(row.entries)} ok" + "".join(f", {n} {status}" for status, n in others.items() if n)


def _spread(values: list[float], digits: int = 2) -> str:
    if not values:
        return "–"
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.{digits}f}"
    return f"{median:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def gflops_text(row: Row, peaks: dict) -> str:
    achieved = row.median("achieved_gflops_per_second")
    unknown = sorted({layer for run in row.runs for layer in run.flops_unknown_layers or []})
    if unknown:  # a FLOP count that leaves layers out would be a wrong number, not a low one
        return f"unknown ({', '.join(unknown)})"
    if achieved is None:
        return "–"
    shares = analysis.share_of_peak(row, peaks)
    if not shares:
        return f"{achieved:.1f}"
    share = statistics.median(shares)
    return f"{achieved:.1f} ({share:.0%}" + (", above the GEMM rate: check the FLOP count)" if share > 1 else ")")


def accuracy_text(row: Row) -> str:
    values = row.accuracy
    if not values:
        return "–"
    mean = statistics.fmean(values) * 100
    text = f"{mean:.2f}%" if len(values) == 1 else f"{mean:.2f}% ± {statistics.stdev(values) * 100:.2f}"
    return text + (f" ({row.shared_seeds} runs share a seed: spread understated)" if row.shared_seeds else "")


def time_to_accuracy_text(row: Row) -> str:
    reached = [run.time_to_accuracy for run in row.runs if run.time_to_accuracy]
    if not reached:
        return "–"
    seconds = [t.seconds for t in reached if t.seconds is not None]
    target = f"{reached[0].target:.0%}"
    if not seconds:
        return f"{target} not reached"
    epochs = statistics.median(t.epochs for t in reached if t.epochs is not None)
    missed = len(reached) - len(seconds)
    return (f"{target}: {_spread(seconds, 1)} s, epoch {epochs:g}"
            + (f" ({missed} run{'s' if missed > 1 else ''} missed it)" if missed else ""))


def versus_fastest_text(row: Row, standings: dict[int, analysis.Standing]) -> str:
    standing = standings.get(id(row))
    if row.superseded_by is not None and row.entries and row.superseded_by.entries:
        return f"set against {environment_name(row.superseded_by)} (below)"
    if standing is None:
        return "–"
    if standing.versus_fastest is None:
        return "fastest" if any(s.fastest is row and s.versus_fastest for s in standings.values()) else "–"
    return standing.versus_fastest.text()


def speedup_text(row: Row, rows: list[Row]) -> str:
    gain = analysis.gpu_speedup(row, rows)
    return gain.text(1) if gain else "–"


def steady_text(row: Row) -> str:
    """The runs' steady figures; for a row at several speeds, the speeds first, so no single figure hides them."""
    found = analysis.row_speeds(row)
    if not found.several:
        return _spread(row.steady)
    return f"**{found.text()}**; each run's median: {_spread(row.steady)}"


def several_speeds_lines(model_rows: list[Row]) -> list[str]:
    """The rows whose epochs or runs fall into several speeds, and which figure their ratios use."""
    found = [(row, speeds_found) for row in model_rows if row.entries
             and (speeds_found := analysis.row_speeds(row)).several]
    if not found:
        return []
    return ["", f"{len(found)} row{' runs' if len(found) == 1 else 's run'} at several speeds: one steady figure "
                "would hide them. Their ratios use each run's median steady epoch (see *Speeds* above), so runs that "
                "flip between speeds widen the intervals rather than hide in them.", "",
            *[f"- {row.name} on {row.device}: {speeds_found.text()}." for row, speeds_found in found]]


def few_steady_epochs_lines(model_rows: list[Row]) -> list[str]:
    """The rows whose runs had too few steady epochs for their median to show a second speed."""
    few = [(row, fewest) for row in model_rows if row.entries
           and (fewest := analysis.fewest_steady_epochs(row)) is not None]
    if not few:
        return []
    return ["", f"Fewer than {speeds.MIN_STEADY_EPOCHS} steady epochs in a run (the fewest in brackets), so the "
                "figure may be one speed's: "
            + ", ".join(f"{row.name} on {row.device} ({fewest})" for row, fewest in few)
            + f". Run at least {speeds.MIN_STEADY_EPOCHS + 1} epochs (`--epochs`) for a figure that shows both."]


def stability_text(row: Row) -> str:
    if not row.entries:
        return "–"
    reasons = analysis.instability(row)
    return "unstable: " + "; ".join(reasons) if reasons else "ok"


def fastest_lines(training: list[headline.Headline]) -> list[str]:
    """For each set of a model's rows that computed the same thing: the fastest, each other row's ratio to it, and
    whether each learns as well."""
    lines = []
    for found in training:
        if len(found.contenders) + len(found.unranked) == 0:
            continue  # a single row: nothing to rank
        accuracy = f" (test accuracy {accuracy_text(found.fastest)})" if found.fastest else ""
        details = "; ".join([*(f"{c.name} {order_text(c.versus_fastest)} (test accuracy {accuracy_text(c.row)}"
                               + (f", {c.learning.text()})" if c.learning else ")") for c in found.contenders),
                             *(f"{headline.contender_name(row)}: {why}" for row, why in found.unranked)])
        lines.append(f"- {found.label}: {found.fastest_text(mark='**')}{accuracy}. "
                     f"{'Against it' if found.fastest else 'The rows'}: {details}.")
    return lines


def keras_native_lines(model_rows: list[Row]) -> list[str]:
    pairs = analysis.keras_versus_native(model_rows)
    if not pairs:
        return []
    lines = ["", "Keras against the framework's own loop (same batch size, input path and threads; throughput ratio "
                 "per round, above 1: Keras is faster):", "",
             *head("Keras row", "device", "Keras samples/s", "native samples/s", "Keras / native [95%]", "rounds",
                   "test accuracy, Keras − native")]
    for pair in pairs:
        lines.append(table_line(pair.keras.name, pair.keras.device, _rate(pair.keras.median("samples_per_second")),
                                _rate(pair.native.median("samples_per_second")), pair.throughput.text(),
                                pair.throughput.rounds, f"{pair.accuracy_points:+.2f} points"))
    return lines + ["", *(verdict.text for verdict in analysis.goal_verdicts(pairs))]


def knob_effect_lines(model_rows: list[Row]) -> list[str]:
    effects = analysis.knob_effects(model_rows)
    if not effects:
        return []
    lines = ["", "Each execution setting against the same row without it (throughput ratio per round, above 1: "
                 "the setting is faster):", "",
             *head("row", "setting", "row without it", "samples/s with / without [95%]", "rounds", "verdict")]
    for effect in effects:
        speedup = effect.speedup
        lines.append(table_line(effect.row.name, describe(effect.knob, effect.row.settings[effect.knob]),
                                effect.without.name, speedup.text(), speedup.rounds,
                                verdict(speedup, above="faster", below="slower")))
    return lines


# What fit is given that it iterates anew every epoch under Keras's TensorFlow trainer: it keeps one iterator for
# the whole fit only when the data never ends and fit is told the steps per epoch (keras/src/trainers/
# epoch_iterator.py, _enumerate_iterator), as --input-pipeline tf.data-repeat does.
PER_EPOCH_ITERATOR_PIPELINES = ("numpy", "tf.data")
# Measured with configs/tf-pipeline.toml and reports/performance/tf-pipeline.toml (reports/tf-two-speeds/README.md,
# 2026-12-05, 6 paired rounds each).
TF_PIPELINE_FINDING = ("in kerasmnist's reports/tf-two-speeds, 2-core CPU, the keras-io CNN on full MNIST, 6 paired "
                       "rounds: the epochs took 0.82× [0.77–0.87] the time, the whole process 1.02× [0.86–1.21], not "
                       "decidedly faster, as fit stalled 24–27 s on returning in 4 of 6 processes")


def epoch_pause_lines(model_rows: list[Row]) -> list[str]:
    """Under the Keras TensorFlow CPU rows: where fit makes a new tf.data iterator every epoch, the pause it costs and
    what a user can write instead; where it keeps one (tf.data-repeat), where that moves the cost."""
    def rows_fed(pipelines: tuple[str, ...]) -> list[Row]:
        return [row for row in model_rows if row.entries and row.backend == "tensorflow" and row.device == "cpu"
                and row.settings.get("implementation") == "keras" and row.settings.get("input_pipeline") in pipelines]

    lines = []
    if paused := rows_fed(PER_EPOCH_ITERATOR_PIPELINES):
        lines += ["", f"{', '.join(row.name for row in paused)} on cpu: Keras's TensorFlow trainer makes a new tf.data "
                      "iterator for every epoch of this input, and on a CPU some epochs start after an idle pause "
                      "while TensorFlow destroys the previous one. One endless pipeline with the steps per epoch "
                      "keeps one iterator (`--input-pipeline tf.data-repeat`; in your own code "
                      "`model.fit(dataset.repeat(), steps_per_epoch=math.ceil(len(x) / batch_size))`, `dataset` "
                      "shuffled and batched): the pauses leave the epochs, but part of the cost comes back when fit "
                      f"drops that iterator on returning ({TF_PIPELINE_FINDING}). The stall is paid once per fit, "
                      "the pauses in every epoch."]
    if kept := rows_fed(("tf.data-repeat",)):
        lines += ["", f"{', '.join(row.name for row in kept)} on cpu: one endless tf.data iterator for the whole fit, "
                      "so no epoch waits for the previous epoch's iterator to be destroyed; but in some processes fit "
                      "stalls for seconds as it drops that iterator on returning, outside the timed epochs. Its "
                      "process's whole time is in *Where each compare's time went* (the training call, outside the "
                      "timed parts)."]
    return lines


def environment_section(changes: list[analysis.EnvironmentChange]) -> list[str]:
    """What changed between Python environments (analysis.environment_changes): each row of a backend's other
    environments against its chosen environment's row of the same settings on the same machine."""
    if not changes:
        return []
    lines = ["## What changed between environments", "",
             "The same computation run the same way on one machine in two Python environments (or with two sets of "
             "versions): each row's steady epoch time over that of its backend's row in the headline (above 1: "
             "slower), and its test accuracy against it; paired by round, or from unpaired runs with Welch's interval "
             "where they ran in different compares. The headline's row is each backend's newest environment (its "
             "framework's version, then Keras's), unless the config chose one (`headline = true`).", "",
             *head("model and device", "row", "environment", "against", "what differs",
                   f"steady epoch time vs it [{CONFIDENCE:.0%}]", "rounds", "verdict", "learning")]
    for change in changes:
        lines.append(table_line(f"{change.row.model_title} on {change.row.device}", change.row.name,
                                environment_name(change.row), environment_name(change.baseline),
                                change_text(change), change.slower.text(),
                                str(change.slower.rounds) + ("" if change.paired else " (unpaired runs)"),
                                change.verdict,
                                change.learning.text() if change.learning else "–"))
    return [*lines, ""]


def environment_change_lines(changes: list[analysis.EnvironmentChange]) -> list[str]:
    """The terminal's lines: 'cnn on cpu, torch in torch-2.13.0 against torch-2.14.1 (torch 2.13.0 vs 2.14.1):
    1.03× [0.99–1.07], tied within the noise; learns as well (...)'."""
    if not changes:
        return []
    return ["what changed between environments (steady epoch time against the headline's environment):",
            *(f"  {change.row.model_title} on {change.row.device}, {change.row.name} against "
              f"{environment_name(change.baseline)} ({change_text(change)}): {change.slower.text()}, "
              f"{change.verdict}"
              + ("" if change.paired else " (unpaired runs)")
              + (f"; {change.learning.text()}" if change.learning else "") for change in changes)]


def environment_name(row: Row) -> str:
    return row.environment or "kerasmnist's own"


def change_text(change: analysis.EnvironmentChange) -> str:
    """'torch 2.13.0 vs 2.14.1': each package whose version differs, the row's first."""
    return ", ".join(f"{name} {new or '–'} vs {old or '–'}"
                     for name, (old, new) in change.packages.items()) or "no package versions"


def wall_time_section(cells: list[CellEntry]) -> list[str]:
    """Per compare command: its cells' wall time, and the share of it each phase took (rounds.cell_phases),
    training steps (the first and the steady epochs) first."""
    by_command: dict[str, list[CellEntry]] = {}
    for entry in cells:
        if entry.phases:
            by_command.setdefault(entry.invocation, []).append(entry)
    if not by_command:
        return []
    phases = list(dict.fromkeys(phase for entries in by_command.values() for e in entries for phase in e.phases))
    lines = ["", "## Where each compare's time went", "",
             "Each cell's wall time, from starting its process to its exit, split into phases; the share of the "
             "cells' wall time in each, per compare command (its invocation id). *Training steps* are the first "
             "and the steady epochs.", "",
             *head("compare", "cells", "cells' wall time", "training steps", *phases)]
    for invocation, entries in by_command.items():
        wall = sum(e.wall_seconds for e in entries)
        spent = {phase: sum(e.phases.get(phase, 0) for e in entries) for phase in phases}
        training = spent.get("first epoch (tracing, compiling)", 0) + spent.get("steady epochs", 0)
        lines.append(table_line(invocation, len(entries), f"{wall:,.0f} s", f"{training / wall:.0%}",
                                *(f"{spent[phase] / wall:.0%}" for phase in phases)))
    return lines


def problems_section(cells: list[CellEntry], bench: list[BenchEntry]) -> list[str]:
    """Skipped and failed cells; a failed rerun of a cell that has an ok result is an attempt, not its result."""
    finished = {e.key for e in cells if e.status == "ok"}
    problems = [(f"{e.backend} {e.device} {e.model} round {e.repeat + 1}", e,
                 f"{e.status} attempt (an earlier ok result stands)" if e.key in finished else e.status)
                for e in sorted(cells, key=lambda e: (e.finished_at, e.order)) if e.status != "ok"]
    problems += [(f"matmul {e.backend} {e.device}", e, e.status) for e in bench if e.status != "ok"]
    lines = ["", "## Skipped and failed cells", ""]
    if not problems:
        return lines + ["None."]
    return lines + [*head("cell", "status", "reason"),
                    *[table_line(name, status, e.reason or "") for name, e, status in problems]]


def inventory_section(results_dirs: list[Path]) -> str:
    """What `kerasmnist env --out DIR` saw on each machine, where it was saved."""
    import json

    from kerasmnist.launch.inventory import INVENTORY_FILE, render as render_inventory

    blocks = []
    for folder in results_dirs:
        path = folder / INVENTORY_FILE
        if path.is_file():
            try:
                text = render_inventory(json.loads(path.read_text(encoding="utf-8")))
            except (ValueError, KeyError) as error:
                text = f"{path}: unreadable ({error})"
            blocks.append(f"From `{path}`:\n\n```\n{text}\n```\n")
    return "## Backends and devices (kerasmnist env)\n\n" + "\n".join(blocks) + "\n" if blocks else ""


def matmul_section(bench_entries: list[BenchEntry]) -> list[str]:
    """Seconds and GFLOP/s per size for each backend and device, and where the GPU starts to win."""
    from kerasmnist.launch.bench import crossover

    measured = sorted(latest_bench(bench_entries),
                      key=lambda e: (host_of(e), BACKENDS.index(e.backend), DEVICES.index(e.device)))
    if not measured:
        return []
    sizes = sorted({row["size"] for e in measured for row in e.rows if row["operation"] == "matmul"})
    lines = ["", "## Matrix multiply", "",
             "Median seconds of one synchronised call (warm-up excluded), and GFLOP/s (2N³ per N×N product); "
             "the latest measurement of each backend and device.", "",
             *head("backend", "device", "scalar multiply", *(f"{n}×{n}" for n in sizes))]
    for entry in measured:
        by_size = {row["size"]: row for row in entry.rows if row["operation"] == "matmul"}
        scalar = next(row for row in entry.rows if row["operation"] == "scalar multiply")
        cells = []
        for size in sizes:
            row = by_size.get(size)
            if row is None:
                cells.append("–")
            elif "error" in row:
                cells.append(f"not run: {row['error']}")
            else:
                rate = f", {row['gflops_per_second']:.3g} GFLOP/s" if row["gflops_per_second"] else ""
                cells.append(f"{_seconds(row['median_seconds'])}{rate}")
        device = entry.device if entry.resolved_device == "cpu" else f"{entry.device} ({entry.resolved_device})"
        lines.append(table_line(entry.backend, device, _seconds(scalar["median_seconds"]), *cells))
    if not any("error" not in row for e in measured for row in e.rows if row["operation"] == "matmul"):
        lines.append("- No matrix size could be measured (each was refused or failed, as the table says), "
                     "so there is no matmul plot.")
    for backend in BACKENDS:
        pair = {e.device: e for e in measured if e.backend == backend}
        if {"cpu", "gpu"} <= set(pair):
            size = crossover(pair["cpu"]["rows"], pair["gpu"]["rows"])
            lines.append(f"- {backend}: the GPU is faster " + (f"from {size}×{size} on." if size else "at no measured size."))
    if not any({"cpu", "gpu"} <= {e.device for e in measured if e.backend == b} for b in BACKENDS):
        lines.append("- No backend was measured on both a CPU and a GPU here, so there is no crossover size.")
    return lines


def _seconds(value: float) -> str:
    return f"{value * 1e6:.0f} µs" if value < 1e-3 else (f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s")


def step_cost_lines(model_rows: list[Row], reference_batch: int = 128) -> list[str]:
    """The fixed and per-sample cost of a training step, for the settings run at several batch sizes."""
    costs = [cost for cost in analysis.step_costs(model_rows) if cost.fit]
    if not costs:
        return []

    def micros(value: float, interval: tuple[float, float]) -> str:
        return f"{value * 1e6:,.1f} µs [{interval[0] * 1e6:,.1f} to {interval[1] * 1e6:,.1f}]"

    lines = ["", "Cost per training step: seconds per step = fixed + per sample × batch size, fitted over every run "
                 "at every batch size (least squares on relative residuals, 95% intervals). The fixed part is what "
                 "every step costs whatever its size (dispatch, launches, per-variable optimizer calls); where the "
                 "per-sample part shrinks, as on a GPU, the fixed part is what is left. Where the repeats show the "
                 "points bending away from a line (lack-of-fit F test, p < 0.05, or a fixed part surely below zero: the "
                 "cost per sample itself changes with the batch size, e.g. caches), no fixed cost is stated.", "",
             *head("row", "device", "ms per step by batch size (median)", "fixed per step", "per sample",
                   f"fixed share of a batch-{reference_batch} step")]
    for cost in costs:
        fit = cost.fit
        times = ", ".join(f"{size}: {seconds * 1e3:,.2f}" for size, seconds in cost.medians().items())
        if fit.fits:
            share = fit.fixed / (fit.fixed + fit.per_unit * reference_batch)
            figures = (micros(fit.fixed, fit.fixed_interval), micros(fit.per_unit, fit.per_unit_interval), f"{share:.0%}")
        else:
            why = (f"lack of fit p = {fit.lack_of_fit_p:.3f}" if fit.lack_of_fit_p is not None
                   and fit.lack_of_fit_p < 1 - CONFIDENCE else f"fixed part below zero, {fit.fixed * 1e6:,.0f} µs")
            figures = (f"not a line ({why})", "–", "–")
        lines.append(table_line(cost.name, cost.device, times, *figures))
    return lines


def sweep_verdicts(model_rows: list[Row]) -> list[str]:
    """Where doubling the batch stops paying: the usual advice is to double until it stops getting faster."""
    sentences = [f"- {stop.name} on {stop.device}: throughput grows at least {stop.gain - 1:.0%} per step up to batch "
                 f"{stop.best_size}; " + ", ".join(f"{size}: {rate:,.0f}/s" for size, rate in stop.rates) + "."
                 for stop in analysis.sweep_stops(model_rows)]
    return ["", "Batch-size sweep:", "", *sentences] if sentences else []


def where_the_time_goes(model_rows: list[Row]) -> list[str]:
    """The profiled runs' self time by owner, and their costliest functions (see kerasmnist/child/profiling.py).
    The owners are the records' own, in their order."""
    profiled = [(g, g.runs[0].profile) for g in model_rows if g.runs and g.runs[0].profile]
    if not profiled:
        return []
    owners = list(profiled[0][1]["seconds_by_owner"])
    lines = ["", "Where the time goes (cProfile over the training steps of epochs 2 on, first run of each row; "
                 "self time by owner. A jitted JAX step is invisible to cProfile and counts as the self time of "
                 "the line that calls it):", "",
             *head("run", "device", "profiled s", *owners, "costliest functions (self s)")]
    for g, profile in profiled:
        total = profile["profiled_seconds"] or 1.0
        shares = [f"{profile['seconds_by_owner'].get(name, 0.0) / total:.0%}" for name in owners]
        costliest = "; ".join(f"`{f['function']}` {f['self_seconds']:.2f}" for f in profile["top_functions"][:3])
        lines.append(table_line(g.name, g.device, f"{profile['profiled_seconds']:.2f}", *shares, costliest))
    return lines


def environment_table(sources: list[tuple[dict[str, Any], dict[str, Any], str]]) -> list[str]:
    """One row per machine, from the (host, environment, started_at) of records and benchmark entries."""
    rows = {}
    for host, environment, started_at in sources:
        packages = environment["packages"]
        gpus = ", ".join(f"{g['name']} (driver {g['driver']}, {g['memory']})" for g in environment["gpus"]) or "none"
        memory = environment["host"]["memory_bytes"]
        key = (host_label(host), environment["python"], *packages.values())  # new versions: a new machine
        dates = rows.get(key, {}).get("dates", set()) | {started_at[:10]}
        rows[key] = {
            "cells": (key[0], f"{memory / 2**30:.0f} GiB", gpus, environment["python"], packages["keras"],
                      packages["tensorflow"] or "–", packages["torch"] or "–", packages["jax"] or "–"),
            "dates": dates,
            "hosts": [*rows.get(key, {}).get("hosts", []), environment["host"]],
        }
    if not rows:
        return ["No finished cells: nothing is known about the machines."]
    scaling = {key: cpu_scaling_text(row["hosts"]) for key, row in rows.items()}
    shown = any(scaling.values())  # older records and VMs without cpufreq have none: no column
    return [
        *head("machine", "memory", "GPUs", "Python", "Keras", "TensorFlow", "torch", "JAX",
              *(["CPU frequency scaling"] if shown else []), "dates"),
        *[table_line(*row["cells"], *([scaling[key] or "not exposed"] if shown else []),
                     ", ".join(sorted(row["dates"]))) for key, row in rows.items()],
    ]


def cpu_scaling_text(hosts: list[dict[str, Any]]) -> str:
    """A machine's CPU frequency scaling over its records (environment.cpu_scaling), as 'governor powersave
    (intel_pstate); turbo on; 800–3,400 MHz'; "" where no record has any of it."""
    def union(key: str) -> list:
        return sorted({value for host in hosts for value in host.get(key) or []})

    governors, drivers, mhz = union("cpu_governors"), union("cpu_scaling_drivers"), union("cpu_mhz")
    turbo = sorted({host["cpu_turbo"] for host in hosts if host.get("cpu_turbo") is not None}, reverse=True)
    governed = f"governor {', '.join(governors)}" if governors else ""
    parts = [f"{governed} ({', '.join(drivers)})".strip() if drivers else governed,
             "turbo " + " and ".join("on" if state else "off" for state in turbo) if turbo else "",
             (f"{mhz[0]:,}–{mhz[-1]:,} MHz" if len(mhz) > 1 else f"{mhz[0]:,} MHz") if mhz else ""]
    return "; ".join(part for part in parts if part)
