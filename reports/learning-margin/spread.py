"""How much test accuracy moves from seed to seed, from the committed results: the evidence behind the report's
default accuracy margin (kerasmnist.config.ACCURACY_MARGIN_POINTS).

For every results folder given, the report's own rows (kerasmnist.report.load): per row, the sd over its rounds of
its test accuracy (each round a new seed); per pair of rows that computed the same thing (the report's
computation: same model, data and settings, another backend or execution setting), the sd of their per-round
differences in points, the figure the learning verdict's interval is built on.

    python reports/learning-margin/spread.py reports/full-mnist reports/model-zoo ...
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from pathlib import Path

from kerasmnist.report import load
from kerasmnist.report.analysis import accuracy_points as points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="results folders (each with a results.jsonl)")
    folders = parser.parse_args().folders
    row_sds, pair_sds, backend_pair_sds = [], [], []
    print("| folder | model | row | other row | rounds | sd of each row's accuracy, points | sd of the paired "
          "difference, points | mean difference, points |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for folder in folders:
        rows = [row for row in load.group(load.gather([folder]).cells) if len(row.entries) >= 2]
        load.title_models(rows)
        load.name_rows(rows)
        row_sds += [statistics.stdev(points(row).values()) for row in rows if len(points(row)) >= 2]
        by_computation: dict[tuple, list[load.Row]] = {}
        for row in rows:
            by_computation.setdefault(row.computation(), []).append(row)
        for group in by_computation.values():
            for a, b in itertools.combinations(group, 2):
                pa, pb = points(a), points(b)
                shared = sorted(set(pa) & set(pb))
                if len(shared) < 2:
                    continue
                differences = [pa[r] - pb[r] for r in shared]
                pair_sds.append(statistics.stdev(differences))
                if a.backend != b.backend:  # what the learning verdict compares most: another backend
                    backend_pair_sds.append(pair_sds[-1])
                print(f"| {folder} | {a.model_title} | {a.name} | {b.name} | {len(shared)} | "
                      f"{statistics.stdev(pa.values()):.2f} / {statistics.stdev(pb.values()):.2f} | "
                      f"{pair_sds[-1]:.2f} | {statistics.fmean(differences):+.2f} |")
    print(f"\n{len(row_sds)} rows: median sd of a row's accuracy over rounds {statistics.median(row_sds):.2f} points "
          f"(largest {max(row_sds):.2f}).")
    for what, sds in (("all pairs", pair_sds), ("pairs of two backends", backend_pair_sds)):
        quartiles = " / ".join(f"{q:.2f}" for q in statistics.quantiles(sds, n=4))
        print(f"{what} ({len(sds)}): sd of a paired difference, quartiles {quartiles} points, "
              f"90th percentile {statistics.quantiles(sds, n=10)[-1]:.2f}, largest {max(sds):.2f}.")

if __name__ == "__main__":
    main()
