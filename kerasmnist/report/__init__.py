"""The comparison report: a pure function of results files (one or several machines').

Along the data's way, a module each:

    load.py      read results.jsonl and bench.jsonl; group cells into rows by their config fields
    stats.py     ratios paired by round, with intervals; when an order may be stated
    analysis.py  fastest rows, GPU speed-ups, Keras against native, goal verdicts, noise flags, GEMM peaks
    headline.py  which backend for which model: the fastest per model and device, every other row against it
    markdown.py  report.md
    plots.py     the PNG plots
    tables.py    results.csv (one line per cell) and rows.csv (one line per report row)
    comparison.py  comparison.json: every headline, ratio, interval and verdict as data
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kerasmnist import records
from kerasmnist.config import ACCURACY_MARGIN_POINTS
from kerasmnist.report import analysis, comparison, headline, load, markdown, plots, tables
from kerasmnist.report.plots import PLOTS

__all__ = ["PLOTS", "Built", "build", "write"]


@dataclass(frozen=True)
class Built:
    """A report written: where, its headline, and the results lines it had to ignore."""

    path: Path
    headlines: list[headline.Headline]
    ignored: list[str]
    comparison: dict  # comparison.json's content (comparison.build)

    def terminal_text(self) -> str:
        """What a command prints once the report is written: the headline, the ignored lines, the report's path."""
        ignored = (f"{len(self.ignored)} unreadable results line{'s' if len(self.ignored) > 1 else ''} ignored "
                   "(listed in the report, under Ignored lines)")
        return "\n".join([*headline.render_text(self.headlines), *([ignored] if self.ignored else []),
                          f"full report: {self.path}"])


def build(results_dirs: list[Path], out_dir: Path, accuracy_margin: float = ACCURACY_MARGIN_POINTS) -> Path:
    """Writes report.md, the plots, results.csv and rows.csv to `out_dir`; returns the report's path."""
    return write(results_dirs, out_dir, accuracy_margin).path


def write(results_dirs: list[Path], out_dir: Path, accuracy_margin: float = ACCURACY_MARGIN_POINTS) -> Built:
    """Writes report.md, the plots, results.csv and rows.csv to `out_dir`; each row's learning verdict is decided
    within `accuracy_margin` points of test accuracy."""
    results = load.gather(results_dirs)
    rows = load.group(results.cells)
    found = {"training": headline.headlines(rows, margin=accuracy_margin),
             "inference": headline.headlines(rows, headline.INFERENCE),
             "time_to_accuracy": headline.headlines(rows, headline.TIME_TO_ACCURACY)}
    changes = analysis.environment_changes(rows, accuracy_margin)
    answer = comparison.build(rows, found, changes, accuracy_margin)
    records.ensure_writable(out_dir)
    (out_dir / "results.csv").write_text(tables.results_csv(results.cells), encoding="utf-8")
    (out_dir / "rows.csv").write_text(tables.rows_csv(rows, found["training"]), encoding="utf-8")
    written = json.dumps(answer, indent=1)
    records.replace_atomically(out_dir / comparison.FILE, written + "\n")
    plotted = plots.write_all(rows, found["training"], load.latest_bench(results.bench), out_dir)
    text = markdown.render(results, rows, found, changes, plotted, results_dirs,
                           markdown.inventory_section(results_dirs))
    report_path = out_dir / "report.md"
    records.replace_atomically(report_path, text)
    return Built(report_path, found["training"], results.ignored, json.loads(written))  # as a reader gets it
