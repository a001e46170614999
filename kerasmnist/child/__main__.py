"""A pinned child: `python -m kerasmnist.child FOLDER`, started by `kerasmnist.launch.processes.spawn`.

It reads one task (kerasmnist.tasks) as JSON on stdin, pins itself and runs it, and writes its JSON into FOLDER.
It reports back as every kerasmnist command does: its exit status, and when it fails the one line starting
with ERROR_PREFIX on stderr. A backend or device that is not there exits UNAVAILABLE_EXIT, so that the parent
records the cell as skipped; bad input (missing or corrupt data) exits 2, and the cell is failed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from kerasmnist import records, tasks
from kerasmnist.errors import ERROR_PREFIX, UNAVAILABLE_EXIT, BackendUnavailable, KerasMnistError
from kerasmnist.stops import exit_status, stops_cleanly


def run(task: tasks.Task, folder: Path, spawned_at: float) -> None:
    """Runs `task` in this process; each task pins the device before it imports Keras or a framework."""
    if isinstance(task, tasks.TrainTask):
        from kerasmnist.child.run import run_and_record, summary

        path, record = run_and_record(task.config, folder, spawned_at)
        print(summary(record, path))
    elif isinstance(task, tasks.MatmulTask):
        from kerasmnist.child import matmul

        entry = matmul.measure(task.backend, task.device, task.sizes, task.repeats, task.float32_matmul_precision)
        records.replace_atomically(folder / "matmul.json", json.dumps(entry.to_json()))
    else:
        from kerasmnist.child import probe

        records.replace_atomically(folder / "probe.json", json.dumps(probe.probe(task.backend, task.device)))


def main() -> None:
    folder = Path(sys.argv[1])
    try:
        with stops_cleanly():
            task, spawned_at = tasks.from_json(sys.stdin.read())
            run(task, folder, spawned_at)
    except KerasMnistError as error:
        print(f"{ERROR_PREFIX}{error}", file=sys.stderr)
        sys.exit(UNAVAILABLE_EXIT if isinstance(error, BackendUnavailable) else error.exit_code)
    except KeyboardInterrupt as stop:
        print(f"kerasmnist: {stop or 'interrupted'}", file=sys.stderr)
        sys.exit(exit_status(stop))
    # Done once its JSON is written: the interpreter's teardown of the framework (about 1 s a cell in the phase
    # split) has nothing left to save.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
