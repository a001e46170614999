"""The comparison report: a pure function of results files (one or several machines').

Along the data's way, a module each:

    load.py      read results.jsonl and bench.jsonl; group cells into rows by their config fields
    stats.py     ratios paired by round, with intervals; when an order may be stated
    analysis.py  fastest rows, GPU speed-ups, Keras against native, goal verdicts, noise flags, GEMM peaks
    headline.py  which backend for which model: the fastest per model and device, every other row against it
    markdown.py  report.md
    plots.py     the PNG plots
    tables.py    results.csv (one line per cell) and rows.csv (one line per report row)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kerasmnist import records
from kerasmnist.report import headline, load, markdown, plots, tables
from kerasmnist.report.plots import PLOTS

__all__ = ["PLOTS", "Built", "build", "write"]


@dataclass(frozen=True)
class Built:
    """A report written: where, its headline, and the results lines it had to ignore."""

    path: Path
    headlines: list[headline.Headline]
    ignored: list[str]

    def terminal_text(self) -> str:
        """What a command prints once the report is written: the headline, the ignored lines, the report's path."""
        ignored = (f"{len(self.ignored)} unreadable results line{'s' if len(self.ignored) > 1 else ''} ignored "
                   "(listed in the report, under Ignored lines)")
        return "\n".join([*headline.render_text(self.headlines), *([ignored] if self.ignored else []),
                          f"full report: {self.path}"])


def build(results_dirs: list[Path], out_dir: Path) -> Path:
    """Writes report.md, the plots, results.csv and rows.csv to `out_dir`; returns the report's path."""
    return write(results_dirs, out_dir).path


def write(results_dirs: list[Path], out_dir: Path) -> Built:
    """Writes report.md, the plots, results.csv and rows.csv to `out_dir`."""
    results = load.gather(results_dirs)
    rows = load.group(results.cells)
    records.ensure_writable(out_dir)
    (out_dir / "results.csv").write_text(tables.results_csv(results.cells), encoding="utf-8")
    (out_dir / "rows.csv").write_text(tables.rows_csv(rows), encoding="utf-8")
    plotted = plots.write_all(rows, load.latest_bench(results.bench), out_dir)
    text = markdown.render(results, rows, plotted, results_dirs, markdown.inventory_section(results_dirs))
    report_path = out_dir / "report.md"
    records.replace_atomically(report_path, text)
    return Built(report_path, headline.headlines(rows), results.ignored)
