"""comparison.json: the report's answer as data, for scripts and dashboards to read instead of report.md's prose.

One JSON object (KIND, SCHEMA): the learning margin and the confidence level, every row with its identity (the
settings that make it, its machine and software) and figures, and the three headlines (training throughput,
inference throughput, time to accuracy), each group with its fastest row, every other row's ratio to it with the
95% interval, the rounds behind it and the verdict, and, for training, the learning verdict with its difference
in points of test accuracy; and what changed between Python environments. Rows are referred to by their index
in `rows`. The README documents the fields.
"""

from __future__ import annotations

import statistics
from typing import Any

from kerasmnist.report import analysis
from kerasmnist.report.headline import Contender, Headline, contender_name
from kerasmnist.report.load import Row
from kerasmnist.report.stats import CONFIDENCE, Difference, Learning, Ratio

KIND = "kerasmnist.comparison"
SCHEMA = 1
FILE = "comparison.json"


def build(rows: list[Row], headlines: dict[str, list[Headline]], changes: list[analysis.EnvironmentChange],
          margin: float) -> dict[str, Any]:
    """The whole answer: `headlines` by what they rank ("training", "inference", "time_to_accuracy"), and what
    changed between environments (analysis.environment_changes)."""
    index = {id(row): place for place, row in enumerate(rows)}
    return {
        "kind": KIND, "schema": SCHEMA, "confidence": CONFIDENCE, "accuracy_margin_points": margin,
        "rows": [row_json(row, index) for row in rows],
        "headlines": {ranked: [headline_json(found, index) for found in found_list]
                      for ranked, found_list in headlines.items()},
        "environment_changes": [environment_change_json(change, index) for change in changes],
    }


def environment_change_json(change: analysis.EnvironmentChange, index: dict[int, int]) -> dict[str, Any]:
    """A row in one environment against the same settings' row in another (analysis.environment_changes)."""
    return {"row": index[id(change.row)], "baseline": index[id(change.baseline)],
            "environment": change.row.environment, "against": change.baseline.environment, "paired": change.paired,
            "packages": {name: {"baseline": old, "row": new} for name, (old, new) in change.packages.items()},
            "time_ratio": interval_json(change.slower), "verdict": change.verdict,
            "learning": learning_json(change.learning) if change.learning else None}


def row_json(row: Row, index: dict[int, int]) -> dict[str, Any]:
    """A row: what makes it (settings, machine, software), its name in the report, and its figures over runs."""
    accuracy = row.accuracy
    reached = row.values("time_to_accuracy_seconds")
    return {
        "name": row.name, "model": row.model_title, "machine": row.machine, "software": row.software,
        "settings": row.settings, "environment": row.environment, "versions": row.versions,
        # the row of its backend's chosen environment, ranked in its place (load.choose_environments)
        "superseded_by": None if row.superseded_by is None else index[id(row.superseded_by)],
        "ok_runs": len(row.entries), "rounds": len({entry.round for entry in row.entries}),
        "failed_or_skipped": len(row.others),
        "steady_epoch_seconds_median": row.median("steady_epoch_seconds"),
        "samples_per_second_median": row.median("samples_per_second"),
        "inference_seconds_median": row.median("inference_median_seconds"),
        "test_accuracy_mean": statistics.fmean(accuracy) if accuracy else None,
        "test_accuracy_sd": statistics.stdev(accuracy) if len(accuracy) > 1 else None,
        "time_to_accuracy": {"seconds_median": statistics.median(reached) if reached else None,
                             "reached_runs": len(reached), "runs": len(row.entries),
                             "resolution": "epoch ends"},
        "several_speeds": analysis.row_speeds(row).several if row.entries else False,
        "unstable": analysis.instability(row) if row.entries else [],
    }


def headline_json(found: Headline, index: dict[int, int]) -> dict[str, Any]:
    return {
        "model": found.section, "device": found.device, "detail": found.detail,
        "ranked_by": found.ranked.seconds, "fastest": index[id(found.fastest)] if found.fastest else None,
        "fastest_name": contender_name(found.fastest) if found.fastest else None, "decided": found.decided,
        "said": found.fastest_text(), "learning_said": found.learning_text(),
        "others": [contender_json(contender, index) for contender in found.contenders],
        "unranked": [{"row": index[id(row)], "name": contender_name(row), "why": why} for row, why in found.unranked],
    }


def contender_json(contender: Contender, index: dict[int, int]) -> dict[str, Any]:
    return {"row": index[id(contender.row)], "name": contender.name,
            "time_ratio": interval_json(contender.versus_fastest), "verdict": contender.verdict,
            "learning": learning_json(contender.learning) if contender.learning else None}


def interval_json(found: Ratio | Difference) -> dict[str, Any]:
    """A ratio of times (above 1: slower) or a difference of accuracies (points), with its 95% interval (None with
    one round) and the rounds behind it."""
    return {"estimate": found.estimate, "low": found.low, "high": found.high, "rounds": found.rounds}


def learning_json(found: Learning) -> dict[str, Any]:
    """Test accuracy against the fastest's, in points (negative: lower), and the verdict within the margin."""
    return {"accuracy_difference_points": interval_json(found.difference), "verdict": found.verdict,
            "equivalence_p": found.equivalence_p(), "margin_points": found.margin, "said": found.text()}
