"""The round machinery, the same here and on a Slurm node: a round's cells run one after another, each in a
pinned process of its own (`run_cell`, through `processes.spawn`), each finished cell saved at once
(`save_entry`), with progress and the time left (`Progress`); which cells are done (`done_cells`) and when
enough rounds ran (`narrow_enough`).

A round is one pass over the plan: its cells run adjacent in time, which is what the report pairs them by.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Collection

from kerasmnist import environment, records, references
from kerasmnist.config import MIN_STEADY_EPOCHS
from kerasmnist.launch import environments, processes
from kerasmnist.launch.matrix import Cell
from kerasmnist.tasks import TrainTask

Echo = Callable[[str], None]


@dataclass
class Outcome:
    """What a matrix run did: its cells counted by status, and whether a stop ended it."""

    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "skipped": 0, "failed": 0, "already done": 0})
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        return 130 if self.interrupted else (1 if self.counts["failed"] else 0)


def note_few_steady_epochs(plan: list[Cell], echo: Echo) -> None:
    """Says so where a cell of the plan will have too few steady epochs for its median to be one speed's."""
    fewest = min((cell.config.epochs - 1 for cell in plan), default=MIN_STEADY_EPOCHS)
    if fewest < MIN_STEADY_EPOCHS:
        epochs = f"{fewest} steady epoch" + ("" if fewest == 1 else "s")
        echo(f"note: some cells have {epochs}; a median needs {MIN_STEADY_EPOCHS} to be one speed's "
             f"(--epochs {MIN_STEADY_EPOCHS + 1} or more), and the report will say so")


def done_cells(results_path: Path, echo: Echo) -> tuple[list[records.CellEntry], set[str]]:
    """The entries of a results file, and the keys of its cells that finished ok and whose user's code is still
    what ran: a cell's key holds its model's and loader's own files' hashes (matrix.Cell.key), and its record the
    helper modules they ran, re-hashed here (an edited helper makes the cell not done: it trains again)."""
    entries, ignored = records.read_results(results_path) if results_path.exists() else ([], [])
    for line in ignored:
        echo(f"ignored {line}")
    hashes: dict[str, str | None] = {}  # each helper file hashed once
    return entries, {entry.key for entry in entries if entry.status == "ok"
                     and not references.changed_helpers(entry.record.helper_files, hashes)}


def note_reruns(entries: list[records.CellEntry], keys: Collection[str], done: set[str], echo: Echo) -> None:
    """Says why cells of the plan (`keys`) that finished ok before run again: a helper module of their model or
    loader changed since, one line per model or loader and change."""
    hashes: dict[str, str | None] = {}
    cells_by_reason: dict[tuple[str, str], set[str]] = {}
    for entry in entries:
        if entry.status == "ok" and entry.key in keys and entry.key not in done and entry.record:
            loader = entry.record.data.loader if entry.record.data else None
            for code, identity in ((entry.model, entry.record.model_identity), (entry.config.get("dataset"), loader)):
                changed = references.changed_helpers(identity.helpers or [] if identity else [], hashes)
                if changed:
                    reason = f"its helper{'s' if len(changed) > 1 else ''} {', '.join(changed)}"
                    cells_by_reason.setdefault((code, reason), set()).add(entry.key)
    for (code, reason), cells in cells_by_reason.items():
        several = len(cells) > 1
        echo(f"{len(cells)} cell{'s' if several else ''} of {code} run{'' if several else 's'} again: {reason} "
             f"since {'they' if several else 'it'} ran")


def rounds(plan: list[Cell]) -> list[list[Cell]]:
    """The plan's cells grouped by round (repeat), in run order."""
    grouped: dict[int, list[Cell]] = {}
    for cell in plan:
        grouped.setdefault(cell.repeat, []).append(cell)
    return list(grouped.values())


def run_round(round_cells: list[Cell], timeout_seconds: int, out_dir: Path, results_path: Path,
              stamp: Callable[[Cell], dict[str, Any]], outcome: Outcome, echo: Echo,
              progress: Progress | None = None) -> list[records.CellEntry] | None:
    """Runs a round's cells one after another, each in its own pinned process, adding each finished cell's
    entry (with its `stamp`) to `results_path` at once: the one way a round runs, here or on a Slurm node.
    Ctrl-C, SIGTERM or SIGHUP end the round (outcome.interrupted), keeping what finished. Returns the results
    file's entries after the last cell saved (None if none was)."""
    entries = None
    for cell in round_cells:
        if progress:
            progress.start(cell)
        try:
            entry = dataclasses.replace(run_cell(cell, timeout_seconds, out_dir), **stamp(cell))
        except KeyboardInterrupt as stop:
            outcome.interrupted = True
            if isinstance(stop, CellInterrupted) and stop.finished:  # it finished before the stop reached it
                save_entry(results_path, dataclasses.replace(stop.finished, **stamp(cell)), outcome, echo)
            echo(f"{stop or 'interrupted'}: the cells finished are kept in {results_path}; "
                 "rerun the same command to run the rest")
            break
        if progress:
            progress.finished(cell, entry)
        entries = save_entry(results_path, entry, outcome, echo) or entries
    return entries


class Progress:
    """Says which cell starts, numbered, with the time the remaining cells should take."""

    def __init__(self, to_run: list[Cell], echo: Echo) -> None:
        self.to_run, self.echo, self.started = to_run, echo, 0
        self.seconds_by_kind: dict[tuple[str, ...], list[float]] = {}

    def start(self, cell: Cell) -> None:
        eta = _time_left(self.to_run[self.started:], self.seconds_by_kind)
        self.started += 1
        self.echo(f"[{self.started}/{len(self.to_run)}] {cell.label}"
                  + (f", about {duration_text(eta)} left" if eta else ""))

    def finished(self, cell: Cell, entry: records.CellEntry) -> None:
        self.seconds_by_kind.setdefault(_kind(cell), []).append(entry.wall_seconds)


def save_entry(results_path: Path, entry: records.CellEntry, outcome: Outcome,
               echo: Echo) -> list[records.CellEntry] | None:
    """Adds a finished cell to results.jsonl and counts it; the file's entries afterwards, None if it could not."""
    try:
        entries = records.add_result(results_path, entry)
    except OSError as error:  # a full disk, a folder made read-only: what was saved before stays
        outcome.counts["failed"] += 1
        echo(f"    failed: its result could not be saved to {results_path} ({error.strerror}); "
             "the results saved before are intact")
        return None
    outcome.counts[entry.status] += 1
    echo(f"    {entry.status}" + (f": {entry.reason}" if entry.reason else ""))
    return entries


class CellInterrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP while a cell ran; `finished` is its entry when the child had finished ok."""

    def __init__(self, message: str, finished: records.CellEntry | None) -> None:
        super().__init__(message)
        self.finished = finished


def narrow_enough(target_ci: float, rounds_done: int, entries: list[records.CellEntry], echo: Echo) -> bool:
    """Past the minimum rounds (--target-ci): whether every ratio the report would state already has a 95%
    interval within the target, so the remaining rounds can be left out."""
    from kerasmnist.report import analysis, load

    wide = analysis.wide_ratios(load.group(entries), target_ci)
    if wide:
        echo(f"after {rounds_done} rounds, {len(wide)} ratios are wider than ±{target_ci:.0%} "
             f"(e.g. {wide[0][0].name} {wide[0][0].device} {wide[0][1]} {wide[0][2].text()}): another round")
        return False
    echo(f"after {rounds_done} rounds every ratio's 95% interval is within ±{target_ci:.0%}: done")
    return True


def run_cell(cell: Cell, timeout_seconds: int, out_dir: Path) -> records.CellEntry:
    """Runs one cell in its own pinned process, with its environment's interpreter, and returns its results.jsonl
    entry."""
    started = time.perf_counter()
    # Each attempt's record and stderr stay in OUT/runs/KEY/ATTEMPT (results.jsonl holds a copy): a rerun
    # never deletes the files of an earlier attempt. Keras's progress goes straight to the terminal.
    child = processes.spawn(TrainTask(cell.config), out_dir / "runs" / cell.key / records.new_invocation(),
                            python=cell.environment.interpreter if cell.environment else None,
                            timeout_seconds=timeout_seconds, show_output=True)
    record = records.read(child.written[0]) if child.written else None
    status, reason = child.status()
    software, host = _where_it_ran(cell, record)
    entry = records.CellEntry(
        key=cell.key, seed=cell.config.seed, order=cell.order, repeat=cell.repeat, backend=cell.config.backend,
        device=cell.config.device, model=cell.config.model, status=status, reason=reason,
        log_tail=list(child.log_tail) if status != "ok" else [], wall_seconds=time.perf_counter() - started,
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), host=host, software=software,
        config=cell.config.to_dict(), record=record,
        phases=cell_phases(record, child.exited_at) if record and status == "ok" else None,
        model_code=cell.model_code, environment=cell.environment.name if cell.environment else None)
    if child.interrupted is not None:
        raise CellInterrupted(str(child.interrupted) or "interrupted", entry if status == "ok" else None)
    return entry


def _where_it_ran(cell: Cell, record: records.RunRecord | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The software versions and the host of a cell: the child's own, from its record (it may run another Python
    and other packages than this process); without a record, its environment's versions as its interpreter said
    them (environments.facts, asked before the cells ran), else this process's, and this host."""
    if record:
        facts = record.environment
        return {"python": facts["python"], **facts["packages"]}, facts["host"]
    if cell.environment:
        return environments.facts(cell.environment.name, cell.environment.interpreter).software, environment.host()
    return environment.software(), environment.host()


# A cell's wall time, phase by phase: (phase, the timeline stamp it ends at). The training call between
# "described" and "trained" is split further by the record's own durations (cell_phases).
_STAMPED_PHASES = (("process start and imports", "started"), ("pinning the backend and device", "pinned"),
                   ("data loading and checking", "data_loaded"), ("importing the trainer, reading the environment", "described"))


def cell_phases(record: records.RunRecord, exited_at: float) -> records.Phases | None:
    """Where a cell's wall time went, from its process's spawn to its exit, in seconds per phase; None for a
    record with no timeline (older records, and runs started by hand). The phases add up to the span, the
    training call's own remainder (seeding, fit's set-up and callbacks, the placement check) included."""
    stamps = record.timeline
    if not stamps or stamps.spawned is None:
        return None
    phases, previous = {}, stamps.spawned
    for phase, stamp in _STAMPED_PHASES:
        phases[phase] = getattr(stamps, stamp) - previous
        previous = getattr(stamps, stamp)
    timed = {
        "building and compiling the model": record.build_seconds,
        "first epoch (tracing, compiling)": record.first_epoch_seconds,
        "steady epochs": sum(record.epoch_seconds[1:]),
        "validation": sum(record.validation_seconds or []),
        "evaluation": record.evaluate_seconds,
        "inference (warm-up and timed passes)": (record.inference_warmup_seconds or 0) + sum(record.inference_seconds or []),
    }
    phases |= timed
    phases["training call, outside the timed parts"] = stamps.trained - stamps.described - sum(timed.values())
    phases["writing the record and exiting"] = exited_at - stamps.trained
    return records.Phases(phases)


def _kind(cell: Cell) -> tuple[str, ...]:
    return (cell.config.backend, cell.config.device, cell.config.model, cell.config.implementation)


def _time_left(remaining: list[Cell], seconds_by_kind: dict[tuple[str, ...], list[float]]) -> float | None:
    """Each remaining cell is expected to take as long as the finished cells of its kind took
    (a skipped GPU cell takes seconds, a CNN on a CPU minutes), else as long as the average cell."""
    finished = [seconds for kind in seconds_by_kind.values() for seconds in kind]
    if not finished:
        return None
    overall = statistics.fmean(finished)
    return sum(statistics.fmean(seconds_by_kind.get(_kind(cell), [overall])) for cell in remaining)


def duration_text(seconds: float) -> str:
    """Seconds as a person reads a time left: minutes past a minute and a half."""
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
