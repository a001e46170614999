"""The one way into a pinned process: `spawn` starts every pinned child (a training cell, a matmul
measurement, an environment probe) and returns one typed outcome.

The child is `PYTHON -m kerasmnist.child FOLDER`, given its task (kerasmnist.tasks) whole as JSON on stdin and
the user's environment (`pinning.child_environment`); PYTHON is this interpreter unless another is named (an
environment of its own). It reports back one way: the JSON it wrote into FOLDER, its exit status, and, when it
failed, the one line starting with ERROR_PREFIX (kept in FOLDER/stderr.log).

Each child runs in a process group of its own. A timeout, Ctrl-C, SIGTERM or SIGHUP ends the whole group, and
so does the child's own end: worker processes that a user's model or input pipeline started (torch's
DataLoader workers, multiprocessing) are never left behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kerasmnist import tasks
from kerasmnist.errors import ERROR_PREFIX, UNAVAILABLE_EXIT
from kerasmnist.pinning import child_environment

LOG_TAIL_LINES = 20
STOP_GRACE_SECONDS = 10  # a stopped child's time to write its own record before its group is killed


@dataclass(frozen=True)
class ChildResult:
    """What a pinned child left behind."""

    return_code: int | None  # None: it was stopped at its timeout
    written: tuple[Path, ...]  # the JSON files it wrote into its folder
    log_tail: tuple[str, ...]  # the last lines of its stderr
    timeout_seconds: float | None = None
    interrupted: KeyboardInterrupt | None = None  # Ctrl-C, SIGTERM or SIGHUP reached the parent meanwhile
    exited_at: float | None = None  # time.time() when the parent saw it end: where its timeline ends

    def output(self) -> dict:
        """The JSON the child wrote (its first .json file): call only when status() is ok."""
        return json.loads(self.written[0].read_text(encoding="utf-8"))

    @property
    def error(self) -> str | None:
        """The child's own one-line error, if it printed one."""
        errors = [line[len(ERROR_PREFIX):] for line in self.log_tail if line.startswith(ERROR_PREFIX)]
        return errors[-1] if errors else None

    def status(self) -> tuple[str, str | None]:
        """"ok"; "skipped" (UNAVAILABLE_EXIT with its reason: the backend or device is not there); or "failed",
        and why."""
        if self.return_code is None:
            return "failed", f"timed out after {self.timeout_seconds:g} s"
        if self.return_code == 0 and self.written:
            return "ok", None
        if self.return_code == UNAVAILABLE_EXIT and self.error:
            return "skipped", self.error
        if self.error:
            return "failed", self.error
        last = next((line for line in reversed(self.log_tail) if line.strip()), "no output").strip()
        if self.return_code < 0:  # Popen's way of saying "killed by a signal"
            name = signal.Signals(-self.return_code).name
            # The kernel's out-of-memory killer sends SIGKILL, and says so only in its own log.
            return "failed", f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "") + f": {last}"
        return "failed", f"exit status {self.return_code}: {last}"


def spawn(task: tasks.Task, folder: Path, python: str | None = None, timeout_seconds: float | None = None,
          show_output: bool = False) -> ChildResult:
    """Runs `task` in a pinned child of the interpreter `python` (default: this one) and waits for it. Its
    stderr goes to FOLDER/stderr.log; its stdout (Keras's progress) to the terminal with `show_output`, else
    there too. Ctrl-C, SIGTERM or SIGHUP meanwhile stop the child (it keeps what it finished) and are returned
    in `interrupted`, for the caller to stop at."""
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "stderr.log"
    interrupted = None
    with open(log_path, "w", encoding="utf-8") as log:
        child = subprocess.Popen([python or sys.executable, "-m", "kerasmnist.child", str(folder)],
                                 stdin=subprocess.PIPE, stdout=None if show_output else log, stderr=log,
                                 env=child_environment(), start_new_session=True, text=True)
        try:
            _send(child, tasks.to_json(task, time.time()))
            return_code = child.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            return_code = None
        except KeyboardInterrupt as stop:
            _stop_group(child)
            return_code, interrupted = child.returncode, stop
        finally:
            _end_group(child)
    exited_at = time.time()
    log_tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-LOG_TAIL_LINES:]
    return ChildResult(return_code, tuple(sorted(folder.glob("*.json"))), tuple(log_tail), timeout_seconds,
                       interrupted, exited_at)


def _send(child: subprocess.Popen, message: str) -> None:
    """The task on the child's stdin; a child that died before reading it says why in its log."""
    try:
        child.stdin.write(message)
        child.stdin.close()
    except BrokenPipeError:
        pass


def _stop_group(child: subprocess.Popen) -> None:
    """A stop reached this process alone (the child has a session of its own), so it is passed to the child's
    group as SIGTERM, which the child handles as Ctrl-C (SIGINT would not do: a shell starts background jobs
    with SIGINT ignored, and the child inherits that). It gets a moment to write its own record."""
    _signal_group(child, signal.SIGTERM)
    try:
        child.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass


def _end_group(child: subprocess.Popen) -> None:
    """Kills whatever is left of the child's process group (the child past its timeout or grace, and anything
    it started), then reaps the child."""
    _signal_group(child, signal.SIGKILL)
    child.wait()


def _signal_group(child: subprocess.Popen, number: signal.Signals) -> None:
    try:
        os.killpg(child.pid, number)  # the child leads its group: its pid is the group's id
    except ProcessLookupError:  # nothing left in the group
        pass
