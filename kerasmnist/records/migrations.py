"""Results files of earlier schema versions, brought up to this one: one step per version, on the JSON form.

A step changes only what its version lacked; committed results of every earlier version (tests/fixtures/results,
reports/*/results.jsonl and their archives) are read through them.
"""

from __future__ import annotations

from typing import Any

from kerasmnist.records.schema import CELL_KIND, SCHEMA_VERSION


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


def _v2_to_v3(entry: dict[str, Any]) -> dict[str, Any]:
    """Schema 2 set no float32 policy: on a CPU that is full float32; on a GPU it was each framework's
    own default (TF32 for TensorFlow and JAX on Ampere and newer), which no choice of today's names."""
    precision = "float32" if entry.get("device") == "cpu" else "framework default"
    migrated = _with_config(entry, 3, {"float32_matmul_precision": precision})
    if entry.get("kind") != CELL_KIND:
        migrated["float32_matmul_precision"] = precision
    return migrated


def _v3_to_v4(entry: dict[str, Any]) -> dict[str, Any]:
    """Schema 3 added no XLA flags of its own."""
    return _with_config(entry, 4, {"xla_flags": ""})


def _with_config(entry: dict[str, Any], version: int, added: dict[str, Any]) -> dict[str, Any]:
    """The entry at `version`, a cell's config (and its record's) given the settings `added`."""
    migrated = entry | {"schema_version": version}
    if entry.get("kind") == CELL_KIND:
        migrated["config"] = entry["config"] | added
        if entry.get("record"):
            migrated["record"] = entry["record"] | {"schema_version": version, "config": migrated["config"]}
    return migrated


def _v4_to_v5(entry: dict[str, Any]) -> dict[str, Any]:
    """Schema 4 knew only the built-in models, called without arguments, giving probabilities; it timed no
    inference."""
    migrated = _with_config(entry, 5, {"model_args": {}, "from_logits": False, "inference_batch_size": None})
    record = migrated.get("record") if entry.get("kind") == CELL_KIND else None
    if record:
        migrated["record"] = record | {"model_identity": {"reference": record["model"], "kind": "builtin",
                                                          "arguments": {}, "parameters": record.get("parameters")}}
    return migrated


# schema version -> the step that brings an entry of that version one version up
MIGRATIONS = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4, 4: _v4_to_v5}


def readable(version: Any) -> bool:
    """Whether an entry of schema `version` can be read: this version, or one a migration brings up."""
    return version == SCHEMA_VERSION or version in MIGRATIONS


def migrate(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry of any readable schema version, brought up to this one step by step."""
    while entry["schema_version"] != SCHEMA_VERSION:
        entry = MIGRATIONS[entry["schema_version"]](entry)
    return entry
