"""Pinned child processes, spawned one way, and stopping cleanly.

Every pinned child (a training cell, a matmul benchmark, an environment probe) is
`python -m kerasmnist COMMAND ... --out FOLDER`, started by `run_pinned` with the user's environment
(`backend.child_environment`), and reports back one way: the JSON it wrote into FOLDER, its exit
status, and, when it failed, the one line starting with ERROR_PREFIX that every kerasmnist command
prints (kept in FOLDER/stderr.log). A user sees exit status 2 for every bad input; a pinned child
exits UNAVAILABLE_EXIT instead when its backend or device is not there, so that its parent records
the cell as skipped, and a cell with bad input (missing or corrupt data) as failed.

SIGTERM and SIGHUP are handled as Ctrl-C is, and no child process is left orphaned.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from kerasmnist.child import backend
from kerasmnist.errors import BackendUnavailable, KerasMnistError

ERROR_PREFIX = "kerasmnist: error: "
LOG_TAIL_LINES = 20
UNAVAILABLE_EXIT = 3  # a pinned child's "cannot run here": its backend or device is not there
PINNED_CHILD_VARIABLE = "KERASMNIST_PINNED_CHILD"  # set in every pinned child's environment
SPAWNED_AT_VARIABLE = "KERASMNIST_SPAWNED_AT"  # when its parent started it (time.time()): where its timeline begins


def exit_code(error: KerasMnistError) -> int:
    """The exit status of a command that stopped with `error`."""
    if isinstance(error, BackendUnavailable) and os.environ.get(PINNED_CHILD_VARIABLE):
        return UNAVAILABLE_EXIT
    return error.exit_code


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


def run_pinned(arguments: list[str], folder: Path, timeout_seconds: float | None = None,
               show_output: bool = False) -> ChildResult:
    """Runs `python -m kerasmnist ARGUMENTS --out FOLDER` and waits for it. Its stderr goes to
    FOLDER/stderr.log; its stdout (Keras's progress) to the terminal with `show_output`, else there too."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "kerasmnist", *arguments, "--out", str(folder)]
    log_path = folder / "stderr.log"
    interrupted = None
    with open(log_path, "w", encoding="utf-8") as log:
        child = subprocess.Popen(command, stdout=None if show_output else log, stderr=log,
                                 env=backend.child_environment() | {PINNED_CHILD_VARIABLE: "1",
                                                                    SPAWNED_AT_VARIABLE: repr(time.time())})
        try:
            return_code = child.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            return_code = None
        except KeyboardInterrupt as stop:
            stop_child(child, forward=isinstance(stop, Stopped))
            return_code, interrupted = child.returncode, stop
    exited_at = time.time()
    log_tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-LOG_TAIL_LINES:]
    return ChildResult(return_code, tuple(sorted(folder.glob("*.json"))), tuple(log_tail), timeout_seconds,
                       interrupted, exited_at)


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a scheduler's cancel, `timeout`, a closed terminal, a stopped notebook kernel):
    stop as on Ctrl-C. Unlike Ctrl-C, it reached this process alone, so it is forwarded to the child."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signal_number).name}")
        self.signal_number = signal_number


@contextlib.contextmanager
def stops_cleanly() -> Iterator[None]:
    """SIGTERM and SIGHUP raise Stopped in the main thread while the block runs, as SIGINT raises
    KeyboardInterrupt, so every child is stopped and what finished is kept."""
    def stop(signal_number: int, frame: Any) -> None:
        raise Stopped(signal_number)

    stoppers = [number for number in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if number is not None]
    previous = {number: signal.signal(number, stop) for number in stoppers}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def stop_child(child: subprocess.Popen, forward: bool) -> None:
    """Ctrl-C reached the child too (one process group); any other stop is forwarded to it as SIGTERM,
    which every kerasmnist command handles as Ctrl-C (SIGINT would not do: a shell starts background jobs
    with SIGINT ignored, and the child inherits that). Give it a moment to write its own record, then
    make sure no orphan is left training."""
    if forward:
        child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
