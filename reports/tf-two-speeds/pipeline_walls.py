"""Issue 28: what one endless tf.data pipeline changes in a whole cell, not only in its steady epochs: per model,
each pipeline's process wall time, its time in fit's epochs, in validation, and from the last epoch to the
process's exit, with the ratio of the variant over the baseline paired by round (kerasmnist.report.stats.ratio),
and the test accuracy difference in points paired likewise (kerasmnist.report.stats.paired_difference).

    python reports/tf-two-speeds/pipeline_walls.py reports/tf-two-speeds/pipeline --baseline numpy --variant tf.data-repeat
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from kerasmnist.report import analysis, load, stats

# Each figure of a cell: its run's median steady epoch, its process's wall time, and sums of its phases
# (rounds.cell_phases) by name.
def phases(*names: str):
    return lambda entry: sum(entry.phases[name] for name in names)


FIGURES = {
    "steady epoch s (run median)": lambda entry: entry.record.steady_epoch_seconds,
    "process wall s": lambda entry: entry.wall_seconds,
    "epochs s": phases("first epoch (tracing, compiling)", "steady epochs"),
    "validation s": phases("validation"),
    "outside the timed parts s": phases("training call, outside the timed parts"),
    "after training to exit s": phases("evaluation", "inference (warm-up and timed passes)",
                                       "writing the record and exiting"),
}


def without(settings: dict, keys: set[str]) -> dict:
    return {key: value for key, value in settings.items() if key not in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a compare folder with both pipelines in the same rounds")
    parser.add_argument("--baseline", default="numpy", help="the baseline's input_pipeline (default numpy)")
    parser.add_argument("--variant", default="tf.data-repeat", help="the variant's input_pipeline")
    parser.add_argument("--also-differs", action="append", default=[], metavar="KEY",
                        help="a setting the variant may also change (e.g. steps_per_execution), repeatable")
    arguments = parser.parse_args()
    differs = {"input_pipeline", *arguments.also_differs}
    rows = load.group(load.gather([arguments.folder]).cells)
    print(f"| model | backend | figure | {arguments.baseline} median | {arguments.variant} median | "
          f"{arguments.variant} / {arguments.baseline} [95%], rounds |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        if row.settings.get("input_pipeline") != arguments.baseline:
            continue
        twin = next((other for other in rows if other.settings.get("input_pipeline") == arguments.variant
                     and without(other.settings, differs) == without(row.settings, differs)), None)
        if twin is None:
            continue
        for name, figure in FIGURES.items():
            base = {entry.round: figure(entry) for entry in row.entries}
            varied = {entry.round: figure(entry) for entry in twin.entries}
            found = stats.ratio(varied, base)
            print(f"| {row.model} | {row.backend} | {name} | {statistics.median(base.values()):.2f} | "
                  f"{statistics.median(varied.values()):.2f} | {found.text()}, {found.rounds} |")
        accuracy = stats.paired_difference(analysis.accuracy_points(twin), analysis.accuracy_points(row))
        print(f"| {row.model} | {row.backend} | test accuracy, {arguments.variant} − {arguments.baseline} | | | "
              f"{accuracy.text()}, {accuracy.rounds} rounds |")


if __name__ == "__main__":
    main()
