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
    "matmul_seconds.png": "Matrix multiply time by size",
    "steady_epoch_seconds.png": "Steady-state epoch time",
    "test_accuracy.png": "Test accuracy",
    "learning_curves.png": "Validation accuracy by epoch",
    "gpu_speedup.png": "GPU speed-up over CPU",
    "batch_sweep.png": "Throughput and accuracy by batch size",
}
# The performance goal: Keras at its best within 10% of the framework's own loop, learning as well.
GOAL_RATIO, GOAL_ACCURACY_POINTS = 0.9, 0.3
BACKEND_COLOURS = {"tensorflow": "tab:orange", "torch": "tab:red", "jax": "tab:blue"}
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
    variant: str  # settings that change what is computed: precision, data-parallel device count
    runs: list[dict[str, Any]] = field(default_factory=list)  # the ok cells' run records
    others: list[dict[str, Any]] = field(default_factory=list)  # skipped and failed cells

    @property
    def name(self) -> str:
        return f"{self.backend} {self.variant}".strip()

    @property
    def profiled(self) -> bool:
        """cProfile slows Python-heavy runs: their times are not compared with anything else."""
        return bool(self.runs) and bool(self.runs[0]["config"].get("profile"))

    @property
    def steady(self) -> list[float]:
        return [run["steady_epoch_seconds"] for run in self.runs if run["steady_epoch_seconds"] is not None]

    def median(self, key: str) -> float | None:
        values = [run[key] for run in self.runs if run.get(key) is not None]  # older records may lack a key
        return statistics.median(values) if values else None

    @property
    def time_to_accuracy(self) -> str:
        reached = [run["time_to_accuracy"] for run in self.runs if run.get("time_to_accuracy")]
        if not reached:
            return "–"
        seconds = [t["seconds"] for t in reached if t["seconds"] is not None]
        target = f"{reached[0]['target']:.0%}"
        if not seconds:
            return f"{target} not reached"
        missed = len(reached) - len(seconds)
        return f"{target}: {_spread(seconds, 1)} s" + (f" ({missed} runs missed it)" if missed else "")

    @property
    def accuracy(self) -> list[float]:
        return [run["test_accuracy"] for run in self.runs]

    @property
    def accuracy_text(self) -> str:
        seeds = {run["config"]["seed"] for run in self.runs}
        same_seed = len(self.runs) > 1 and len(seeds) == 1
        return _accuracy(self.accuracy) + (" (one seed: no spread to see)" if same_seed else "")


def gather(results_dirs: list[Path]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """The training cells and the benchmark entries of every folder, and the lines ignored."""
    from kerasmnist.bench import BENCH_FILE, BENCH_KIND

    entries, bench_entries, ignored = [], [], []
    for folder in results_dirs:
        found_any = False
        for name, kind, target in ((records.RESULTS_FILE, records.CELL_KIND, entries),
                                   (BENCH_FILE, BENCH_KIND, bench_entries)):
            if (folder / name).is_file():
                found, skipped_lines = records.read_results(folder / name, kind)
                target += found
                ignored += skipped_lines
                found_any = True
        if not found_any:
            raise DataError(f"{folder} holds no {records.RESULTS_FILE} or {BENCH_FILE}: "
                            f"run kerasmnist compare --out {folder} first")
    return entries, bench_entries, ignored


def machine_of(entry: dict[str, Any]) -> str:
    host = entry.get("host") or {}
    return f"{host.get('cpu_model', 'unknown CPU')}, {host.get('logical_cores', '?')} cores ({host.get('hostname', '?')})"


def variant_of(config: dict[str, Any]) -> str:
    parts = ["native"] if config.get("implementation") == "native" else []
    parts += [] if config.get("precision", "float32") == "float32" else [config["precision"]]
    parts += [] if config.get("jit_compile", "auto") == "auto" else [f"jit_compile={config['jit_compile']}"]
    parts += [] if config.get("steps_per_execution", 1) == 1 else [f"steps_per_execution={config['steps_per_execution']}"]
    parts += [] if config.get("data_format", "channels_last") == "channels_last" else [config["data_format"]]
    parts += [] if config.get("input_pipeline", "numpy") == "numpy" else [f"input {config['input_pipeline']}"]
    parts += [] if config.get("cpu_threads") is None else [f"{config['cpu_threads']} CPU threads"]
    parts += [] if config.get("batch_size", 128) == 128 else [f"batch {config['batch_size']}"]
    parts += ["profiled"] if config.get("profile") else []
    if config.get("data_parallel"):
        parts.append("data-parallel" + (f" over {config['cpu_devices']} CPU devices" if config["device"] == "cpu" else ""))
    return ", ".join(parts)


def group(entries: list[dict[str, Any]]) -> list[Group]:
    groups: dict[tuple[str, str, str, str, str], Group] = {}
    for entry in sorted(entries, key=lambda e: e["order"]):
        key = (machine_of(entry), entry["model"], entry["backend"], entry["device"], variant_of(entry["config"]))
        target = groups.setdefault(key, Group(*key))
        (target.runs if entry["status"] == "ok" else target.others).append(
            entry["record"] if entry["status"] == "ok" else entry)

    def rank(g: Group) -> tuple:
        batch_size = (g.runs or g.others)[0]["config"]["batch_size"]  # 64 before 128 before 1024
        return (g.machine, MODELS.index(g.model), DEVICES.index(g.device), BACKENDS.index(g.backend), batch_size,
                g.variant)

    return sorted(groups.values(), key=rank)


def build(results_dirs: list[Path], out_dir: Path) -> Path:
    """Writes report.md, the plots and results.csv to `out_dir`; returns the report's path."""
    entries, bench_entries, ignored = gather(results_dirs)
    groups = group(entries)
    records.ensure_writable(out_dir)
    (out_dir / "results.csv").write_text(results_csv(entries), encoding="utf-8")
    plotted = write_plots(groups, out_dir) + write_matmul_plot(bench_entries, out_dir) + write_sweep_plot(groups, out_dir)
    markdown = render(entries, groups, ignored, plotted, results_dirs, bench_entries, inventory_section(results_dirs))
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
    by_cell = {(g.machine, g.model, g.name, g.device): g.median("steady_epoch_seconds") for g in groups}
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
        if seconds and not g.profiled:
            key = (g.machine, g.model, g.device)
            best[key] = min(best.get(key, seconds), seconds)
    return best


def peaks(bench_entries: list[dict[str, Any]]) -> dict[tuple[str, str, str], float]:
    """(machine, backend, device) -> the best matmul GFLOP/s measured there."""
    best: dict[tuple[str, str, str], float] = {}
    for entry in bench_entries:
        rates = [row["gflops_per_second"] for row in entry["rows"] if row.get("gflops_per_second")]
        if entry["status"] == "ok" and rates:
            key = (machine_of(entry), entry["backend"], entry["device"])
            best[key] = max(best.get(key, 0.0), *rates)
    return best


def _gflops(achieved: float | None, peak: float | None) -> str:
    if achieved is None:
        return "–"
    return f"{achieved:.1f}" + (f" ({achieved / peak:.0%})" if peak else "")


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
           results_dirs: list[Path], bench_entries: list[dict[str, Any]], inventory: str = "") -> str:
    counts = {status: sum(e["status"] == status for e in entries) for status in ("ok", "skipped", "failed")}
    several_machines = len({g.machine for g in groups}) > 1

    def row(*cells: str) -> str:
        """A table row; the machine column only appears when several machines' results are merged."""
        return "| " + " | ".join(cells if several_machines else cells[1:]) + " |"

    # In the order they ran: a folder is often filled by several commands.
    commands = list(dict.fromkeys(command for _, command in sorted(
        [(e["finished_at"], e["command"]) for e in entries if e.get("command")]
        + [(e.get("started_at", ""), e["command"]) for e in bench_entries if e.get("command")])))
    best, gains, peak_rates = fastest(groups), speedups(groups), peaks(bench_entries)
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
        *([inventory] if inventory else []),
        "## Environment",
        "",
        *environment_table([{"host": e["host"], **e["record"]} for e in entries if e["record"]]
                           + [e for e in bench_entries if e.get("environment")]),
        "",
        "Times are wall-clock seconds of the training steps of one epoch (validation excluded), "
        "device synchronised at epoch boundaries; *steady* is the median over epochs 2 and later, "
        "then the median (min–max) over repeats. *vs fastest* divides by the fastest backend's "
        "steady time on the same device and machine (1.00× is fastest). *GFLOP/s* counts the Conv2D and Dense "
        "layers' training FLOPs (forward and backward) per second; in brackets, its share of the best matrix-multiply "
        "rate that backend reached on that device (Matrix multiply, below), where one was measured.",
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
                "GFLOP/s (of matmul peak)", "test accuracy", "time to accuracy", "vs fastest", "GPU speed-up"),
            row(*["---"] * 12),
        ]
        for g in model_groups:
            steady = g.median("steady_epoch_seconds")
            fastest_seconds = best.get((g.machine, g.model, g.device))
            gain = gains.get((g.machine, g.model, g.name)) if g.device == "gpu" else None
            status = f"{len(g.runs)} ok" + "".join(f", {len([o for o in g.others if o['status'] == s])} {s}"
                                                    for s in ("skipped", "failed")
                                                    if any(o["status"] == s for o in g.others))
            rate = g.median("samples_per_second")
            first_epoch = [run["first_epoch_seconds"] for run in g.runs]
            lines.append(row(
                g.machine, g.name, g.device, status, _spread(g.steady), _spread(first_epoch),
                "–" if rate is None else f"{rate:,.0f}",
                _gflops(g.median("achieved_gflops_per_second"), peak_rates.get((g.machine, g.backend, g.device))),
                g.accuracy_text, g.time_to_accuracy,
                f"{steady / fastest_seconds:.2f}×" if steady and fastest_seconds and not g.profiled else "–",
                f"{gain:.1f}×" if gain else "–"))
        lines += ["", *verdicts(model_groups, best), *keras_versus_native(model_groups), *sweep_verdicts(model_groups),
                  *where_the_time_goes(model_groups)]
    lines += matmul_section(bench_entries)
    lines += ["", "## Plots", ""]
    if plotted:
        lines += [f"![{PLOTS[name]}]({name})" for name in plotted]
    else:
        lines.append("No finished cells to plot.")
    if entries and "gpu_speedup.png" not in plotted:
        lines += ["", "No backend has both CPU and GPU results here, so there is no GPU speed-up plot."]
    problems = [(f"{e['backend']} {e['device']} {e['model']} repeat {e['repeat'] + 1}", e)
                for e in sorted(entries, key=lambda e: e["order"]) if e["status"] != "ok"]
    problems += [(f"matmul {e['backend']} {e['device']}", e) for e in bench_entries if e["status"] != "ok"]
    lines += ["", "## Skipped and failed cells", ""]
    if problems:
        lines += ["| cell | status | reason |", "| --- | --- | --- |"]
        lines += [f"| {name} | {e['status']} | {(e['reason'] or '').replace('|', '/')} |" for name, e in problems]
    else:
        lines.append("None.")
    if ignored:
        lines += ["", "## Ignored lines", "", *[f"- {line}" for line in ignored]]
    if entries:
        lines += ["", "Per-cell figures: [results.csv](results.csv).", ""]
    return "\n".join(lines)


def inventory_section(results_dirs: list[Path]) -> str:
    """What `kerasmnist env --out DIR` saw on each machine, where it was saved."""
    import json

    from kerasmnist.inventory import INVENTORY_FILE, render as render_inventory

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


def matmul_section(bench_entries: list[dict[str, Any]]) -> list[str]:
    """Seconds and GFLOP/s per size for each backend and device, and where the GPU starts to win."""
    from kerasmnist.bench import crossover

    measured = sorted((e for e in bench_entries if e["status"] == "ok"),
                      key=lambda e: (machine_of(e), BACKENDS.index(e["backend"]), DEVICES.index(e["device"])))
    if not measured:
        return []
    sizes = sorted({row["size"] for e in measured for row in e["rows"] if row["operation"] == "matmul"})
    lines = ["", "## Matrix multiply", "",
             "Median seconds of one synchronised call (warm-up excluded), and GFLOP/s (2N³ per N×N product).", "",
             "| backend | device | scalar multiply | " + " | ".join(f"{n}×{n}" for n in sizes) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in sizes) + " |"]
    for entry in measured:
        by_size = {row["size"]: row for row in entry["rows"] if row["operation"] == "matmul"}
        scalar = next(row for row in entry["rows"] if row["operation"] == "scalar multiply")
        cells = []
        for size in sizes:
            row = by_size.get(size)
            if row is None:
                cells.append("–")
            elif "error" in row:
                cells.append(f"not run: {row['error'].replace('|', '/')}")
            else:
                rate = f", {row['gflops_per_second']:.3g} GFLOP/s" if row["gflops_per_second"] else ""
                cells.append(f"{_seconds(row['median_seconds'])}{rate}")
        device = entry["device"] if entry["resolved_device"] == "cpu" else f"{entry['device']} ({entry['resolved_device']})"
        lines.append(f"| {entry['backend']} | {device} "
                     f"| {_seconds(scalar['median_seconds'])} | " + " | ".join(cells) + " |")
    for backend in BACKENDS:
        pair = {e["device"]: e for e in measured if e["backend"] == backend}
        if {"cpu", "gpu"} <= set(pair):
            size = crossover(pair["cpu"]["rows"], pair["gpu"]["rows"])
            lines.append(f"- {backend}: the GPU is faster " + (f"from {size}×{size} on." if size else "at no measured size."))
    if not any({"cpu", "gpu"} <= {e["device"] for e in measured if e["backend"] == b} for b in BACKENDS):
        lines.append("- No backend was measured on both a CPU and a GPU here, so there is no crossover size.")
    return lines


def _seconds(value: float) -> str:
    return f"{value * 1e6:.0f} µs" if value < 1e-3 else (f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s")


def write_matmul_plot(bench_entries: list[dict[str, Any]], out_dir: Path) -> list[str]:
    measured = [e for e in bench_entries if e["status"] == "ok"]
    if not measured:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.5, 4.8))
    for entry in measured:
        rows = [row for row in entry["rows"] if row["operation"] == "matmul" and "error" not in row]
        axis.plot([row["size"] for row in rows], [row["median_seconds"] for row in rows], marker="o",
                  linestyle="-" if entry["device"] == "cpu" else "--", label=f"{entry['backend']} {entry['device']}")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("matrix size N (N×N times N×N, float32)")
    axis.set_ylabel("seconds per product (median)")
    axis.set_title("Matrix multiply: time against size (solid: CPU, dashed: GPU)")
    axis.grid(alpha=0.3, which="both")
    axis.legend()
    figure.tight_layout()
    figure.savefig(out_dir / "matmul_seconds.png", dpi=110)
    plt.close(figure)
    return ["matmul_seconds.png"]


def verdicts(model_groups: list[Group], best: dict[tuple[str, str, str], float]) -> list[str]:
    """One sentence per machine and device: which backend is fastest, and by how much."""
    sentences = []
    model = model_groups[0].model
    for (machine, best_model, device), seconds in sorted(best.items()):
        if best_model != model:
            continue
        ranked = sorted((g.median("steady_epoch_seconds"), g.name) for g in model_groups
                        if (g.machine, g.device) == (machine, device) and g.median("steady_epoch_seconds")
                        and not g.profiled)
        others = ", ".join(f"{backend} {time / seconds:.2f}× slower" for time, backend in ranked[1:])
        sentences.append(f"- Fastest on {device} ({machine}): **{ranked[0][1]}**" + (f"; {others}." if others else "."))
    return sentences


def sweeps(model_groups: list[Group]) -> dict[tuple[str, str, str], list[tuple[int, Group]]]:
    """(machine, backend + other settings, device) -> its groups by batch size, where several were run."""
    by_line: dict[tuple[str, str, str], list[tuple[int, Group]]] = defaultdict(list)
    for g in model_groups:
        if g.runs:
            rest = ", ".join(part for part in g.variant.split(", ") if part and not part.startswith("batch "))
            by_line[(g.machine, f"{g.backend} {rest}".strip(), g.device)].append((g.runs[0]["config"]["batch_size"], g))
    return {key: sorted(line, key=lambda item: item[0]) for key, line in by_line.items() if len(line) > 1}


def sweep_verdicts(model_groups: list[Group], gain_worth_having: float = 1.10) -> list[str]:
    """Where doubling the batch stops paying: the usual advice is to double until it stops getting faster."""
    sentences = []
    for (machine, name, device), line in sweeps(model_groups).items():
        rates = [(size, g.median("samples_per_second") or 0) for size, g in line]
        best_size = rates[0][0]
        for (size, rate), (next_size, next_rate) in zip(rates, rates[1:]):
            if next_rate < rate * gain_worth_having:
                break
            best_size = next_size
        sentences.append(f"- {name} on {device}: throughput grows at least 10% per step up to batch {best_size}; "
                         + ", ".join(f"{size}: {rate:,.0f}/s" for size, rate in rates) + ".")
    return ["", "Batch-size sweep:", "", *sentences] if sentences else []


def write_sweep_plot(groups: list[Group], out_dir: Path) -> list[str]:
    lines = {(model, *key): line for model in MODELS for key, line in sweeps([g for g in groups if g.model == model]).items()}
    if not lines:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rate_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    for (model, machine, name, device), line in lines.items():
        sizes = [size for size, _ in line]
        label = f"{model} {name} {device}"
        rate_axis.plot(sizes, [g.median("samples_per_second") for _, g in line], marker="o", label=label)
        accuracy_axis.plot(sizes, [statistics.fmean(g.accuracy) * 100 for _, g in line], marker="o", label=label)
    all_sizes = sorted({size for line in lines.values() for size, _ in line})
    for axis, ylabel in ((rate_axis, "training samples per second"), (accuracy_axis, "test accuracy (%)")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(all_sizes, [str(size) for size in all_sizes])
        axis.set_xlabel("batch size")
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3, which="both")
        axis.legend(fontsize=8)
    rate_axis.set_title("Throughput by batch size (steady epochs)")
    accuracy_axis.set_title("Test accuracy by batch size")
    figure.tight_layout()
    figure.savefig(out_dir / "batch_sweep.png", dpi=110)
    plt.close(figure)
    return ["batch_sweep.png"]


def keras_versus_native(model_groups: list[Group]) -> list[str]:
    """For each backend and device run both ways: Keras's throughput as a share of the native loop's."""
    def twin_key(g: Group) -> tuple:
        config = g.runs[0]["config"]
        return g.machine, g.backend, g.device, config["batch_size"], config.get("cpu_threads"), config.get("profile")

    finished = [g for g in model_groups if g.runs]
    native = {twin_key(g): g for g in finished if g.runs[0]["config"].get("implementation") == "native"}
    rows, best = [], {}
    for g in finished:
        config = g.runs[0]["config"]
        twin = native.get(twin_key(g))
        if (config.get("implementation") == "native" or config.get("precision", "float32") != "float32"
                or config.get("data_parallel") or not twin):
            continue
        keras_rate, native_rate = g.median("samples_per_second"), twin.median("samples_per_second")
        if not keras_rate or not native_rate:
            continue
        ratio = keras_rate / native_rate
        difference = (statistics.fmean(g.accuracy) - statistics.fmean(twin.accuracy)) * 100
        rows.append(f"| {g.name} | {g.device} | {keras_rate:,.0f} | {native_rate:,.0f} | "
                    f"{ratio:.2f}× | {difference:+.2f} points |")
        pair = (g.machine, g.backend, g.device)
        if not g.profiled and ratio > best.get(pair, (0.0,))[0]:
            best[pair] = (ratio, difference, g.variant or "Keras's defaults")
    if not rows:
        return []
    verdicts = [f"- {backend} on {device}: the fastest Keras run ({settings}) reaches {ratio:.2f}× the native loop's "
                f"throughput, test accuracy {difference:+.2f} points: "
                + ("meets" if ratio >= GOAL_RATIO and abs(difference) <= GOAL_ACCURACY_POINTS else "misses")
                + f" the goal of {GOAL_RATIO}× and {GOAL_ACCURACY_POINTS} points."
                for (_, backend, device), (ratio, difference, settings) in best.items()]
    return ["", "Keras against the framework's own loop with the same batch size (throughput ratio above 1: "
                "Keras is faster; medians over repeats):", "",
            "| Keras run | device | Keras samples/s | native samples/s | Keras / native | test accuracy, Keras − native |",
            "| --- | --- | --- | --- | --- | --- |", *rows, "", *verdicts]


def where_the_time_goes(model_groups: list[Group]) -> list[str]:
    """The profiled runs' self time by owner, and their costliest functions (see kerasmnist/profiling.py)."""
    from kerasmnist.profiling import OWNERS

    profiled = [(g, g.runs[0]["profile"]) for g in model_groups if g.runs and g.runs[0].get("profile")]
    if not profiled:
        return []
    lines = ["", "Where the time goes (cProfile over the training steps of epochs 2 on, first run of each row; "
                 "self time by owner. A jitted JAX step is invisible to cProfile and counts as the self time of "
                 "the line that calls it):", "",
             "| run | device | profiled s | " + " | ".join(OWNERS) + " | costliest functions (self s) |",
             "| --- | --- | --- | " + " | ".join("---" for _ in OWNERS) + " | --- |"]
    for g, profile in profiled:
        total = profile["profiled_seconds"] or 1.0
        shares = " | ".join(f"{profile['seconds_by_owner'][name] / total:.0%}" for name in OWNERS)
        costliest = "; ".join(f"`{f['function']}` {f['self_seconds']:.2f}" for f in profile["top_functions"][:3])
        lines.append(f"| {g.name} | {g.device} | {profile['profiled_seconds']:.2f} | {shares} | {costliest} |")
    return lines


def environment_table(sources: list[dict[str, Any]]) -> list[str]:
    """One row per machine, from anything with `host`, `environment` and `started_at` (records, bench entries)."""
    rows = {}
    for source in sources:
        environment = source["environment"]
        packages = environment["packages"]
        gpus = ", ".join(f"{g['name']} (driver {g['driver']}, {g['memory']})" for g in environment["gpus"]) or "none"
        memory = environment["host"]["memory_bytes"]
        key = machine_of(source)
        dates = rows.get(key, {}).get("dates", set()) | {source["started_at"][:10]}
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

    def bars(filename: str, value, error, xlabel: str, title: str, left: float = 0.0,
             right: float | None = None) -> None:
        """One horizontal bar per row of the report's tables (backend, settings, device), coloured by
        backend, hatched for native loops: readable with three rows or thirty."""
        per_model = [[g for g in finished if g.model == model] for model in models]
        height = 1.6 + 0.32 * max(len(model_groups) for model_groups in per_model)
        figure, axes = plt.subplots(1, len(models), figsize=(7 * len(models), height), squeeze=False)
        for axis, model, model_groups in zip(axes[0], models, per_model):
            positions = range(len(model_groups))
            drawn = axis.barh(positions, [value(g) for g in model_groups],
                              xerr=list(zip(*[error(g) for g in model_groups])), capsize=3,
                              color=[BACKEND_COLOURS[g.backend] for g in model_groups],
                              hatch=["//" if "native" in g.variant else "" for g in model_groups])
            axis.bar_label(drawn, fmt="%.3g", fontsize=8, padding=3)
            axis.set_yticks(list(positions), [f"{g.name}, {label(g)}".replace("\n", " ") for g in model_groups],
                            fontsize=8)
            axis.invert_yaxis()
            axis.set_xlim(left=left, right=right)
            axis.set_title(model)
            axis.set_xlabel(xlabel)
            axis.grid(axis="x", alpha=0.3)
        figure.suptitle(title)
        figure.tight_layout()
        figure.savefig(out_dir / filename, dpi=110)
        plt.close(figure)
        written.append(filename)

    def steady_error(g: Group) -> tuple[float, float]:
        median = statistics.median(g.steady) if g.steady else 0
        return (median - min(g.steady, default=0), max(g.steady, default=0) - median)

    if any(g.steady for g in finished):
        bars("steady_epoch_seconds.png", lambda g: statistics.median(g.steady) if g.steady else 0,
             steady_error, "steady epoch time (s), lower is faster",
             "Steady-state epoch time (median, bars: min–max over repeats; hatched: native loops)")

    def accuracy_error(g: Group) -> tuple[float, float]:
        sd = statistics.stdev(g.accuracy) * 100 if len(g.accuracy) > 1 else 0
        return (sd, sd)

    # Accuracies sit close together near 100%: bars drawn from zero would all look the same.
    lowest = min(statistics.fmean(g.accuracy) * 100 - accuracy_error(g)[0] for g in finished)
    bars("test_accuracy.png", lambda g: statistics.fmean(g.accuracy) * 100, accuracy_error,
         "test accuracy (%)", "Test accuracy (mean, bars: ±1 sd over repeats; hatched: native loops)",
         left=max(0.0, lowest - 2), right=100.0)

    figure, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.2), squeeze=False)
    for axis, model in zip(axes[0], models):
        for g in (g for g in finished if g.model == model and g.runs[0]["history"].get("val_accuracy")):
            curves = [run["history"]["val_accuracy"] for run in g.runs]
            epochs = min(len(curve) for curve in curves)
            mean = [statistics.fmean(curve[i] for curve in curves) * 100 for i in range(epochs)]
            axis.plot(range(1, epochs + 1), mean, marker="o", linestyle="-" if g.device == "cpu" else "--",
                      label=f"{g.name} {label(g)}".replace("\n", " "))
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
        keys = sorted(gains, key=lambda k: (k[0], MODELS.index(k[1]), k[2]))
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
