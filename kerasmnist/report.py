"""The comparison report: a pure function of results.jsonl files (one or several machines').

    report.md   environment, one table per model, fastest backend per device, skipped and failed cells
    *.png       steady epoch time, test accuracy, learning curves, GPU/CPU speed-up
    results.csv one flat row per cell
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kerasmnist import records
from kerasmnist.config import BACKENDS, DEVICES, MODELS
from kerasmnist.errors import DataError

PLOTS = {
    "steady_epoch_seconds.png": "Steady-state epoch time",
    "test_accuracy.png": "Test accuracy",
    "learning_curves.png": "Validation accuracy by epoch",
    "gpu_speedup.png": "GPU speed-up over CPU",
}
CSV_COLUMNS = (
    "order", "repeat", "machine", "backend", "device", "model", "status", "reason", "resolved_device",
    "epochs", "batch_size", "train_size", "first_epoch_seconds", "steady_epoch_seconds", "samples_per_second",
    "test_accuracy", "test_loss", "wall_seconds", "command",
)


@dataclass
class Group:
    """All cells of one backend x device x model on one machine."""

    machine: str
    model: str
    backend: str
    device: str
    runs: list[dict[str, Any]] = field(default_factory=list)  # the ok cells' run records
    others: list[dict[str, Any]] = field(default_factory=list)  # skipped and failed cells

    @property
    def steady(self) -> list[float]:
        return [run["steady_epoch_seconds"] for run in self.runs if run["steady_epoch_seconds"] is not None]

    def median(self, key: str) -> float | None:
        values = [run[key] for run in self.runs if run[key] is not None]
        return statistics.median(values) if values else None

    @property
    def accuracy(self) -> list[float]:
        return [run["test_accuracy"] for run in self.runs]


def gather(results_dirs: list[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    entries, ignored = [], []
    for folder in results_dirs:
        path = folder / records.RESULTS_FILE
        if not path.is_file():
            raise DataError(f"{folder} holds no {records.RESULTS_FILE}: run kerasmnist compare --out {folder} first")
        found, skipped_lines = records.read_results(path)
        entries += found
        ignored += skipped_lines
    return entries, ignored


def machine_of(entry: dict[str, Any]) -> str:
    host = entry.get("host") or {}
    return f"{host.get('cpu_model', 'unknown CPU')}, {host.get('logical_cores', '?')} cores ({host.get('hostname', '?')})"


def group(entries: list[dict[str, Any]]) -> list[Group]:
    groups: dict[tuple[str, str, str, str], Group] = {}
    for entry in sorted(entries, key=lambda e: e["order"]):
        key = (machine_of(entry), entry["model"], entry["backend"], entry["device"])
        target = groups.setdefault(key, Group(*key))
        (target.runs if entry["status"] == "ok" else target.others).append(
            entry["record"] if entry["status"] == "ok" else entry)

    def rank(g: Group) -> tuple:
        return (g.machine, MODELS.index(g.model), DEVICES.index(g.device), BACKENDS.index(g.backend))

    return sorted(groups.values(), key=rank)


def build(results_dirs: list[Path], out_dir: Path) -> Path:
    """Writes report.md, the plots and results.csv to `out_dir`; returns the report's path."""
    entries, ignored = gather(results_dirs)
    groups = group(entries)
    records.ensure_writable(out_dir)
    (out_dir / "results.csv").write_text(results_csv(entries), encoding="utf-8")
    plotted = write_plots(groups, out_dir)
    markdown = render(entries, groups, ignored, plotted, results_dirs)
    report_path = out_dir / "report.md"
    records.replace_atomically(report_path, markdown)
    return report_path


def results_csv(entries: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for entry in sorted(entries, key=lambda e: (machine_of(e), e["order"])):
        record = entry["record"] or {}
        writer.writerow({
            "order": entry["order"], "repeat": entry["repeat"] + 1, "machine": machine_of(entry),
            "backend": entry["backend"], "device": entry["device"], "model": entry["model"],
            "status": entry["status"], "reason": entry["reason"] or "",
            "resolved_device": record.get("resolved_device"),
            "epochs": entry["config"]["epochs"], "batch_size": entry["config"]["batch_size"],
            "train_size": (record.get("data") or {}).get("train_size"),
            "first_epoch_seconds": record.get("first_epoch_seconds"),
            "steady_epoch_seconds": record.get("steady_epoch_seconds"),
            "samples_per_second": record.get("samples_per_second"),
            "test_accuracy": record.get("test_accuracy"), "test_loss": record.get("test_loss"),
            "wall_seconds": round(entry["wall_seconds"], 2), "command": entry.get("command", ""),
        })
    return buffer.getvalue()


def speedups(groups: list[Group]) -> dict[tuple[str, str, str], float]:
    """(machine, model, backend) -> CPU steady epoch time / GPU steady epoch time."""
    by_cell = {(g.machine, g.model, g.backend, g.device): g.median("steady_epoch_seconds") for g in groups}
    result = {}
    for (machine, model, backend, device), gpu_seconds in by_cell.items():
        cpu_seconds = by_cell.get((machine, model, backend, "cpu"))
        if device == "gpu" and gpu_seconds and cpu_seconds:
            result[(machine, model, backend)] = cpu_seconds / gpu_seconds
    return result


def fastest(groups: list[Group]) -> dict[tuple[str, str, str], float]:
    """(machine, model, device) -> the smallest median steady epoch time among the backends."""
    best: dict[tuple[str, str, str], float] = {}
    for g in groups:
        seconds = g.median("steady_epoch_seconds")
        if seconds:
            key = (g.machine, g.model, g.device)
            best[key] = min(best.get(key, seconds), seconds)
    return best


def _spread(values: list[float], digits: int = 2) -> str:
    if not values:
        return "–"
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.{digits}f}"
    return f"{median:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def _accuracy(values: list[float]) -> str:
    if not values:
        return "–"
    mean = statistics.fmean(values) * 100
    return f"{mean:.2f}%" if len(values) == 1 else f"{mean:.2f}% ± {statistics.stdev(values) * 100:.2f}"


def render(entries: list[dict[str, Any]], groups: list[Group], ignored: list[str], plotted: list[str],
           results_dirs: list[Path]) -> str:
    counts = {status: sum(e["status"] == status for e in entries) for status in ("ok", "skipped", "failed")}
    several_machines = len({g.machine for g in groups}) > 1

    def row(*cells: str) -> str:
        """A table row; the machine column only appears when several machines' results are merged."""
        return "| " + " | ".join(cells if several_machines else cells[1:]) + " |"

    commands = sorted({e.get("command", "") for e in entries if e.get("command")})
    best, gains = fastest(groups), speedups(groups)
    lines = [
        "# kerasmnist comparison report",
        "",
        f"{len(entries)} cells: {counts['ok']} ok, {counts['skipped']} skipped, {counts['failed']} failed. "
        f"Report built {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by "
        f"`kerasmnist report {' '.join(str(d) for d in results_dirs)}` from the results below.",
        "",
        "Made by:",
        "",
        *[f"    {command}" for command in commands],
        "",
        "## Environment",
        "",
        *environment_table(entries),
        "",
        "Times are wall-clock seconds of the training steps of one epoch (validation excluded), "
        "device synchronised at epoch boundaries; *steady* is the median over epochs 2 and later, "
        "then the median (min–max) over repeats. *vs fastest* divides by the fastest backend's "
        "steady time on the same device and machine (1.00× is fastest).",
    ]
    for model in MODELS:
        model_groups = [g for g in groups if g.model == model]
        if not model_groups:
            continue
        first = model_groups[0].runs[0] if any(g.runs for g in model_groups) else None
        settings = ""
        if first:
            config = first["config"]
            settings = (f" — {config['epochs']} epochs, batch {config['batch_size']}, "
                        f"{first['data']['train_size']:,} training images of {first['dataset']}")
        lines += [
            "", f"## Model `{model}`{settings}", "",
            row("machine", "backend", "device", "runs", "steady epoch s", "first epoch s", "samples/s",
                "test accuracy", "vs fastest", "GPU speed-up"),
            row(*["---"] * 10),
        ]
        for g in model_groups:
            steady = g.median("steady_epoch_seconds")
            fastest_seconds = best.get((g.machine, g.model, g.device))
            gain = gains.get((g.machine, g.model, g.backend)) if g.device == "gpu" else None
            status = f"{len(g.runs)} ok" + "".join(f", {len([o for o in g.others if o['status'] == s])} {s}"
                                                    for s in ("skipped", "failed")
                                                    if any(o["status"] == s for o in g.others))
            rate = g.median("samples_per_second")
            first_epoch = [run["first_epoch_seconds"] for run in g.runs]
            lines.append(row(
                g.machine, g.backend, g.device, status, _spread(g.steady), _spread(first_epoch),
                "–" if rate is None else f"{rate:,.0f}", _accuracy(g.accuracy),
                f"{steady / fastest_seconds:.2f}×" if steady and fastest_seconds else "–",
                f"{gain:.1f}×" if gain else "–"))
        lines += ["", *verdicts(model_groups, best)]
    lines += ["", "## Plots", ""]
    if plotted:
        lines += [f"![{PLOTS[name]}]({name})" for name in plotted]
    else:
        lines.append("No finished cells to plot.")
    if "gpu_speedup.png" not in plotted:
        lines += ["", "No backend has both CPU and GPU results here, so there is no GPU speed-up plot."]
    problems = [e for e in sorted(entries, key=lambda e: e["order"]) if e["status"] != "ok"]
    lines += ["", "## Skipped and failed cells", ""]
    if problems:
        lines += ["| cell | status | reason |", "| --- | --- | --- |"]
        lines += [f"| {e['backend']} {e['device']} {e['model']} repeat {e['repeat'] + 1} | {e['status']} "
                  f"| {(e['reason'] or '').replace('|', '/')} |" for e in problems]
    else:
        lines.append("None.")
    if ignored:
        lines += ["", "## Ignored lines", "", *[f"- {line}" for line in ignored]]
    lines += ["", "Per-cell figures: [results.csv](results.csv).", ""]
    return "\n".join(lines)


def verdicts(model_groups: list[Group], best: dict[tuple[str, str, str], float]) -> list[str]:
    """One sentence per machine and device: which backend is fastest, and by how much."""
    sentences = []
    model = model_groups[0].model
    for (machine, best_model, device), seconds in sorted(best.items()):
        if best_model != model:
            continue
        ranked = sorted((g.median("steady_epoch_seconds"), g.backend) for g in model_groups
                        if (g.machine, g.device) == (machine, device) and g.median("steady_epoch_seconds"))
        others = ", ".join(f"{backend} {time / seconds:.2f}× slower" for time, backend in ranked[1:])
        sentences.append(f"- Fastest on {device} ({machine}): **{ranked[0][1]}**" + (f"; {others}." if others else "."))
    return sentences


def environment_table(entries: list[dict[str, Any]]) -> list[str]:
    rows = {}
    for entry in entries:
        record = entry["record"]
        if not record:
            continue
        environment = record["environment"]
        packages = environment["packages"]
        gpus = ", ".join(f"{g['name']} (driver {g['driver']}, {g['memory']})" for g in environment["gpus"]) or "none"
        memory = environment["host"]["memory_bytes"]
        key = machine_of(entry)
        dates = rows.get(key, {}).get("dates", set()) | {record["started_at"][:10]}
        rows[key] = {
            "row": f"| {key} | {memory / 2**30:.0f} GiB | {gpus} | {environment['python']} | {packages['keras']} "
                   f"| {packages['tensorflow'] or '–'} | {packages['torch'] or '–'} | {packages['jax'] or '–'} ",
            "dates": dates,
        }
    if not rows:
        return ["No finished cells: nothing is known about the machines."]
    return [
        "| machine | memory | GPUs | Python | Keras | TensorFlow | torch | JAX | dates |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *[f"{row['row']}| {', '.join(sorted(row['dates']))} |" for row in rows.values()],
    ]


def write_plots(groups: list[Group], out_dir: Path) -> list[str]:
    """Draws the plots that have data; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")  # files only: works without a display
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    finished = [g for g in groups if g.runs]
    if not finished:
        return []
    written = []
    models = [m for m in MODELS if any(g.model == m for g in finished)]
    multi_machine = len({g.machine for g in finished}) > 1

    def label(g: Group) -> str:
        return f"{g.device}" + (f"\n{g.machine.split(' (')[0]}" if multi_machine else "")

    def grouped_bars(filename: str, value, error, ylabel: str, title: str, bottom: float = 0.0) -> None:
        figure, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.2), squeeze=False)
        for axis, model in zip(axes[0], models):
            model_groups = [g for g in finished if g.model == model]
            slots = list(dict.fromkeys(label(g) for g in model_groups))
            width = 0.8 / len(BACKENDS)
            for offset, backend in enumerate(BACKENDS):
                cells = {label(g): g for g in model_groups if g.backend == backend}
                xs = [i + (offset - 1) * width for i, slot in enumerate(slots) if slot in cells]
                ys = [value(cells[slot]) for slot in slots if slot in cells]
                errors = [error(cells[slot]) for slot in slots if slot in cells]
                if xs:
                    bars = axis.bar(xs, ys, width, label=backend,
                                    yerr=list(zip(*errors)) if errors else None, capsize=3)
                    axis.bar_label(bars, fmt="%.3g", fontsize=8, padding=2)
            axis.set_xticks(range(len(slots)), slots)
            axis.set_ylim(bottom=bottom)
            axis.set_title(f"{model}")
            axis.set_ylabel(ylabel)
            axis.legend(title="backend")
            axis.grid(axis="y", alpha=0.3)
        figure.suptitle(title)
        figure.tight_layout()
        figure.savefig(out_dir / filename, dpi=110)
        plt.close(figure)
        written.append(filename)

    def steady_error(g: Group) -> tuple[float, float]:
        median = statistics.median(g.steady) if g.steady else 0
        return (median - min(g.steady, default=0), max(g.steady, default=0) - median)

    if any(g.steady for g in finished):
        grouped_bars("steady_epoch_seconds.png", lambda g: statistics.median(g.steady) if g.steady else 0,
                     steady_error, "steady epoch time (s), lower is faster",
                     "Steady-state epoch time (median, bars: min–max over repeats)")

    def accuracy_error(g: Group) -> tuple[float, float]:
        sd = statistics.stdev(g.accuracy) * 100 if len(g.accuracy) > 1 else 0
        return (sd, sd)

    # Accuracies sit close together near 100%: bars drawn from zero would all look the same.
    lowest = min(statistics.fmean(g.accuracy) * 100 - accuracy_error(g)[0] for g in finished)
    grouped_bars("test_accuracy.png", lambda g: statistics.fmean(g.accuracy) * 100, accuracy_error,
                 "test accuracy (%)", "Test accuracy (mean, bars: ±1 sd over repeats)",
                 bottom=max(0.0, lowest - 2))

    figure, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.2), squeeze=False)
    for axis, model in zip(axes[0], models):
        for g in (g for g in finished if g.model == model and g.runs[0]["history"].get("val_accuracy")):
            curves = [run["history"]["val_accuracy"] for run in g.runs]
            epochs = min(len(curve) for curve in curves)
            mean = [statistics.fmean(curve[i] for curve in curves) * 100 for i in range(epochs)]
            axis.plot(range(1, epochs + 1), mean, marker="o", linestyle="-" if g.device == "cpu" else "--",
                      label=f"{g.backend} {label(g)}".replace("\n", " "))
        axis.set_title(model)
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axis.set_xlabel("epoch")
        axis.set_ylabel("validation accuracy (%)")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle("Learning curves (mean over repeats)")
    figure.tight_layout()
    figure.savefig(out_dir / "learning_curves.png", dpi=110)
    plt.close(figure)
    written.append("learning_curves.png")

    gains = speedups(groups)
    if gains:
        figure, axis = plt.subplots(figsize=(7, 4.2))
        keys = sorted(gains, key=lambda k: (k[0], MODELS.index(k[1]), BACKENDS.index(k[2])))
        names = [f"{model}\n{backend}" for _, model, backend in keys]
        bars = axis.bar(names, [gains[k] for k in keys], color="tab:green")
        axis.bar_label(bars, fmt="%.1f×", fontsize=8)
        axis.axhline(1, color="black", linewidth=0.8)
        axis.set_ylabel("CPU steady epoch time / GPU steady epoch time")
        axis.set_title("GPU speed-up over CPU (above 1: the GPU is faster)")
        figure.tight_layout()
        figure.savefig(out_dir / "gpu_speedup.png", dpi=110)
        plt.close(figure)
        written.append("gpu_speedup.png")
    return written
