"""The run record: one self-describing JSON file per run, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

from kerasmnist.errors import ConfigError, DataError

SCHEMA_VERSION = 1
KIND = "kerasmnist.run"

# Keys every record has, whatever its status; figures are null in a failed record.
TOP_LEVEL_KEYS = (
    "schema_version", "kind", "run_id", "status", "error", "started_at", "finished_at",
    "backend", "device", "resolved_device", "model", "dataset",
    "test_accuracy", "test_loss", "epoch_seconds", "first_epoch_seconds", "steady_epoch_seconds",
    "samples_per_second", "validation_seconds", "load_data_seconds", "build_seconds", "evaluate_seconds",
    "jit_compile", "parameters", "history", "config", "data", "environment",
)
FIGURE_KEYS = (
    "resolved_device", "test_accuracy", "test_loss", "epoch_seconds", "first_epoch_seconds",
    "steady_epoch_seconds", "samples_per_second", "validation_seconds", "build_seconds",
    "evaluate_seconds", "jit_compile", "parameters", "history",
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
    write_json_atomically(path, record)
    return path


def write_json_atomically(path: Path, payload: Any) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                     delete=False, encoding="utf-8") as temporary:
        json.dump(payload, temporary, indent=2, sort_keys=False)
        temporary.write("\n")
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
