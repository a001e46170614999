"""The run record: one self-describing JSON file per run, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kerasmnist.errors import ConfigError, DataError

SCHEMA_VERSION = 2  # 2: rounds and invocations in results entries, contention in run records
KIND = "kerasmnist.run"

# Keys every record has, whatever its status; figures are null in a failed record.
TOP_LEVEL_KEYS = (
    "schema_version", "kind", "run_id", "status", "error", "started_at", "finished_at",
    "backend", "device", "resolved_device", "device_count", "model", "dataset",
    "test_accuracy", "test_loss", "epoch_seconds", "first_epoch_seconds", "steady_epoch_seconds",
    "samples_per_second", "training_flops_per_sample", "achieved_gflops_per_second", "time_to_accuracy",
    "validation_seconds", "load_data_seconds", "build_seconds", "evaluate_seconds",
    "jit_compile", "parameters", "history", "contention", "profile", "config", "data", "environment",
)


def new_record(config: dict[str, Any], environment: dict[str, Any], started_at: str) -> dict[str, Any]:
    """A record with every key present and no figures yet."""
    record: dict[str, Any] = dict.fromkeys(TOP_LEVEL_KEYS)
    record.update(
        schema_version=SCHEMA_VERSION,
        kind=KIND,
        run_id=uuid.uuid4().hex[:12],
        started_at=started_at,
        backend=config["backend"],
        device=config["device"],
        model=config["model"],
        dataset=config["dataset"],
        config=config,
        environment=environment,
    )
    return record


def ensure_writable(out_dir: Path) -> None:
    """Fails before any training when the record could not be written afterwards."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as error:
        raise ConfigError(f"output folder {out_dir} is not writable ({error.strerror})") from None


def write(record: dict[str, Any], out_dir: Path) -> Path:
    """Writes the record under a unique name; a reader never sees a half-written file."""
    stamp = record["started_at"].replace("-", "").replace(":", "").split(".")[0]
    name = f"{stamp}-{record['backend']}-{record['device']}-{record['model']}-{record['run_id']}.json"
    path = out_dir / name
    replace_atomically(path, json.dumps(record, indent=2) + "\n")
    return path


def replace_atomically(path: Path, text: str) -> None:
    """Writes `text` to `path` through a temporary file and a rename: readers see old or new, never half."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                     delete=False, encoding="utf-8") as temporary:
        temporary.write(text)
        temporary.flush()
        os.fsync(temporary.fileno())
    os.replace(temporary.name, path)


def read(path: Path) -> dict[str, Any]:
    """Reads a record, refusing files that are not records of this schema version."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable JSON record ({error})") from None
    if not isinstance(record, dict) or record.get("kind") != KIND:
        raise DataError(f"{path}: not a kerasmnist run record")
    if record.get("schema_version") != SCHEMA_VERSION:
        raise DataError(
            f"{path}: record schema version {record.get('schema_version')} is not the supported "
            f"version {SCHEMA_VERSION}; rerun it with this kerasmnist"
        )
    return record


# The comparison's results file: one JSON object per line, one line per cell.
RESULTS_FILE = "results.jsonl"
CELL_KIND = "kerasmnist.cell"


def new_invocation() -> str:
    """A sortable id for one compare or bench command: when it started, and a random tail."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def read_results(path: Path, kind: str = CELL_KIND) -> tuple[list[dict[str, Any]], list[str]]:
    """The entries of `kind` in a JSON-lines results file, and a line for each line it had to ignore (and why).

    A kill while writing cannot truncate the file (it is replaced whole), but a file copied
    mid-write or edited by hand can hold a bad line: that line is ignored, never the file.
    """
    entries, ignored = [], []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            ignored.append(f"{path}:{number}: not valid JSON (a truncated or corrupt line)")
            continue
        if not isinstance(entry, dict) or entry.get("kind") != kind:
            ignored.append(f"{path}:{number}: not a {kind} entry")
        elif entry.get("schema_version") not in MIGRATIONS and entry.get("schema_version") != SCHEMA_VERSION:
            ignored.append(f"{path}:{number}: schema version {entry.get('schema_version')} is not one this "
                           f"kerasmnist reads (1 to {SCHEMA_VERSION}); read it with the kerasmnist that wrote it")
        else:
            entries.append(migrate(entry))
    return entries, ignored


def _v1_to_v2(entry: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 had no rounds: the cells one command ran as one repeat were one pass over its plan,
    so (command, repeat) stands for the round; peaks are tied to their command the same way."""
    invocation = f"v1 {entry.get('command', '')}".strip()
    migrated = entry | {"schema_version": 2, "invocation": invocation}
    if entry.get("kind") == CELL_KIND:
        migrated["round"] = f"{invocation} #{entry['repeat'] + 1}"
        if entry.get("record"):
            record = entry["record"]
            migrated["record"] = record | {"schema_version": 2, "contention": None}
            if record.get("time_to_accuracy"):
                migrated["record"]["time_to_accuracy"] = record["time_to_accuracy"] | {"resolution": "epoch ends"}
    return migrated


# schema version -> the step that brings an entry of that version one version up
MIGRATIONS = {1: _v1_to_v2}


def migrate(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry of any readable schema version, brought up to this one step by step."""
    while entry["schema_version"] != SCHEMA_VERSION:
        entry = MIGRATIONS[entry["schema_version"]](entry)
    return entry


def write_results(path: Path, entries: list[dict[str, Any]]) -> None:
    """Replaces the results file whole, so a kill at any moment leaves the old or the new file."""
    replace_atomically(path, "".join(json.dumps(entry) + "\n" for entry in entries))
