"""The matrix on this machine: its rounds one after another, each cell a pinned process of its own."""

from __future__ import annotations

from pathlib import Path

from kerasmnist import records
from kerasmnist.launch import bench, rounds
from kerasmnist.launch.matrix import Matrix, cells
from kerasmnist.launch.rounds import Echo, Outcome


class LocalExecutor:
    def run(self, matrix: Matrix, out_dir: Path, command: str, force: bool, echo: Echo) -> Outcome:
        """Runs every cell not already done; returns the counts. Ctrl-C keeps what finished.

        Each cell's entry keeps `command`, this invocation's id and its round, which the report pairs cells
        by. A round new to the folder gets seeds no cell there used (matrix.cells), so rounds added later never
        repeat an earlier round's seed."""
        records.ensure_writable(out_dir)
        results_path = out_dir / records.RESULTS_FILE
        entries, done = rounds.done_cells(results_path, echo)
        plan = cells(matrix, {entry.key: entry.seed for entry in entries})
        to_run = [cell for cell in plan if force or cell.key not in done]
        outcome = Outcome()
        rounds.note_few_steady_epochs(plan, echo)
        outcome.counts["already done"] = len(plan) - len(to_run)
        if outcome.counts["already done"]:
            echo(f"{outcome.counts['already done']} of {len(plan)} cells already done in {results_path}; "
                 "running the rest (--force reruns them all)")
        if not force:
            rounds.note_reruns(entries, {cell.key for cell in plan}, done, echo)

        invocation = records.new_invocation()
        try:
            if to_run:
                bench.measure_peaks(matrix, out_dir, command, invocation, echo)
        except KeyboardInterrupt:
            outcome.interrupted = True
            echo("interrupted while measuring the matmul peak; rerun the same command to go on")
            return outcome

        progress = rounds.Progress(to_run, echo)
        for round_cells in rounds.rounds(to_run):
            repeat = round_cells[0].repeat
            if matrix.target_ci and repeat >= matrix.rounds and rounds.narrow_enough(
                    matrix.target_ci, repeat, entries, echo):
                break
            stamp = {"command": command, "invocation": invocation, "round": f"{invocation} #{repeat + 1}",
                     "target_ci": matrix.target_ci}
            entries = rounds.run_round(round_cells, matrix.cell_timeout, out_dir, results_path,
                                       lambda cell: stamp, outcome, echo, progress) or entries
            if outcome.interrupted:
                break
        return outcome
