"""Runs a comparison matrix, each cell in a fresh `kerasmnist train` process.

A fresh process per cell means a backend or device choice can never leak into the next cell,
and a cell that crashes, runs out of memory or hangs past its timeout takes nothing else down.
Every finished cell goes into results.jsonl at once; rerunning the same matrix skips the cells
already done with the same configuration.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from kerasmnist.launch import bench, processes
from kerasmnist import environment, records
from kerasmnist.child import timing
from kerasmnist.config import RunConfig
from kerasmnist.launch.matrix import Cell, Matrix, cells

PEAK_REPEATS = 5


@dataclass
class Outcome:
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "skipped": 0, "failed": 0, "already done": 0})
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        return 130 if self.interrupted else (1 if self.counts["failed"] else 0)


def train_arguments(config: RunConfig) -> list[str]:
    """The `kerasmnist train` flags that reproduce `config`."""
    arguments = []
    for key, value in config.to_dict().items():
        flag = f"--{key.replace('_', '-')}"
        if key == "float32_matmul_precision":  # train's --tf32 flag
            arguments += ["--tf32"] if value == "tf32" else []
            continue
        if key == "model_args":  # train's repeatable --model-arg KEY=VALUE, each value as a TOML scalar
            arguments += [f"--model-arg={name}={json.dumps(item)}" for name, item in value.items()]
            continue
        if value is None or value is False or value == "":
            continue
        if value is True:
            arguments.append(flag)
        else:
            # --flag=value: a value that itself starts with "--" (XLA flags) is not read as an option
            arguments.append(f"{flag}={','.join(map(str, value)) if isinstance(value, list) else value}")
    return arguments


def run_matrix(matrix: Matrix, out_dir: Path, command: str, force: bool = False,
               echo: Callable[[str], None] = print) -> Outcome:
    """Runs every cell not already done; returns the counts. Ctrl-C keeps what finished.

    `command` is the command line that asked for the matrix: each cell's entry keeps it, with this
    invocation's id and its round (one pass over the plan: the cells of one repeat, run adjacent in
    time), which the report pairs cells by. A round new to the folder gets seeds no cell there used
    (matrix.cells), so rounds added later never repeat an earlier round's seed. A matrix with machine
    kinds runs on Slurm (kerasmnist.launch.slurm).
    """
    if matrix.machines:
        from kerasmnist.launch import slurm

        return slurm.run_matrix(matrix, out_dir, command, force, echo)
    records.ensure_writable(out_dir)
    results_path = out_dir / records.RESULTS_FILE
    entries, done = done_cells(results_path, echo)
    plan = cells(matrix, {entry.key: entry.seed for entry in entries})
    to_run = [cell for cell in plan if force or cell.key not in done]
    outcome = Outcome()
    note_few_steady_epochs(plan, echo)
    outcome.counts["already done"] = len(plan) - len(to_run)
    if outcome.counts["already done"]:
        echo(f"{outcome.counts['already done']} of {len(plan)} cells already done in {results_path}; "
             "running the rest (--force reruns them all)")

    invocation = records.new_invocation()
    try:
        if to_run:
            measure_peaks(matrix, out_dir, command, invocation, echo)
    except KeyboardInterrupt:
        outcome.interrupted = True
        echo("interrupted while measuring the matmul peak; rerun the same command to go on")
        return outcome

    progress = Progress(to_run, echo)
    for round_cells in rounds(to_run):
        if matrix.target_ci and round_cells[0].repeat >= matrix.rounds and narrow_enough(
                matrix.target_ci, round_cells[0].repeat, entries, echo):
            break
        stamp = {"command": command, "invocation": invocation, "round": f"{invocation} #{round_cells[0].repeat + 1}",
                 "target_ci": matrix.target_ci}
        entries = run_round(round_cells, matrix.cell_timeout, out_dir, results_path,
                            lambda cell: stamp, outcome, echo, progress) or entries
        if outcome.interrupted:
            break
    return outcome


def note_few_steady_epochs(plan: list[Cell], echo: Callable[[str], None]) -> None:
    """Says so where a cell of the plan will have too few steady epochs for its median to be one speed's."""
    fewest = min((cell.config.epochs - 1 for cell in plan), default=timing.MIN_STEADY_EPOCHS)
    if fewest < timing.MIN_STEADY_EPOCHS:
        epochs = f"{fewest} steady epoch" + ("" if fewest == 1 else "s")
        echo(f"note: some cells have {epochs}; a median needs {timing.MIN_STEADY_EPOCHS} to be one speed's "
             f"(--epochs {timing.MIN_STEADY_EPOCHS + 1} or more), and the report will say so")


def done_cells(results_path: Path, echo: Callable[[str], None]) -> tuple[list[records.CellEntry], set[str]]:
    """The entries of a results file, and the keys of its cells that finished ok."""
    entries, ignored = records.read_results(results_path) if results_path.exists() else ([], [])
    for line in ignored:
        echo(f"ignored {line}")
    return entries, {entry.key for entry in entries if entry.status == "ok"}


def rounds(plan: list[Cell]) -> list[list[Cell]]:
    """The plan's cells grouped by round (repeat), in run order."""
    grouped: dict[int, list[Cell]] = {}
    for cell in plan:
        grouped.setdefault(cell.repeat, []).append(cell)
    return list(grouped.values())


def run_round(round_cells: list[Cell], timeout_seconds: int, out_dir: Path, results_path: Path,
              stamp: Callable[[Cell], dict], outcome: Outcome, echo: Callable[[str], None],
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

    def __init__(self, to_run: list[Cell], echo: Callable[[str], None]) -> None:
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
          echo: Callable[[str], None]) -> list[records.CellEntry] | None:
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


def narrow_enough(target_ci: float, rounds_done: int, entries: list[records.CellEntry],
                  echo: Callable[[str], None]) -> bool:
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


def peak_sizes(largest: int) -> tuple[int, ...]:
    """The sizes the peak is the best rate over: the rate still grows with size on some CPUs, falls on others."""
    return tuple(sorted({max(1, largest // 4), max(1, largest // 2), largest}))


def measure_peaks(matrix: Matrix, out_dir: Path, command: str, invocation: str, echo: Callable[[str], None]) -> None:
    """Matrix multiplies of several sizes on each backend and device of the matrix, in this invocation, kept in
    OUT/bench.jsonl: the report sets each cell's GFLOP/s against the best rate its backend reached there in the
    same run (the best measured GEMM rate), never against one from another hour."""
    if matrix.peak_matmul_size:
        bench.run_bench(matrix.backends, matrix.devices, peak_sizes(matrix.peak_matmul_size), PEAK_REPEATS, out_dir,
                        command, echo, invocation=invocation,
                        float32_matmul_precision=matrix.run.float32_matmul_precision)


def run_cell(cell: Cell, timeout_seconds: int, out_dir: Path) -> records.CellEntry:
    """Runs one cell in its own pinned process and returns its results.jsonl entry."""
    started = time.perf_counter()
    # Each attempt's record and stderr stay in OUT/runs/KEY/ATTEMPT (results.jsonl holds a copy): a rerun
    # never deletes the files of an earlier attempt. Keras's progress goes straight to the terminal.
    child = processes.run_pinned(["train", *train_arguments(cell.config)],
                                 out_dir / "runs" / cell.key / records.new_invocation(), timeout_seconds,
                                 show_output=True)
    record = records.read(child.written[0]) if child.written else None
    status, reason = child.status()
    entry = records.CellEntry(
        key=cell.key, seed=cell.config.seed, order=cell.order, repeat=cell.repeat, backend=cell.config.backend,
        device=cell.config.device, model=cell.config.model, status=status, reason=reason,
        log_tail=list(child.log_tail) if status != "ok" else [], wall_seconds=time.perf_counter() - started,
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), host=environment.host(),
        software=environment.software(), config=cell.config.to_dict(), record=record,
        phases=timing.cell_phases(record, child.exited_at) if record and status == "ok" else None)
    if child.interrupted is not None:
        raise CellInterrupted(str(child.interrupted) or "interrupted", entry if status == "ok" else None)
    return entry


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
