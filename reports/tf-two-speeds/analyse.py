"""Summarises ab.sh's runs: per run, its steady epochs, the speeds the report's detector finds in them, and the
process's CPU use in its fast and its slow epochs (CPU seconds per wall second, and context switches), and,
where measure.py timed Keras's train function, the median step and the time lost to steps over twice it.

    python reports/tf-two-speeds/analyse.py /tmp/tf-speeds [BASELINE]

With BASELINE (a variant's name, as ab.sh names runs NAME-ROUND), each other variant's run median over the
baseline's of the same round, with its 95% interval (kerasmnist.report.stats.ratio), follows the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from kerasmnist.report import speeds, stats


def epochs_of(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "epochs.jsonl").read_text().splitlines()][1:]  # steady ones


def summary(folder: Path) -> str:
    steady = epochs_of(folder)
    walls = [epoch["epoch_seconds"] for epoch in steady]
    found = speeds.detect(walls)
    median = statistics.median(walls)
    slow = [epoch for epoch in steady if epoch["epoch_seconds"] > 1.1 * min(walls)]
    fast = [epoch for epoch in steady if epoch not in slow]

    def use(group: list[dict]) -> str:
        if not group:
            return "–"
        cores = statistics.fmean(e["process_cpu_seconds"] / e["epoch_seconds"] for e in group)
        switches = statistics.fmean(sum(t["voluntary_switches"] for t in e["threads"].values()) for e in group)
        text = f"{cores:.2f} cores busy, {switches:,.0f} voluntary switches"
        if all(e.get("step_times") for e in group):
            steps = [e["step_times"] for e in group]
            text += (f"; step median {statistics.fmean(s['median_ms'] for s in steps):.2f} ms, p90 "
                     f"{statistics.fmean(s['p90_ms'] for s in steps):.2f} ms, long steps "
                     f"{statistics.fmean(s['steps_over_twice_the_median'] for s in steps):.0f} costing "
                     f"{statistics.fmean(s['their_excess_seconds'] for s in steps):.2f} s, between steps "
                     f"{statistics.fmean(s['between_steps_seconds'] for s in steps):.2f} s")
        return text

    return (f"| {folder.name} | {', '.join(f'{w:.2f}' for w in walls)} | {median:.2f} | {found.text('s')} | "
            f"{len(fast)}: {use(fast)} | {len(slow)}: {use(slow)} |")


def paired_ratios(folders: list[Path], baseline: str) -> str:
    """Each variant's run median over the baseline's, paired by round (the NAME-ROUND folder names)."""
    medians: dict[str, dict[str, float]] = {}
    for folder in folders:
        name, _, round_number = folder.name.rpartition("-")
        medians.setdefault(name, {})[round_number] = statistics.median(e["epoch_seconds"] for e in epochs_of(folder))
    lines = [f"Run medians over {baseline}'s, paired by round:"]
    for name in sorted(set(medians) - {baseline}):
        ratio = stats.ratio(medians[name], medians[baseline])
        lines.append(f"- {name}: {ratio.text()}, {ratio.rounds} rounds" if ratio else f"- {name}: no shared round")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path,
                        help="ab.sh's OUT folder: one NAME-ROUND folder per run, each with epochs.jsonl")
    parser.add_argument("baseline", nargs="?", help="a variant's NAME: every other variant's run medians over its, "
                        "paired by round")
    args = parser.parse_args()
    root = args.root
    print("| run | steady epochs (s) | median | speeds found | fast epochs (within 10% of the run's fastest) | "
          "slower epochs |")
    print("| --- | --- | --- | --- | --- | --- |")
    folders = sorted(path for path in root.iterdir() if (path / "epochs.jsonl").is_file())
    for folder in folders:
        print(summary(folder))
    if args.baseline:
        print("\n" + paired_ratios(folders, args.baseline))


if __name__ == "__main__":
    main()
