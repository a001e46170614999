"""The comparison matrix on a Slurm cluster, through submitit: each round of each machine kind is one job.

A round's cells run adjacent in time on one node exactly as a round runs here (rounds.run_round: each
cell its own pinned process, in the fair order), so the pairing every interval rests on holds. A kind's rounds
go in as one job array, at most `parallel` of them running at once. A job writes only into its own folder,
OUT/jobs/JOBID/ (one writer per file: locks on network file systems are not to be trusted); the driver folds
each ended job's entries into OUT/results.jsonl through the locked writer (records.add_result). A rerun folds
what is not folded yet, waits for jobs of an earlier run still queued, and submits only the cells not done.
Ctrl-C, SIGTERM or SIGHUP cancel this run's jobs (scancel), fold what finished, and the run exits 130.

Managed environments ([[environments]] with packages) are made once, by the driver on the login node, before any
job is submitted (compare.run_matrix), in $KERASMNIST_ENV_CACHE (default ~/.cache/kerasmnist/envs): on a cluster,
set it to a folder every node sees (a shared home's default does). A job's cells run with the interpreters as the
driver resolved them (Environment.pinned), whatever the node's own cache folder; a node that does not see one
fails its round, its log saying which.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kerasmnist import records
from kerasmnist.errors import ConfigError
from kerasmnist.launch import bench, rounds
from kerasmnist.launch.environments import CACHE_VARIABLE
from kerasmnist.launch.executors.machines import MachineKind
from kerasmnist.launch.matrix import Cell, Matrix, cells
from kerasmnist.launch.rounds import Echo, Outcome
from kerasmnist.stops import stops_cleanly

JOBS_DIR = "jobs"  # OUT/jobs/JOBID/: one job's results.jsonl, bench.jsonl and runs/
SUBMITIT_DIR = "submitit"  # OUT/jobs/submitit/: submitit's batch scripts and pickles, and each job's logs
PLAN_FILE = "plan.json"  # what a job was to run, written by the driver when it submits the job
FOLDED_FILE = "folded"  # written by the driver once the job's entries are in OUT/results.jsonl
POLL_SECONDS = 5
CANCEL_WAIT_SECONDS = 180  # a cancelled job's running cell gets SIGTERM, then Slurm's KillWait
SLURM_COMMANDS = ("sbatch", "squeue", "scancel", "scontrol", "sacct", "sinfo", "srun")
LOG_TAIL_LINES = 20


def kind_key(cell: Cell, kind: str) -> str:
    """A cell's key on one machine kind: the same cell on two kinds is two results."""
    return cell.key + kind_key_suffix(kind)


def kind_key_suffix(kind: str) -> str:
    return f"@{kind}"


def kind_plan(matrix: Matrix, kind: MachineKind, entries: list[records.CellEntry]) -> list[Cell]:
    """The cells of the kind's devices, seeded against the folder's entries of that kind alone (matrix.cells): a
    round resumed keeps its seeds, a new one takes seeds no earlier round of the kind used. Each kind's rounds are
    seeded as if it had a folder of its own, so in a fresh folder round r has the same seeds on every kind."""
    suffix = kind_key_suffix(kind.name)
    earlier = {entry.key.removesuffix(suffix): entry.seed for entry in entries if entry.key.endswith(suffix)}
    return cells(dataclasses.replace(matrix, devices=kind.devices), earlier)


@dataclass(frozen=True)
class RoundJob:
    """One round of one machine kind: what submitit pickles and runs on the node."""

    matrix: Matrix  # the kind's matrix: its devices only
    kind: str
    cells: tuple[Cell, ...]
    out_dir: Path
    stamp: dict[str, Any]  # command, invocation, round, target_ci

    def __call__(self) -> dict[str, int]:
        import submitit

        environment = submitit.JobEnvironment()
        folder = self.out_dir / JOBS_DIR / environment.job_id
        slurm = {"job_id": environment.job_id, "array_job_id": environment.array_job_id,
                 "array_index": None if environment.array_task_id is None else int(environment.array_task_id),
                 "node": environment.hostname, "partition": os.environ.get("SLURM_JOB_PARTITION")}
        unseen = first_unseen_interpreter(self.cells)
        if unseen:
            raise ConfigError(f"node {environment.hostname} does not see {unseen}: make the environments in a "
                              f"folder every node sees ({CACHE_VARIABLE} on the login node)")
        outcome = Outcome()
        # submitit ignores SIGTERM; a cancelled job stops its cell as compare does on Ctrl-C, keeping what finished.
        with stops_cleanly():
            try:
                bench.measure_peaks(self.matrix, folder, self.stamp["command"], self.stamp["invocation"], print)
            except KeyboardInterrupt:
                return outcome.counts
            rounds.run_round(list(self.cells), self.matrix.cell_timeout, folder,
                              folder / records.RESULTS_FILE,
                              lambda cell: {**self.stamp, "key": kind_key(cell, self.kind), "slurm": slurm,
                                            "machine_kind": self.kind},
                              outcome, lambda line: print(line, flush=True), rounds.Progress(list(self.cells), print))
        return outcome.counts


def first_unseen_interpreter(cells: tuple[Cell, ...]) -> str | None:
    """The first environment interpreter of the cells that this machine does not have, as 'NAME's PATH'."""
    return next((f"environment {cell.environment.name}'s {cell.environment.interpreter}" for cell in cells
                 if cell.environment and not os.path.exists(cell.environment.interpreter)), None)


@dataclass
class Job:
    """A job of ours in the queue, or ended and not yet folded."""

    job_id: str
    name: str
    kind: str
    folder: Path
    cells: int


class SlurmExecutor:
    """Runs the matrix's missing cells on Slurm, a job per round and machine kind, and folds them home."""

    def __init__(self, kinds: tuple[MachineKind, ...]) -> None:
        self.kinds = kinds

    def run(self, matrix: Matrix, out_dir: Path, command: str, force: bool, echo: Echo) -> Outcome:
        submitit = _submitit()
        _check_slurm()
        records.ensure_writable(out_dir)
        # The environments were made here (compare.run_matrix): the jobs take their folders as resolved here.
        matrix = dataclasses.replace(matrix, environments=tuple(environment.pinned()
                                                                for environment in matrix.environments))
        driver = Driver(matrix, self.kinds, out_dir.resolve(), command, echo)
        try:
            driver.run(submitit, force)
        except KeyboardInterrupt as stop:
            driver.outcome.interrupted = True
            driver.cancel(f"{stop or 'interrupted'}: cancelling this run's Slurm jobs")
            echo(f"the cells finished are kept in {driver.results_path}; rerun the same command to run the rest")
        except ConfigError:
            driver.cancel("Slurm refused a job: cancelling the jobs submitted before it")
            raise
        return driver.outcome


class Driver:
    """Submits the rounds, watches the queue, and folds each ended job's entries home."""

    def __init__(self, matrix: Matrix, kinds: tuple[MachineKind, ...], out_dir: Path, command: str,
                 echo: Echo) -> None:
        self.matrix, self.kinds, self.out_dir, self.command, self.echo = matrix, kinds, out_dir, command, echo
        self.results_path = out_dir / records.RESULTS_FILE
        self.jobs_dir = out_dir / JOBS_DIR
        self.outcome = Outcome()
        self.invocation = records.new_invocation()
        self.plans: dict[str, list[Cell]] = {}  # each kind's cells, once the earlier jobs are folded
        self.active: dict[str, Job] = {}
        self.names: set[str] = set()  # the job names of this run's submissions, submitted or being submitted
        self.submitted_rounds: set[tuple[str, int]] = set()
        self.seconds: list[float] = []  # the wall seconds of the cells finished in this run
        self.last_progress = ""

    def run(self, submitit: Any, force: bool) -> None:
        self.adopt_earlier_jobs()
        self.wait()
        entries, done = rounds.done_cells(self.results_path, self.echo)
        self.plans = {kind.name: kind_plan(self.matrix, kind, entries) for kind in self.kinds}
        rounds.note_few_steady_epochs([cell for plan in self.plans.values() for cell in plan], self.echo)
        total = sum(len(plan) for plan in self.plans.values())
        already = 0 if force else sum(kind_key(cell, kind) in done for kind, plan in self.plans.items() for cell in plan)
        self.outcome.counts["already done"] = already
        if already:
            self.echo(f"{already} of {total} cells already done in {self.results_path}; "
                      "submitting the rest (--force reruns them all)")
        if not force:
            rounds.note_reruns(entries, {kind_key(cell, kind) for kind, plan in self.plans.items() for cell in plan},
                               done, self.echo)
        submitted = self.matrix.rounds
        while True:
            self.submit(submitit, submitted, force)
            self.wait()
            if not self.matrix.target_ci or submitted >= self.matrix.planned_rounds:
                return
            entries, _ = rounds.done_cells(self.results_path, self.echo)
            if rounds.narrow_enough(self.matrix.target_ci, submitted, entries, self.echo):
                return
            submitted = min(self.matrix.planned_rounds, submitted + max(kind.parallel for kind in self.kinds))

    def adopt_earlier_jobs(self) -> None:
        """Job folders an earlier run left unfolded: their jobs are watched if still queued, else folded now."""
        folders = sorted(self.jobs_dir.glob(f"*/{PLAN_FILE}")) if self.jobs_dir.is_dir() else []
        unfolded = [(path.parent, json.loads(path.read_text(encoding="utf-8"))) for path in folders
                    if not (path.parent / FOLDED_FILE).exists()]
        queued = _queue(sorted({plan["name"] for _, plan in unfolded}))
        for folder, plan in unfolded:
            job = Job(folder.name, plan["name"], plan["kind"], folder, len(plan["cells"]))
            if queued is None or job.job_id in queued:  # squeue not answering: wait() asks again
                self.echo(f"{job.kind}: job {job.job_id} of an earlier run is still queued: waiting for it")
                self.active[job.job_id] = job
                self.names.add(job.name)
            else:
                self.fold(job, record_missing=True)

    def submit(self, submitit: Any, below: int, force: bool) -> None:
        """Each kind's rounds below `below` not submitted yet in this run, with their cells not done, as a job array."""
        _, done = rounds.done_cells(self.results_path, self.echo)
        for kind in self.kinds:
            jobs = []
            for round_cells in rounds.rounds(self.plans[kind.name]):
                repeat = round_cells[0].repeat
                if repeat >= below or (kind.name, repeat) in self.submitted_rounds:
                    continue
                self.submitted_rounds.add((kind.name, repeat))
                missing = tuple(cell for cell in round_cells if force or kind_key(cell, kind.name) not in done)
                if missing:
                    stamp = {"command": self.command, "invocation": self.invocation,
                             "round": f"{self.invocation} {kind.name} #{repeat + 1}", "target_ci": self.matrix.target_ci}
                    jobs.append(RoundJob(dataclasses.replace(self.matrix, devices=kind.devices),
                                         kind.name, missing, self.out_dir, stamp))
            if jobs:
                self.submit_kind(submitit, kind, jobs)

    def submit_kind(self, submitit: Any, kind: MachineKind, jobs: list[RoundJob]) -> None:
        name = f"kerasmnist-{kind.name}-{self.invocation}"
        self.names.add(name)
        executor = submitit.SlurmExecutor(folder=self.jobs_dir / SUBMITIT_DIR)
        executor.update_parameters(
            job_name=name, partition=kind.partition, constraint=kind.constraint, gres=kind.gres,
            time=kind.time_minutes, cpus_per_task=kind.cpus_per_task,
            mem=None if kind.mem_gb is None else f"{round(kind.mem_gb * 1024)}M",
            exclusive=True if kind.exclusive else None, array_parallelism=kind.parallel,
            setup=["set -e", *kind.setup])  # a setup line that fails ends the job, with its message in the log
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's refusal; it is said once below
                submitted = executor.submit_array(jobs)
        except (submitit.core.utils.FailedJobError, subprocess.CalledProcessError, OSError) as error:
            raise ConfigError(f"Slurm refused the jobs of machine kind {kind.name}: {_slurm_message(str(error))}") \
                from None
        for job, round_job in zip(submitted, jobs):
            folder = self.jobs_dir / job.job_id
            folder.mkdir(parents=True, exist_ok=True)
            plan = {"name": name, "kind": kind.name, "job_id": job.job_id, "stamp": round_job.stamp,
                    "cells": [{"key": kind_key(cell, kind.name), "order": cell.order, "repeat": cell.repeat,
                               "config": cell.config.to_dict(),
                               **({"model_code": code.to_json()} if (code := cell.model_code) else {})}
                              for cell in round_job.cells]}
            records.replace_atomically(folder / PLAN_FILE, json.dumps(plan, indent=2) + "\n")
            self.active[job.job_id] = Job(job.job_id, name, kind.name, folder, len(round_job.cells))
        self.echo(f"{kind.name}: submitted {len(jobs)} round{'s' * (len(jobs) > 1)} as "
                  f"{submitted[0].job_id.split('_')[0]} ({sum(len(job.cells) for job in jobs)} cells, "
                  f"at most {kind.parallel} at once)")

    def wait(self) -> None:
        """Until none of the watched jobs is queued: progress per kind, and each ended job folded home."""
        while self.active:
            queued = _queue(sorted(self.names))
            if queued is not None:
                for job_id in [job_id for job_id in self.active if job_id not in queued]:
                    self.fold(self.active.pop(job_id), record_missing=True)
                self.progress(queued)
            if self.active:
                time.sleep(POLL_SECONDS)

    def progress(self, queued: dict[str, str]) -> None:
        lines = []
        for kind in self.kinds:
            jobs = [job for job in self.active.values() if job.kind == kind.name]
            if not jobs:
                continue
            pending = sum(queued.get(job.job_id) == "PENDING" for job in jobs)
            finished = [entry for job in jobs for entry in _entries(job.folder / records.RESULTS_FILE)]
            remaining = sum(job.cells for job in jobs) - len(finished)
            seconds = self.seconds + [entry.wall_seconds for entry in finished]
            left = (f", about {rounds.duration_text(statistics.fmean(seconds) * remaining / min(kind.parallel, len(jobs)))}"
                    " left" if seconds and remaining else "")
            lines.append(f"{kind.name}: {pending} jobs pending, {len(jobs) - pending} running; "
                         f"{len(finished)} of {len(finished) + remaining} cells done{left}")
        text = "; ".join(lines)
        if text and text != self.last_progress:
            self.echo(text)
            self.last_progress = text

    def fold(self, job: Job, record_missing: bool) -> None:
        """The ended job's entries into OUT/results.jsonl; the cells it did not finish recorded failed with
        Slurm's state and reason (unless this run cancelled it: those are simply not done)."""
        plan = json.loads((job.folder / PLAN_FILE).read_text(encoding="utf-8"))
        entries = _entries(job.folder / records.RESULTS_FILE)
        for entry in entries:
            rounds.save_entry(self.results_path, entry, self.outcome, lambda line: None)
            self.seconds.append(entry.wall_seconds)
        bench_path = job.folder / records.BENCH_FILE
        for entry in (records.read_results(bench_path, records.BENCH_KIND)[0] if bench_path.exists() else []):
            records.add_result(self.out_dir / records.BENCH_FILE, entry)
        home = {entry.key for entry in entries}
        missing = [cell for cell in plan["cells"] if cell["key"] not in home]
        state, reason = _final_state(job.job_id)
        said = f"{job.kind}: job {job.job_id} {state}, {len(entries)} of {len(plan['cells'])} cells home"
        if missing and record_missing:
            log_tail = _log_tail(self.jobs_dir / SUBMITIT_DIR, job.job_id)
            why = f"Slurm job {job.job_id} ended {state}" + (f" ({reason})" if reason else "") + \
                (f": {log_tail[-1]}" if log_tail else "")
            for cell in missing:
                rounds.save_entry(self.results_path, _failed_entry(cell, plan, job, why, log_tail), self.outcome,
                              lambda line: None)
            said += f"; {len(missing)} recorded failed: {why}"
        self.echo(said)
        records.replace_atomically(job.folder / FOLDED_FILE, f"{datetime.now(timezone.utc).isoformat()}\n")

    def cancel(self, why: str) -> None:
        """Cancels every job of this run (by name: a job whose submission the stop cut short included), waits
        until none is queued, and folds what finished."""
        if not self.names:
            return
        if self.active:
            self.echo(why)
        subprocess.run(["scancel", f"--name={','.join(sorted(self.names))}"], capture_output=True, timeout=60)
        deadline = time.monotonic() + CANCEL_WAIT_SECONDS
        try:
            while _queue(sorted(self.names)) != {} and time.monotonic() < deadline:
                time.sleep(1)
        except KeyboardInterrupt:
            pass  # a second stop: the jobs are cancelled already; fold what is there
        for job in list(self.active.values()):
            self.fold(job, record_missing=False)
        self.active.clear()


def _entries(path: Path) -> list[records.CellEntry]:
    return records.read_results(path)[0] if path.exists() else []


def _failed_entry(cell: dict[str, Any], plan: dict[str, Any], job: Job, why: str,
                  log_tail: list[str]) -> records.CellEntry:
    config = cell["config"]
    return records.CellEntry(
        key=cell["key"], seed=config["seed"], order=cell["order"], repeat=cell["repeat"], backend=config["backend"],
        device=config["device"], model=config["model"], status="failed", reason=why, log_tail=log_tail,
        wall_seconds=0.0, finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), host={},
        config=config, record=None, **plan["stamp"], machine_kind=job.kind,
        model_code=records.CodeIdentity.from_json(cell["model_code"]) if cell.get("model_code") else None,
        slurm={"job_id": job.job_id, "array_job_id": job.job_id.split("_")[0] if "_" in job.job_id else None,
               "array_index": int(job.job_id.split("_")[1]) if "_" in job.job_id else None, "node": None,
               "partition": None})


def _submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise ConfigError('running on Slurm needs submitit, which is not installed: pip install "kerasmnist[slurm]"'
                          " (or --no-slurm to run here)") from None
    return submitit


def _check_slurm() -> None:
    missing = [name for name in SLURM_COMMANDS if shutil.which(name) is None]
    if missing:
        raise ConfigError(f"no Slurm commands on this machine ({missing[0]} not found): run on the cluster's "
                          "login node, or --no-slurm to run here")
    answer = _slurm(["sinfo", "--noheader", "--format=%P"])
    if answer.returncode != 0:
        raise ConfigError(f"Slurm does not answer here: {_slurm_message(answer.stderr)}")


def _slurm(arguments: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(arguments, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(arguments, 1, "", f"{arguments[0]}: no answer within 60 s")
    except FileNotFoundError:  # a command gone from PATH since the start (sacct on a cluster without it)
        return subprocess.CompletedProcess(arguments, 127, "", f"{arguments[0]}: command not found")


def _slurm_message(text: str) -> str:
    """Slurm's own words: the last line that says error, else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    return (errors or lines or ["no message"])[-1].split("error: ")[-1]


def _queue(names: list[str]) -> dict[str, str] | None:
    """job id -> state of our jobs still in the queue, array tasks one by one; None if squeue did not answer."""
    if not names:
        return {}
    answer = _slurm(["squeue", "--noheader", "--array", "--format=%i|%T", f"--name={','.join(names)}"])
    if answer.returncode != 0:
        print(f"squeue did not answer ({_slurm_message(answer.stderr)}); asking again", file=sys.stderr)
        return None
    return dict(line.split("|", 1) for line in answer.stdout.split() if "|" in line)


def _final_state(job_id: str) -> tuple[str, str | None]:
    """An ended job's state and reason: from scontrol while the controller remembers it, else sacct."""
    answer = _slurm(["scontrol", "show", "job", "--oneliner", job_id])
    if answer.returncode == 0:
        fields = dict(part.split("=", 1) for part in answer.stdout.split() if "=" in part)
        reason = fields.get("Reason")
        exit_code = fields.get("ExitCode", "0:0")
        details = ", ".join(part for part in (reason if reason not in (None, "None") else "",
                                              f"exit {exit_code}" if exit_code != "0:0" else "") if part)
        return fields.get("JobState", "UNKNOWN"), details or None
    answer = _slurm(["sacct", "--noheader", "--parsable2", "--allocations", "--format=State,ExitCode", f"--jobs={job_id}"])
    if answer.returncode == 0 and answer.stdout.strip():
        state, _, exit_code = answer.stdout.splitlines()[0].partition("|")
        return state.split()[0], None if exit_code == "0:0" else f"exit {exit_code}"
    return "UNKNOWN", None


def _log_tail(submitit_dir: Path, job_id: str) -> list[str]:
    """The last lines of the job's stderr log (setup lines and the node's Python write there)."""
    from submitit.core.utils import JobPaths

    path = JobPaths(submitit_dir, job_id=job_id, task_id=0).stderr
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if line.strip()][-LOG_TAIL_LINES:]
