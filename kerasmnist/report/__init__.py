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
from dataclasses import dataclass, field
from pathlib import Path

from kerasmnist import records
from kerasmnist.config import ACCURACY_MARGIN_POINTS, suggestion
from kerasmnist.errors import ConfigError
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
    changes: list[analysis.EnvironmentChange] = field(default_factory=list)  # between environments

    def terminal_text(self) -> str:
        """What a command prints once the report is written: the headline, what changed between environments, the
        ignored lines, the report's path."""
        ignored = (f"{len(self.ignored)} unreadable results line{'s' if len(self.ignored) > 1 else ''} ignored "
                   "(listed in the report, under Ignored lines)")
        return "\n".join([*headline.render_text(self.headlines), *markdown.environment_change_lines(self.changes),
                          *([ignored] if self.ignored else []), f"full report: {self.path}"])


def build(results_dirs: list[Path], out_dir: Path, accuracy_margin: float = ACCURACY_MARGIN_POINTS,
          headline_environments: tuple[str, ...] = ()) -> Path:
    """Writes report.md, the plots, results.csv and rows.csv to `out_dir`; returns the report's path."""
    return write(results_dirs, out_dir, accuracy_margin, headline_environments).path


def write(results_dirs: list[Path], out_dir: Path, accuracy_margin: float = ACCURACY_MARGIN_POINTS,
          headline_environments: tuple[str, ...] = ()) -> Built:
    """Writes report.md, the plots, results.csv and rows.csv to `out_dir`; each row's learning verdict is decided
    within `accuracy_margin` points of test accuracy; a backend run in several environments is ranked in the one
    `headline_environments` names, else in its newest (load.choose_environments)."""
    results = load.gather(results_dirs)
    ran_in = {entry.environment for entry in results.cells if entry.environment}
    unknown = [name for name in headline_environments if name not in ran_in]
    if unknown:
        raise ConfigError(f"no cell ran in environment {unknown[0]!r}; "
                          + (f"they ran in {', '.join(sorted(ran_in))}" if ran_in else "none ran in a named environment")
                          + suggestion(unknown[0], tuple(sorted(ran_in))))
    rows = load.group(results.cells, headline_environments)
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
    return Built(report_path, found["training"], results.ignored, json.loads(written), changes)  # as a reader gets it
