"""The comparison matrix: which cells (backend x device x model x repeat) to run, with what settings.

A matrix comes from a TOML file and/or flags, validated like a RunConfig:

    [matrix]
    backends = ["tensorflow", "torch", "jax"]
    devices = ["cpu", "gpu"]
    models = ["cnn", "ffn"]
    implementations = ["keras", "native"]   # default: keras only
    repeats = 3
    cell_timeout_seconds = 3600

    [run]            # any RunConfig key except backend, device and model
    epochs = 5
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from kerasmnist.config import BACKENDS, DEVICES, IMPLEMENTATIONS, MODELS, RunConfig, run_config_from
from kerasmnist.errors import ConfigError

CELL_AXES = ("backend", "device", "model", "implementation")


@dataclass(frozen=True)
class Matrix:
    backends: tuple[str, ...] = BACKENDS
    devices: tuple[str, ...] = ("cpu",)
    models: tuple[str, ...] = MODELS
    implementations: tuple[str, ...] = ("keras",)
    batch_sizes: tuple[int, ...] = ()  # a batch-size sweep; empty: the [run] batch_size alone
    repeats: int = 1
    cell_timeout_seconds: int = 3600
    run: RunConfig = RunConfig(progress="epoch")  # backend, device and model are set per cell


@dataclass(frozen=True)
class Cell:
    config: RunConfig
    repeat: int
    order: int  # position in the run order

    @property
    def key(self) -> str:
        """Same configuration and repeat, same key: how a rerun knows a cell is done.

        Only settings that differ from the defaults count, so a later kerasmnist that adds a
        setting (with a default that keeps the old behaviour) still recognises earlier cells.
        """
        defaults = RunConfig().to_dict()
        changed = {key: value for key, value in self.config.to_dict().items() if value != defaults[key]}
        identity = json.dumps({"config": changed, "repeat": self.repeat}, sort_keys=True)
        return hashlib.sha256(identity.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        return f"{self.config.backend} {self.config.device} {self.config.model} repeat {self.repeat + 1}"


def cells(matrix: Matrix) -> list[Cell]:
    """Every cell, ordered to be fair to each backend.

    Repeats are interleaved (all cells of repeat 1, then of repeat 2...) and the backend order
    rotates from one repeat to the next, so no backend always runs first or last, when the
    machine may be cooler, warmer or busier. Repeat r uses seed + r: the same seed would repeat
    the same computation, which times the same but says nothing about accuracy's spread.
    """
    ordered = []
    for repeat in range(matrix.repeats):
        shift = repeat % len(matrix.backends)
        backends = matrix.backends[shift:] + matrix.backends[:shift]
        for model in matrix.models:
            for device in matrix.devices:
                for backend in backends:
                    for implementation in matrix.implementations:
                        for batch_size in matrix.batch_sizes or (matrix.run.batch_size,):
                            config = dataclasses.replace(matrix.run, backend=backend, device=device, model=model,
                                                         implementation=implementation, batch_size=batch_size,
                                                         seed=matrix.run.seed + repeat)
                            ordered.append(Cell(config, repeat, len(ordered)))
    return ordered


_MATRIX_KEYS = {"backends": BACKENDS, "devices": DEVICES, "models": MODELS, "implementations": IMPLEMENTATIONS}


def matrix_from(file_values: Mapping[str, Any], overrides: Mapping[str, Any], source: str) -> Matrix:
    """Builds a Matrix from a parsed TOML file's tables and flag overrides (None means not given)."""
    unknown_tables = sorted(set(file_values) - {"matrix", "run"})
    if unknown_tables:
        raise ConfigError(f"{source}: unknown table [{unknown_tables[0]}]; allowed: [matrix], [run]")
    matrix_values = dict(_table(file_values, "matrix", source))
    run_values = dict(_table(file_values, "run", source))
    for key, value in overrides.items():
        if value is None:
            continue
        if key in Matrix.__dataclass_fields__:
            matrix_values[key] = value
        else:
            run_values[key] = value
    where = source if not any(v is not None for v in overrides.values()) else f"{source} with command-line flags"

    unknown = sorted(set(matrix_values) - (set(Matrix.__dataclass_fields__) - {"run"}))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]} in [matrix]; allowed: "
                          f"backends, devices, models, implementations, batch_sizes, repeats, cell_timeout_seconds")
    per_cell = sorted(set(run_values) & set(CELL_AXES))
    if per_cell:
        raise ConfigError(f"{where}: {per_cell[0]} cannot be set in [run]; list it in [matrix] {per_cell[0]}s")
    if run_values.get("precision", "float32") != "float32" and "native" in matrix_values.get("implementations", ()):
        raise ConfigError(f"{where}: native cells run float32 only; leave precision out or drop native")

    lists = {key: choices(matrix_values.get(key, getattr(Matrix, key)), allowed, key, where)
             for key, allowed in _MATRIX_KEYS.items()}
    batch_sizes = matrix_values.get("batch_sizes", ())
    if isinstance(batch_sizes, str):
        try:
            batch_sizes = [int(part) for part in batch_sizes.split(",")]
        except ValueError:
            raise ConfigError(f"{where}: batch_sizes must be whole numbers (got {batch_sizes!r})") from None
    if not isinstance(batch_sizes, (list, tuple)) or any(isinstance(b, bool) or not isinstance(b, int) or b < 1
                                                          for b in batch_sizes):
        raise ConfigError(f"{where}: batch_sizes must be a list of whole numbers of at least 1 (got {batch_sizes!r})")
    lists["batch_sizes"] = tuple(dict.fromkeys(batch_sizes))
    numbers = {}
    for key in ("repeats", "cell_timeout_seconds"):
        value = matrix_values.get(key, getattr(Matrix, key))
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{where}: {key} must be a whole number of at least 1 (got {value!r})")
        numbers[key] = value
    run_values.setdefault("progress", "epoch")
    return Matrix(**lists, **numbers, run=run_config_from(run_values, where))


def choices(value: Any, allowed: tuple[str, ...], key: str, where: str) -> tuple[str, ...]:
    """A list (or comma-separated string) of allowed names, without repeats."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key} must be a non-empty list of strings (got {value!r})")
    bad = [v for v in value if v not in allowed]
    if bad:
        raise ConfigError(f"{where}: {key} has {bad[0]!r}; allowed: {', '.join(allowed)}")
    return tuple(dict.fromkeys(value))


def load_matrix(path: Path | None, overrides: Mapping[str, Any]) -> Matrix:
    if path is None:
        return matrix_from({}, overrides, "command line")
    try:
        file_values = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    return matrix_from(file_values, overrides, str(path))


def _table(values: Mapping[str, Any], name: str, source: str) -> Mapping[str, Any]:
    table = values.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: {name} must be a table [{name}]")
    return table
