"""The report's plots: one PNG per view, drawn only where there is data for it (matplotlib, no display)."""

from __future__ import annotations

import statistics
import textwrap
from collections import Counter
from pathlib import Path

from kerasmnist.config import DEVICES
from kerasmnist.records import BenchEntry
from kerasmnist.report import headline
from kerasmnist.report.analysis import gpu_speedup, step_costs
from kerasmnist.report.load import Row, model_sections, sweeps
from kerasmnist.report.stats import CONFIDENCE, WORSE, Ratio

HEADLINE_PLOT = "relative_throughput.png"
PLOTS = {
    HEADLINE_PLOT: "Training throughput relative to the fastest, per model and device",
    "matmul_seconds.png": "Matrix multiply time by size",
    "steady_epoch_seconds.png": "Steady-state epoch time",
    "test_accuracy.png": "Test accuracy",
    "learning_curves.png": "Validation accuracy by epoch",
    "gpu_speedup.png": "GPU speed-up over CPU",
    "batch_sweep.png": "Throughput and accuracy by batch size",
    "step_costs.png": "Time per training step by batch size",
}
# Every plot draws a backend in its colour; lines of one backend in one panel differ by marker.
BACKEND_COLOURS = {"tensorflow": "tab:orange", "torch": "tab:red", "jax": "tab:blue"}
MARKERS = "osD^v<>px*"


def line_styles(backends: list[str]) -> list[tuple[str, str]]:
    """For lines drawn in one panel, in order: each one's colour (its backend's) and marker (the next one
    not yet used for that backend there)."""
    seen: Counter[str] = Counter()
    styles = []
    for backend in backends:
        styles.append((BACKEND_COLOURS[backend], MARKERS[seen[backend] % len(MARKERS)]))
        seen[backend] += 1
    return styles


def interval_errors(ratios: list[Ratio | None]) -> list[tuple[float, float]]:
    """Error bar lengths below and above each estimate: its 95% interval, none without one."""
    return [(found.estimate - found.low, found.high - found.estimate) if found and found.has_interval else (0, 0)
            for found in ratios]


def legend(axis, **options) -> None:
    """The axis's legend, where it drew something labelled: matplotlib warns into the user's terminal ("No
    artists with labels found to put in legend") when asked for a legend of nothing."""
    if axis.get_legend_handles_labels()[0]:
        axis.legend(**options)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: works without a display
    import matplotlib.pyplot as plt

    return plt


def write_all(rows: list[Row], training: list[headline.Headline], latest_bench: list[BenchEntry],
              out_dir: Path) -> list[str]:
    """Draws every plot that has data; returns the file names written."""
    return (write_headline_plot(training, out_dir) + write_plots(rows, out_dir)
            + write_matmul_plot(latest_bench, out_dir)
            + write_sweep_plot(rows, out_dir) + write_step_cost_plot(rows, out_dir))


def headline_bars(training: list[headline.Headline]) -> dict[str, list[tuple[str, Row, Ratio | None]]]:
    """The headline plot's bars, per device: each labelled with its model (the section's title, and its detail)
    and its row's name, with its throughput ratio to the fastest (None: the fastest)."""
    by_device: dict[str, list[tuple[str, Row, Ratio | None]]] = {}
    for found in training:
        if found.fastest is None or not found.contenders:
            continue
        name = found.section + (f" ({found.detail})" if found.detail else "")
        by_device.setdefault(found.device, []).append((f"{name}: {headline.contender_name(found.fastest)}",
                                                       found.fastest, None))
        by_device[found.device] += [(f"{name}: {c.name}" + (" (learns worse)" if c.learning and c.learning.verdict
                                                             == WORSE else ""), c.row, c.throughput)
                                    for c in found.contenders]
    return by_device


def write_headline_plot(training: list[headline.Headline], out_dir: Path) -> list[str]:
    """One panel per device: per model, every row's training throughput relative to the fastest row, with the
    95% interval of the paired ratio as error bars (none where one round gives no interval)."""
    by_device = headline_bars(training)
    if not by_device:
        return []
    plt = _pyplot()

    devices = sorted(by_device, key=DEVICES.index)
    height = 1.8 + 0.32 * max(len(bars) for bars in by_device.values())
    figure, axes = plt.subplots(1, len(devices), figsize=(7 * len(devices), height), squeeze=False)
    for axis, device in zip(axes[0], devices):
        bars = by_device[device]
        ratios = [found for _, _, found in bars]
        positions = range(len(bars))
        drawn = axis.barh(positions, [found.estimate if found else 1.0 for found in ratios],
                          xerr=list(zip(*interval_errors(ratios))), capsize=3,
                          color=[BACKEND_COLOURS[row.backend] for _, row, _ in bars],
                          hatch=["//" if row.native else "" for _, row, _ in bars])
        axis.bar_label(drawn, labels=["fastest" if found is None else f"{found.estimate:.2f}×"
                                      + ("" if found.has_interval else " (1 round: no interval)") for found in ratios],
                       fontsize=8, padding=3)
        axis.set_yticks(list(positions), [label for label, _, _ in bars], fontsize=8)
        axis.invert_yaxis()
        axis.axvline(1, color="black", linewidth=0.8)
        axis.set_xlim(0, max([1.25, *(found.high * 1.1 for found in ratios if found and found.has_interval)]))
        axis.set_title(device)
        axis.set_xlabel("training throughput relative to the fastest (1: the fastest)")
        axis.grid(axis="x", alpha=0.3)
    title = (f"Which backend for which model (bars: {CONFIDENCE:.0%} interval of the ratio paired by round; "
             "hatched: native loops; a row whose test accuracy is decidedly lower than the fastest's says so)")
    # About 12 characters of 10-point text to an inch: wrapped to the figure's width, the title is never cut off.
    figure.suptitle("\n".join(textwrap.wrap(title, width=int(12 * figure.get_figwidth()))), fontsize=10)
    figure.tight_layout()
    figure.savefig(out_dir / HEADLINE_PLOT, dpi=110)
    plt.close(figure)
    return [HEADLINE_PLOT]


def write_matmul_plot(bench_entries: list[BenchEntry], out_dir: Path) -> list[str]:
    """Time against size for every size measured; nothing where every size was refused (too big) or failed."""
    measured = [(entry, points) for entry in bench_entries if entry.status == "ok"
                and (points := [row for row in entry.rows if row["operation"] == "matmul" and "error" not in row])]
    if not measured:
        return []
    plt = _pyplot()

    figure, axis = plt.subplots(figsize=(7.5, 4.8))
    for entry, points in measured:
        axis.plot([row["size"] for row in points], [row["median_seconds"] for row in points], marker="o",
                  color=BACKEND_COLOURS[entry.backend], linestyle="-" if entry.device == "cpu" else "--",
                  label=f"{entry.backend} {entry.device}")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("matrix size N (N×N times N×N, float32)")
    axis.set_ylabel("seconds per product (median)")
    axis.set_title("Matrix multiply: time against size (solid: CPU, dashed: GPU)")
    axis.grid(alpha=0.3, which="both")
    legend(axis)
    figure.tight_layout()
    figure.savefig(out_dir / "matmul_seconds.png", dpi=110)
    plt.close(figure)
    return ["matmul_seconds.png"]


def write_sweep_plot(rows: list[Row], out_dir: Path) -> list[str]:
    lines = sweeps(rows)
    if not lines:
        return []
    plt = _pyplot()

    figure, (rate_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    styles = line_styles([line[0][1].backend for line in lines.values()])
    for ((model, machine, name, device), line), (colour, marker) in zip(lines.items(), styles):
        sizes = [size for size, _ in line]
        style = {"color": colour, "marker": marker, "linestyle": "-" if device == "cpu" else "--",
                 "label": f"{model} {name} {device}"}
        rate_axis.plot(sizes, [g.median("samples_per_second") for _, g in line], **style)
        accuracy_axis.plot(sizes, [statistics.fmean(g.accuracy) * 100 for _, g in line], **style)
    all_sizes = sorted({size for line in lines.values() for size, _ in line})
    for axis, ylabel in ((rate_axis, "training samples per second"), (accuracy_axis, "test accuracy (%)")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(all_sizes, [str(size) for size in all_sizes])
        axis.set_xlabel("batch size")
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3, which="both")
        legend(axis, fontsize=8)
    rate_axis.set_title("Throughput by batch size (steady epochs, median over rounds; dashed: GPU)")
    accuracy_axis.set_title("Test accuracy by batch size")
    figure.tight_layout()
    figure.savefig(out_dir / "batch_sweep.png", dpi=110)
    plt.close(figure)
    return ["batch_sweep.png"]


def write_step_cost_plot(rows: list[Row], out_dir: Path) -> list[str]:
    """Per model: every run's time per step against its batch size, and the fitted fixed + per-sample line."""
    by_model = {section[0].model_title: [cost for cost in step_costs(section) if cost.fit]
                for section in model_sections(rows)}
    by_model = {model: costs for model, costs in by_model.items() if costs}
    if not by_model:
        return []
    plt = _pyplot()

    figure, axes = plt.subplots(1, len(by_model), figsize=(6.5 * len(by_model), 4.8), squeeze=False)
    for axis, (model, costs) in zip(axes[0], by_model.items()):
        for cost, (colour, marker) in zip(costs, line_styles([cost.backend for cost in costs])):
            medians = cost.medians()
            sizes = list(medians)
            axis.scatter([size for size, _ in cost.points], [seconds * 1e3 for _, seconds in cost.points],
                         color=colour, marker=marker, s=14, alpha=0.7)
            fitted = cost.fit.fits  # where the points bend away from a line, they are joined instead
            axis.plot(sizes, [(cost.fit.fixed + cost.fit.per_unit * size if fitted else medians[size]) * 1e3
                              for size in sizes],
                      color=colour, linestyle="--" if "native" in cost.name else "-",
                      label=f"{cost.name} {cost.device}: " + (f"{cost.fit.fixed * 1e6:,.0f} µs + "
                                                              f"{cost.fit.per_unit * 1e6:,.1f} µs × batch"
                                                              if fitted else "not a line (medians joined)"))
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("batch size")
        axis.set_ylabel("milliseconds per training step")
        axis.set_title(f"{model}: time per step (dots: runs; lines: fixed + per sample × batch)", fontsize=10)
        axis.grid(alpha=0.3, which="both")
        legend(axis, fontsize=7)
    figure.tight_layout()
    figure.savefig(out_dir / "step_costs.png", dpi=110)
    plt.close(figure)
    return ["step_costs.png"]


def write_plots(rows: list[Row], out_dir: Path) -> list[str]:
    """Draws the plots that have data; returns the file names written."""
    import matplotlib.ticker

    plt = _pyplot()

    finished = [g for g in rows if g.runs]
    if not finished:
        return []
    written = []
    sections = model_sections(finished)
    multi_machine = len({g.machine for g in finished}) > 1

    def label(g: Row) -> str:
        return f"{g.device}" + (f"\n{g.machine.split(' (')[0]}" if multi_machine else "")

    def bars(filename: str, value, error, xlabel: str, title: str, left: float = 0.0,
             right: float | None = None) -> None:
        """One horizontal bar per row of the report's tables (backend, settings, device), coloured by
        backend, hatched for native loops: readable with three rows or thirty."""
        height = 1.6 + 0.32 * max(len(model_rows) for model_rows in sections)
        figure, axes = plt.subplots(1, len(sections), figsize=(7 * len(sections), height), squeeze=False)
        for axis, model_rows in zip(axes[0], sections):
            positions = range(len(model_rows))
            drawn = axis.barh(positions, [value(g) for g in model_rows],
                              xerr=list(zip(*[error(g) for g in model_rows])), capsize=3,
                              color=[BACKEND_COLOURS[g.backend] for g in model_rows],
                              hatch=["//" if g.native else "" for g in model_rows])
            axis.bar_label(drawn, fmt="%.3g", fontsize=8, padding=3)
            axis.set_yticks(list(positions), [f"{g.name}, {label(g)}".replace("\n", " ") for g in model_rows],
                            fontsize=8)
            axis.invert_yaxis()
            axis.set_xlim(left=left, right=right)
            axis.set_title(model_rows[0].model_title)
            axis.set_xlabel(xlabel)
            axis.grid(axis="x", alpha=0.3)
        figure.suptitle(title)
        figure.tight_layout()
        figure.savefig(out_dir / filename, dpi=110)
        plt.close(figure)
        written.append(filename)

    def steady_error(g: Row) -> tuple[float, float]:
        median = statistics.median(g.steady) if g.steady else 0
        return (median - min(g.steady, default=0), max(g.steady, default=0) - median)

    if any(g.steady for g in finished):
        bars("steady_epoch_seconds.png", lambda g: statistics.median(g.steady) if g.steady else 0,
             steady_error, "steady epoch time (s), lower is faster",
             "Steady-state epoch time (median, bars: min–max over the row's runs, as in the report's tables; "
             "hatched: native loops)")

    def accuracy_error(g: Row) -> tuple[float, float]:
        sd = statistics.stdev(g.accuracy) * 100 if len(g.accuracy) > 1 else 0
        return (sd, sd)

    # Accuracies sit close together near 100%: bars drawn from zero would all look the same.
    lowest = min(statistics.fmean(g.accuracy) * 100 - accuracy_error(g)[0] for g in finished)
    bars("test_accuracy.png", lambda g: statistics.fmean(g.accuracy) * 100, accuracy_error,
         "test accuracy (%)", "Test accuracy (mean, bars: ±1 sd over rounds; hatched: native loops)",
         left=max(0.0, lowest - 2), right=100.0)

    # Learning curves, where some run held out a validation split (quick's hold none: there is no curve to draw).
    curved_sections = [(model_rows, [g for g in model_rows if g.runs[0].history.get("val_accuracy")])
                       for model_rows in sections]
    if any(curved for _, curved in curved_sections):
        figure, axes = plt.subplots(1, len(sections), figsize=(6 * len(sections), 4.2), squeeze=False)
        for axis, (model_rows, curved) in zip(axes[0], curved_sections):
            most_epochs = 1
            for g, (colour, marker) in zip(curved, line_styles([g.backend for g in curved])):
                curves = [run.history["val_accuracy"] for run in g.runs]
                epochs = min(len(curve) for curve in curves)
                most_epochs = max(most_epochs, epochs)
                mean = [statistics.fmean(curve[i] for curve in curves) * 100 for i in range(epochs)]
                axis.plot(range(1, epochs + 1), mean, color=colour, marker=marker,
                          linestyle="-" if g.device == "cpu" else "--", label=f"{g.name} {label(g)}".replace("\n", " "))
            axis.set_title(model_rows[0].model_title)
            axis.set_xlim(0.5, most_epochs + 0.5)  # whole epochs, and one epoch a point in the middle, not 0.95-1.05
            axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            axis.set_xlabel("epoch")
            axis.set_ylabel("validation accuracy (%)")
            axis.grid(alpha=0.3)
            legend(axis)  # none in a panel whose runs held out no validation split
        figure.suptitle("Learning curves (mean over rounds; dashed: GPU)")
        figure.tight_layout()
        figure.savefig(out_dir / "learning_curves.png", dpi=110)
        plt.close(figure)
        written.append("learning_curves.png")

    gains = [(row, gpu_speedup(row, rows)) for row in finished]
    gains = [(row, gain) for row, gain in gains if gain]
    if gains:
        figure, axis = plt.subplots(figsize=(7, 4.2))
        names = [f"{row.model_title}\n{row.name}" for row, _ in gains]
        drawn = axis.bar(names, [gain.estimate for _, gain in gains],
                         yerr=list(zip(*interval_errors([gain for _, gain in gains]))), capsize=3,
                         color=[BACKEND_COLOURS[row.backend] for row, _ in gains])
        axis.bar_label(drawn, fmt="%.1f×", fontsize=8)
        axis.axhline(1, color="black", linewidth=0.8)
        axis.set_ylabel("CPU steady epoch time / GPU steady epoch time")
        axis.set_title("GPU speed-up over CPU\n(bars: 95% interval over rounds; above 1: the GPU is faster)", fontsize=10)
        figure.tight_layout()
        figure.savefig(out_dir / "gpu_speedup.png", dpi=110)
        plt.close(figure)
        written.append("gpu_speedup.png")
    return written
