"""The report's CSV files: results.csv, one line per cell; rows.csv, one line per report row."""

from __future__ import annotations

import csv
import io
import statistics
from typing import Any

from kerasmnist.records import CellEntry
from kerasmnist.report import analysis
from kerasmnist.report.headline import Contender, Headline
from kerasmnist.report.load import Row, host_of
from kerasmnist.report.stats import mean_interval

CELL_COLUMNS = (
    "round", "order", "repeat", "seed", "machine", "backend", "device", "model", "implementation", "status", "reason",
    "resolved_device", "epochs", "batch_size", "train_size", "first_epoch_seconds", "steady_epoch_seconds",
    "samples_per_second", "test_accuracy", "test_loss", "peak_device_memory_bytes", "wall_seconds", "command",
)
ROW_COLUMNS = (
    "machine", "software", "model", "backend", "device", "row", "ok_runs", "rounds", "steady_median",
    "steady_ci_low", "steady_ci_high", "samples_per_second_median", "test_accuracy_mean", "test_accuracy_sd",
    "unstable", "speeds", "vs_fastest", "vs_fastest_ci_low", "vs_fastest_ci_high", "vs_fastest_rounds", "verdict",
    "accuracy_vs_fastest_points", "accuracy_vs_fastest_ci_low", "accuracy_vs_fastest_ci_high", "learning",
    "settings",
)


def _csv(columns: tuple[str, ...], lines: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(lines)
    return buffer.getvalue()


def results_csv(cells: list[CellEntry]) -> str:
    lines = []
    for entry in sorted(cells, key=lambda e: (host_of(e), e.finished_at, e.order)):
        record = entry.record
        lines.append({
            "round": entry.round, "order": entry.order, "repeat": entry.repeat + 1,
            "seed": entry.config.get("seed"), "machine": host_of(entry), "backend": entry.backend,
            "device": entry.device, "model": entry.model,
            "implementation": entry.config.get("implementation", "keras"), "status": entry.status,
            "reason": entry.reason or "", "resolved_device": record and record.resolved_device,
            "epochs": entry.config["epochs"], "batch_size": entry.config["batch_size"],
            "train_size": record and record.data and record.data.train_size,
            **{key: record and getattr(record, key) for key in ("first_epoch_seconds", "steady_epoch_seconds", "samples_per_second",
                                                "test_accuracy", "test_loss", "peak_device_memory_bytes")},
            "wall_seconds": round(entry.wall_seconds, 2), "command": entry.command,
        })
    return _csv(CELL_COLUMNS, lines)


def rows_csv(rows: list[Row], training: list[Headline]) -> str:
    """A line per row; its steady epoch time and test accuracy against its group's fastest (the training
    headline's ratio, interval, rounds, verdict and learning verdict), blank for the fastest and unranked rows."""
    against = {id(c.row): c for found in training for c in found.contenders}
    lines = []
    for row in rows:
        interval = mean_interval(row.steady)
        accuracy = row.accuracy
        lines.append({
            "machine": row.machine, "software": row.software, "model": row.model, "backend": row.backend,
            "device": row.device, "row": row.name, "ok_runs": len(row.entries),
            "rounds": len({entry.round for entry in row.entries}),
            "steady_median": statistics.median(row.steady) if row.steady else None,
            "steady_ci_low": interval[0] if interval else None, "steady_ci_high": interval[1] if interval else None,
            "samples_per_second_median": row.median("samples_per_second"),
            "test_accuracy_mean": statistics.fmean(accuracy) if accuracy else None,
            "test_accuracy_sd": statistics.stdev(accuracy) if len(accuracy) > 1 else None,
            "unstable": "; ".join(analysis.instability(row)),
            "speeds": analysis.row_speeds(row).text(),
            **versus_fastest_columns(against.get(id(row))),
            "settings": "; ".join(f"{key}={value}" for key, value in sorted(row.settings.items())),
        })
    return _csv(ROW_COLUMNS, lines)


def versus_fastest_columns(contender: Contender | None) -> dict[str, Any]:
    if contender is None:
        return {}
    versus, learning = contender.versus_fastest, contender.learning
    return {"vs_fastest": versus.estimate, "vs_fastest_ci_low": versus.low, "vs_fastest_ci_high": versus.high,
            "vs_fastest_rounds": versus.rounds, "verdict": contender.verdict,
            **({"accuracy_vs_fastest_points": learning.difference.estimate,
                "accuracy_vs_fastest_ci_low": learning.difference.low,
                "accuracy_vs_fastest_ci_high": learning.difference.high, "learning": learning.verdict}
               if learning else {})}
