"""The comparison matrix: which cells (backend x device x model x repeat) to run, with what settings.

A matrix comes from a TOML file (a path, or the bare name of one shipped in configs/, e.g. `colab-t4`)
and/or flags, validated like a RunConfig:

    [matrix]
    backends = ["tensorflow", "torch", "jax"]
    devices = ["cpu", "gpu"]
    models = ["cnn", "ffn"]
    implementations = ["keras", "native"]   # default: keras only
    repeats = 3                             # rounds: passes over every cell, each repeat with seed + r
    max_repeats = 8                         # with target_ci: add rounds up to this many ...
    target_ci = 0.05                        # ... until every ratio's 95% interval is within ±5%
    cell_timeout_seconds = 3600
    peak_matmul_size = 4096                 # the GFLOP/s peak each cell is set against; 0: none

    [run]            # any RunConfig key except backend, device, model and implementation
    epochs = 5

    [[overrides]]    # settings for the cells that match (a missing axis matches every value)
    backends = ["tensorflow"]
    models = ["ffn"]
    jit_compile = true
    steps_per_execution = 16

    [[variants]]     # more rows: every matching cell is also run with these settings, in the same rounds
    backends = ["torch"]
    implementations = ["keras"]
    jit_compile = "true"

    [slurm]          # run on a Slurm cluster: each round of each machine kind is one job (kerasmnist.slurm)
    partition = "gpu"                       # also constraint, gres, time_minutes, cpus_per_task, mem_gb,
    parallel = 4                            # setup (lines run on the node first), exclusive (default true)

    [[machines]]     # a kind of node: a name, any [slurm] key it changes, and the devices it runs
    name = "a100"
    constraint = "a100"
    devices = ["gpu"]

Overrides apply in order, so a later one wins where two set the same key. A variant adds a cell beside
each cell it matches (overrides applied first), so a knob and its baseline share every round and the
report can set one against the other with an interval.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from kerasmnist.config import BACKENDS, DEVICES, IMPLEMENTATIONS, MODELS, InvalidValue, RunConfig, coerce, run_config_from
from kerasmnist.errors import ConfigError

CELL_AXES = ("backend", "device", "model", "implementation")
# The configs that come with kerasmnist: the checkout's configs/, which kerasmnist/configs links to, so an
# editable install finds them here and a wheel carries them (package data), and a name works from any folder.
SHIPPED_CONFIGS = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class Override:
    """Settings for the cells whose axes match: `match` maps an axis to the values it matches."""

    match: tuple[tuple[str, tuple[str, ...]], ...]
    settings: tuple[tuple[str, Any], ...]

    def applies_to(self, axes: Mapping[str, str]) -> bool:
        return all(axes[axis] in values for axis, values in self.match)


# The [slurm] keys (each a `compare --slurm-KEY` flag too) and the types they take.
SLURM_KEYS = {"partition": str, "constraint": str, "gres": str, "time_minutes": int, "cpus_per_task": int,
              "mem_gb": (int, float), "setup": (list, tuple), "parallel": int, "exclusive": bool}


@dataclass(frozen=True)
class MachineKind:
    """A kind of Slurm node the matrix runs on: how to ask Slurm for one, and the devices it runs.
    None leaves a setting to the cluster's defaults."""

    name: str
    devices: tuple[str, ...]
    partition: str | None = None
    constraint: str | None = None
    gres: str | None = None
    time_minutes: int | None = None
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    setup: tuple[str, ...] = ()  # shell lines run on the node before kerasmnist
    parallel: int = 4  # rounds of this kind running at once
    exclusive: bool = True  # a benchmark that shares its node measures its neighbours


@dataclass(frozen=True)
class Matrix:
    backends: tuple[str, ...] = BACKENDS
    devices: tuple[str, ...] = ("cpu",)
    models: tuple[str, ...] = MODELS
    implementations: tuple[str, ...] = ("keras",)
    batch_sizes: tuple[int, ...] = ()  # a batch-size sweep; empty: the [run] batch_size alone
    repeats: int = 1  # the rounds always run; with target_ci, the minimum
    max_repeats: int | None = None  # with target_ci: the most rounds to run
    target_ci: float | None = None  # stop adding rounds once every ratio's interval is within ± this share
    cell_timeout_seconds: int = 3600
    peak_matmul_size: int = 4096  # an N x N matrix multiply per backend and device, timed in the same run
    run: RunConfig = RunConfig(progress="epoch")  # backend, device and model are set per cell
    overrides: tuple[Override, ...] = ()
    variants: tuple[Override, ...] = ()  # each matching cell also runs with a variant's settings
    machines: tuple[MachineKind, ...] = ()  # Slurm machine kinds; none: the cells run on this machine

    @property
    def planned_repeats(self) -> int:
        return max(self.repeats, self.max_repeats or 0) if self.target_ci else self.repeats


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
    for repeat in range(matrix.planned_repeats):
        shift = repeat % len(matrix.backends)
        backends = matrix.backends[shift:] + matrix.backends[:shift]
        for model in matrix.models:
            for device in matrix.devices:
                for backend in backends:
                    for implementation in matrix.implementations:
                        for batch_size in matrix.batch_sizes or (matrix.run.batch_size,):
                            axes = {"backend": backend, "device": device, "model": model,
                                    "implementation": implementation}
                            for variant in (None, *(v for v in matrix.variants if v.applies_to(axes))):
                                config = _cell_config(matrix, axes, batch_size, repeat, variant)
                                ordered.append(Cell(config, repeat, len(ordered)))
    return ordered


def _cell_config(matrix: Matrix, axes: dict[str, str], batch_size: int, repeat: int,
                 variant: Override | None = None) -> RunConfig:
    settings: dict[str, Any] = {**axes, "batch_size": batch_size}
    for override in (*matrix.overrides, *([variant] if variant else [])):
        if override.applies_to(axes):
            settings.update(override.settings)
    settings["seed"] = settings.get("seed", matrix.run.seed) + repeat
    try:
        return dataclasses.replace(matrix.run, **settings)
    except InvalidValue as error:  # a setting may suit some cells only (steps_per_execution, not under torch)
        raise InvalidValue(error.key, f"{error.problem} in cell {' '.join(axes.values())}") from None


_MATRIX_KEYS = {"backends": BACKENDS, "devices": DEVICES, "models": MODELS, "implementations": IMPLEMENTATIONS}


def matrix_from(file_values: Mapping[str, Any], overrides: Mapping[str, Any], source: str) -> Matrix:
    """Builds a Matrix from a parsed TOML file's tables and flag overrides (None means not given)."""
    unknown_tables = sorted(set(file_values) - {"matrix", "run", "overrides", "variants", "slurm", "machines"})
    if unknown_tables:
        raise ConfigError(f"{source}: unknown table [{unknown_tables[0]}]; "
                          "allowed: [matrix], [run], [[overrides]], [[variants]], [slurm], [[machines]]")
    overrides = dict(overrides)
    use_slurm = overrides.pop("slurm", None)
    slurm_flags = {key[len("slurm_"):]: overrides.pop(key) for key in list(overrides) if key.startswith("slurm_")}
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
                          f"backends, devices, models, implementations, batch_sizes, repeats, max_repeats, target_ci, "
                          f"cell_timeout_seconds, "
                          f"peak_matmul_size")
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
    for key, minimum in (("repeats", 1), ("cell_timeout_seconds", 1), ("peak_matmul_size", 0)):
        value = matrix_values.get(key, getattr(Matrix, key))
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{where}: {key} must be a whole number of at least {minimum} (got {value!r})")
        numbers[key] = value
    numbers.update(_adaptive(matrix_values, numbers["repeats"], where))
    run_values.setdefault("progress", "epoch")
    matrix = Matrix(**lists, **numbers, run=run_config_from(run_values, where),
                    overrides=_overrides(file_values.get("overrides", []), source, "overrides"),
                    variants=_overrides(file_values.get("variants", []), source, "variants"))
    if use_slurm is not False:
        matrix = dataclasses.replace(matrix, machines=machine_kinds(file_values, slurm_flags, matrix.devices,
                                                                    bool(use_slurm), where))
    try:
        planned = cells(matrix)
    except InvalidValue as error:
        raise ConfigError(f"{where}: {error.key} {error.problem}") from None
    seen: set[str] = set()
    for cell in planned:
        if cell.key in seen:
            raise ConfigError(f"{where}: a [[variants]] table changes nothing for cell {cell.label}, which runs already")
        seen.add(cell.key)
    return matrix


def machine_kinds(file_values: Mapping[str, Any], flags: Mapping[str, Any], devices: tuple[str, ...],
                  asked: bool, where: str) -> tuple[MachineKind, ...]:
    """The Slurm machine kinds: each [[machines]] table over the [slurm] defaults (flags over the table), or
    one kind of the defaults alone. None where there is no [slurm], no [[machines]] and no --slurm."""
    defaults = {**_table(file_values, "slurm", where), **{key: value for key, value in flags.items() if value not in (None, ())}}
    tables = file_values.get("machines", [])
    if not isinstance(tables, list) or not all(isinstance(table, dict) for table in tables):
        raise ConfigError(f"{where}: machines must be tables, each written [[machines]]")
    if not (asked or defaults or tables):
        return ()
    kinds = [_machine_kind(defaults, table, devices, f"{where} [[machines]] {number}")
             for number, table in enumerate(tables, start=1)] if tables else \
        [_machine_kind(defaults, {"name": defaults.get("partition") or "slurm"}, devices, f"{where} [slurm]")]
    names = [kind.name for kind in kinds]
    if len(set(names)) < len(names):
        raise ConfigError(f"{where}: two [[machines]] tables are named {max(names, key=names.count)!r}; "
                          "each kind needs a name of its own")
    return tuple(kinds)


def _machine_kind(defaults: Mapping[str, Any], table: Mapping[str, Any], devices: tuple[str, ...],
                  where: str) -> MachineKind:
    values = {**defaults, **table}
    unknown = sorted(set(values) - set(SLURM_KEYS) - {"name", "devices"})
    if unknown:
        raise ConfigError(f"{where}: unknown Slurm key {unknown[0]}; allowed: name, devices, {', '.join(SLURM_KEYS)}")
    name = values.get("name")
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise ConfigError(f"{where}: a machine kind needs a name = \"...\" (no slash; got {name!r})")
    for key, kind in SLURM_KEYS.items():
        value = values.get(key)
        if value is None:
            continue
        wrong = isinstance(value, bool) and kind is not bool or not isinstance(value, kind)
        if wrong or key == "setup" and not all(isinstance(line, str) for line in value) \
                or kind is int and value < 1 or key == "mem_gb" and value <= 0:
            expected = {str: "a string", int: "a whole number of at least 1", bool: "true or false",
                        (list, tuple): "a list of shell lines"}.get(kind, "a positive number")
            raise ConfigError(f"{where}: {key} must be {expected} (got {value!r})")
    kind_devices = choices(values.get("devices", list(devices)), DEVICES, "devices", where)
    outside = [device for device in kind_devices if device not in devices]
    if outside:
        raise ConfigError(f"{where}: devices has {outside[0]!r}, which the matrix does not run "
                          f"(its devices: {', '.join(devices)})")
    settings = {key: values[key] for key in SLURM_KEYS if values.get(key) is not None}
    settings["setup"] = tuple(settings.get("setup", ()))
    return MachineKind(name=name.strip(), devices=kind_devices, **settings)


def _adaptive(values: Mapping[str, Any], repeats: int, where: str) -> dict[str, Any]:
    """max_repeats and target_ci: rounds are added past `repeats` until the intervals are narrow enough."""
    target, most = values.get("target_ci"), values.get("max_repeats")
    if target is None:
        if most is not None:
            raise ConfigError(f"{where}: max_repeats needs target_ci, the interval width to stop at (e.g. 0.05)")
        return {}
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target < 1:
        raise ConfigError(f"{where}: target_ci must be a share between 0 and 1, e.g. 0.05 for ±5% (got {target!r})")
    most = 3 * repeats if most is None else most
    if isinstance(most, bool) or not isinstance(most, int) or most < max(repeats, 2):
        raise ConfigError(f"{where}: max_repeats must be a whole number of at least repeats ({repeats}) and 2 "
                          f"(got {most!r})")
    return {"target_ci": float(target), "max_repeats": most}


def _overrides(tables: Any, source: str, name: str) -> tuple[Override, ...]:
    """[[overrides]] or [[variants]] tables: the cell axes they match, and the settings they set."""
    if not isinstance(tables, list) or not all(isinstance(table, dict) for table in tables):
        raise ConfigError(f"{source}: {name} must be tables, each written [[{name}]]")
    axes = {f"{axis}s": axis for axis in CELL_AXES}
    parsed = []
    for number, table in enumerate(tables, start=1):
        where = f"{source} [[{name}]] {number}"
        match = tuple((axes[key], choices(value, _MATRIX_KEYS[key], key, where))
                      for key, value in table.items() if key in axes)
        settings = {key: value for key, value in table.items() if key not in axes}
        per_cell = sorted(set(settings) & set(CELL_AXES))
        if per_cell:
            raise ConfigError(f"{where}: {per_cell[0]} is matched with {per_cell[0]}s = [...], not set")
        if not settings:
            raise ConfigError(f"{where}: sets nothing; add a setting such as jit_compile = true")
        parsed.append(Override(match, tuple(coerce(settings, where).items())))
    return tuple(parsed)


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
    """The matrix of a config file, or of a shipped config named bare (`colab-t4`), with `overrides` on top."""
    if path is None:
        return matrix_from({}, overrides, "command line")
    path = shipped_config(str(path)) if len(path.parts) == 1 and path.suffix != ".toml" else path
    try:
        file_values = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    return matrix_from(file_values, overrides, str(path))


def shipped_config(name: str) -> Path:
    path = SHIPPED_CONFIGS / f"{name}.toml"
    if not path.is_file():
        names = ", ".join(sorted(config.stem for config in SHIPPED_CONFIGS.glob("*.toml")))
        raise ConfigError(f"no shipped config named {name!r}; shipped: {names} (or give the path of a .toml file)")
    return path


def _table(values: Mapping[str, Any], name: str, source: str) -> Mapping[str, Any]:
    table = values.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: {name} must be a table [{name}]")
    return table
