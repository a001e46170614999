"""Where a matrix runs: each executor is handed the matrix and runs its rounds through `launch.rounds`, here
(`local.LocalExecutor`) or as Slurm jobs (`slurm.SlurmExecutor`). `launch.compare` chooses one; no executor
imports it."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from kerasmnist.launch.matrix import Matrix
from kerasmnist.launch.rounds import Echo, Outcome


class Executor(Protocol):
    def run(self, matrix: Matrix, out_dir: Path, command: str, force: bool, echo: Echo) -> Outcome:
        """Runs every cell of `matrix` not already done in `out_dir` (all of them with `force`), saving each
        finished cell at once; Ctrl-C, SIGTERM or SIGHUP keep what finished (Outcome.interrupted)."""
