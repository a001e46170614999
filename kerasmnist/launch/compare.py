"""Runs a comparison matrix, each cell in a fresh pinned process, here or on Slurm.

A fresh process per cell means a backend or device choice can never leak into the next cell,
and a cell that crashes, runs out of memory or hangs past its timeout takes nothing else down.
Every finished cell goes into results.jsonl at once; rerunning the same matrix skips the cells
already done with the same configuration. What runs is the matrix (launch/matrix.py); where it runs is an
executor (launch/executors/), chosen here from the config's [slurm] and [[machines]] tables and the flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from kerasmnist.launch import venvs
from kerasmnist.launch.executors import Executor
from kerasmnist.launch.executors.local import LocalExecutor
from kerasmnist.launch.executors.machines import machine_kinds
from kerasmnist.launch.matrix import Matrix, matrix_from, read_config
from kerasmnist.launch.rounds import Echo, Outcome


def load(path: Path | None, overrides: Mapping[str, Any]) -> tuple[Matrix, Executor]:
    """What to run and where, from a config file (or a shipped config's name) with compare's flags on top."""
    file_values, source = read_config(path)
    return plan_from(file_values, overrides, source)


def plan_from(file_values: Mapping[str, Any], overrides: Mapping[str, Any], source: str) -> tuple[Matrix, Executor]:
    """The matrix of a parsed config and the flags, and its executor: Slurm where the config has [slurm] or
    [[machines]] or --slurm asks for it (unless --no-slurm), else this machine."""
    flags = dict(overrides)
    use_slurm = flags.pop("slurm", None)
    slurm_flags = {key.removeprefix("slurm_"): flags.pop(key) for key in list(flags) if key.startswith("slurm_")}
    matrix = matrix_from(file_values, flags, source)
    kinds = () if use_slurm is False else machine_kinds(file_values, slurm_flags, matrix.devices, bool(use_slurm),
                                                        source)
    if not kinds:
        return matrix, LocalExecutor()
    from kerasmnist.launch.executors.slurm import SlurmExecutor

    return matrix, SlurmExecutor(kinds)


def run_matrix(matrix: Matrix, out_dir: Path, command: str, force: bool = False, echo: Echo = print,
               executor: Executor | None = None) -> Outcome:
    """Runs every cell not already done (all with `force`), here unless another `executor` is given.

    `command` is the command line that asked for the matrix: each cell's entry keeps it, with this
    invocation's id and its round (one pass over the plan: the cells of one repeat, run adjacent in
    time), which the report pairs cells by. Its environments are made first where they are not, and each
    interpreter checked."""
    for line in venvs.ready(matrix.environments, echo):
        echo(line)
    return (executor or LocalExecutor()).run(matrix, out_dir, command, force, echo)
