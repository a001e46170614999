"""The comparison matrix: which cells (backend x device x model x round) to run, with what settings.

A matrix comes from a TOML file (a path, or the bare name of one shipped in configs/, e.g. `colab-t4`)
and/or flags, validated like a RunConfig:

    [matrix]
    backends = ["tensorflow", "torch", "jax"]
    devices = ["cpu", "gpu"]
    models = ["cnn", "ffn"]
    implementations = ["keras", "native"]   # default: keras only
    rounds = 3                              # passes over every cell (default 3; `repeats` is read as rounds)
    max_rounds = 8                          # with target_ci: add rounds up to this many ...
    target_ci = 0.05                        # ... until every ratio's 95% interval is within ±5%
    cell_timeout = 3600                     # seconds (`cell_timeout_seconds` is read too)
    peak_matmul_size = 4096                 # the GFLOP/s peak each cell is set against; 0: none
    accuracy_margin = 1.0                   # points of test accuracy within which a row "learns as well"

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

    [slurm]          # run on a Slurm cluster: each round of each machine kind is one job (kerasmnist.launch.executors.slurm)
    partition = "gpu"                       # also constraint, gres, time_minutes, cpus_per_task, mem_gb,
    parallel = 4                            # setup (lines run on the node first), exclusive (default true)

    [[machines]]     # a kind of node: a name, any [slurm] key it changes, and the devices it runs
    name = "a100"
    constraint = "a100"
    devices = ["gpu"]

    [[environments]] # a Python environment that cells run in (launch/environments.py); also --env, --envs
    name = "torch-2.14"
    packages = ["torch==2.14.1"]            # or python = "/path/to/venv/bin/python", one you made
    backends = ["torch"]                    # each backend's cells run once in each environment serving it
    headline = true                         # the report ranks its backends in it (default: their newest one)

Overrides apply in order, so a later one wins where two set the same key. A variant adds a cell beside
each cell it matches (overrides applied first), so a knob and its baseline share every round and the
report can set one against the other with an interval.

Every key is also a `kerasmnist compare` flag of the same name (rounds: --rounds), which wins over the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from kerasmnist.config import (ACCURACY_MARGIN_POINTS, BACKENDS, BUILTIN_MODELS, DEVICES, IMPLEMENTATIONS, MODELS,
                               InvalidValue, RunConfig, accuracy_margin, coerce, run_config_from, suggestion)
from kerasmnist.errors import ConfigError, UserCodeError
from kerasmnist.launch import environments
from kerasmnist.launch.environments import Environment
from kerasmnist.records import CodeIdentity
from kerasmnist.references import Reference, is_reference

CELL_AXES = ("backend", "device", "model", "implementation")
# The configs that come with kerasmnist: the checkout's configs/, which kerasmnist/configs links to, so an
# editable install finds them here and a wheel carries them (package data), and a name works from any folder.
SHIPPED_CONFIGS = Path(__file__).parent.parent / "configs"


@dataclass(frozen=True)
class Override:
    """Settings for the cells whose axes match: `match` maps an axis to the values it matches."""

    match: tuple[tuple[str, tuple[str, ...]], ...]
    settings: tuple[tuple[str, Any], ...]

    def applies_to(self, axes: Mapping[str, str]) -> bool:
        return all(axes[axis] in values for axis, values in self.match)


@dataclass(frozen=True)
class Matrix:
    backends: tuple[str, ...] = BACKENDS
    devices: tuple[str, ...] = ("cpu",)
    models: tuple[str, ...] = MODELS
    implementations: tuple[str, ...] = ("keras",)
    batch_sizes: tuple[int, ...] = ()  # a batch-size sweep; empty: the [run] batch_size alone
    rounds: int = 3  # the rounds always run; with target_ci, the minimum. 3: the fewest that give an interval
    max_rounds: int | None = None  # with target_ci: the most rounds to run
    target_ci: float | None = None  # stop adding rounds once every ratio's interval is within ± this share
    cell_timeout: int = 3600  # seconds
    accuracy_margin: float = ACCURACY_MARGIN_POINTS  # the report's "learns as well" margin, points of test accuracy
    peak_matmul_size: int = 4096  # an N x N matrix multiply per backend and device, timed in the same run
    run: RunConfig = RunConfig(progress="epoch")  # backend, device and model are set per cell
    overrides: tuple[Override, ...] = ()
    variants: tuple[Override, ...] = ()  # each matching cell also runs with a variant's settings
    environments: tuple[Environment, ...] = ()  # where each backend's cells run; none serving it: here

    @property
    def headline_environments(self) -> tuple[str, ...]:
        """The environments marked `headline = true`: the report ranks their backends in them, not in the newest."""
        return tuple(environment.name for environment in self.environments if environment.headline)

    def serving(self, backend: str) -> tuple[Environment | None, ...]:
        """The environments a backend's cells run in, each a cell of its own; None: kerasmnist's own."""
        return tuple(environment for environment in self.environments if backend in environment.backends) or (None,)

    @property
    def planned_rounds(self) -> int:
        return max(self.rounds, self.max_rounds or 0) if self.target_ci else self.rounds


# The keys of [matrix] (Matrix's fields less the other tables), and the older names still read as them.
MATRIX_KEYS = ("backends", "devices", "models", "implementations", "batch_sizes", "rounds", "max_rounds", "target_ci",
               "cell_timeout", "peak_matmul_size", "accuracy_margin")
OLD_MATRIX_KEYS = {"repeats": "rounds", "max_repeats": "max_rounds", "cell_timeout_seconds": "cell_timeout"}


@dataclass(frozen=True)
class Cell:
    config: RunConfig
    repeat: int
    order: int  # position in the run order
    # What tells it from the other cells of its axes in a round: a sweep's batch size, a variant's settings.
    named: tuple[tuple[str, Any], ...] = ()
    environment: Environment | None = None  # the Python environment it runs in; None: kerasmnist's own

    @property
    def key(self) -> str:
        """Same configuration and repeat, same key: how a rerun knows a cell is done.

        Only settings that differ from the defaults count, so a later kerasmnist that adds a
        setting (with a default that keeps the old behaviour) still recognises earlier cells.
        A user's model or loader counts by its source's hash too: after an edit, the cell runs again.
        An environment counts by its name, where one is given.
        """
        defaults = RunConfig().to_dict()
        changed = {key: value for key, value in self.config.to_dict().items() if value != defaults[key]}
        sources = {spec: Reference(spec, key).identity()["source_sha256"]
                   for key, spec in (("model", self.config.model), ("dataset", self.config.dataset))
                   if is_reference(spec)}
        identity = json.dumps({"config": changed, "repeat": self.repeat, **({"sources": sources} if sources else {}),
                               **({"environment": self.environment.name} if self.environment else {})},
                              sort_keys=True)
        return hashlib.sha256(identity.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        """'torch cpu ffn round 1'; with what tells it from its round's other cells of those axes: 'torch cpu ffn
        native round 1', 'torch cpu ffn batch_size=64 jit_compile=true round 1', 'torch cpu ffn in torch-2.14
        round 1'."""
        named = [*(["native"] if self.config.implementation == "native" else []),
                 *(f"{key}={_setting_text(value)}" for key, value in self.named),
                 *([f"in {self.environment.name}"] if self.environment else [])]
        return " ".join([self.config.backend, self.config.device, self.config.model, *named,
                         f"round {self.repeat + 1}"])

    @property
    def model_code(self) -> CodeIdentity | None:
        """A user's model as found and hashed here, without importing it; None for a built-in, and for a file that
        is gone (the cell fails, saying so)."""
        if not is_reference(self.config.model):
            return None
        try:
            return CodeIdentity.from_json(Reference(self.config.model, "model").identity())
        except UserCodeError:
            return None


def _setting_text(value: Any) -> str:
    """A setting's value as a TOML file writes it, less a string's quotes: true, 64, channels_first, [256, 128]."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}={_setting_text(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_setting_text(item) for item in value) + "]"
    return json.dumps(value)


def cells(matrix: Matrix, earlier: Mapping[str, int] | None = None) -> list[Cell]:
    """Every cell, ordered to be fair to each backend.

    Rounds are interleaved (all cells of round 1, then of round 2...) and the backend order
    rotates from one round to the next, so no backend always runs first or last, when the
    machine may be cooler, warmer or busier. Each round has a seed of its own (seed + the round's
    offset): the same seed would repeat the same computation, which times the same but says nothing
    about accuracy's spread. `earlier` maps the key of each cell already in the results folder to
    its seed; `_seed_offset` says how a round's offset is chosen against them.
    """
    ordered: list[Cell] = []
    offset = -1
    for repeat in range(matrix.planned_rounds):
        offset = _seed_offset(matrix, repeat, offset + 1, earlier or {})
        ordered += [dataclasses.replace(cell, order=len(ordered) + index)
                    for index, cell in enumerate(_round(matrix, repeat, offset))]
    return ordered


def _seed_offset(matrix: Matrix, repeat: int, first: int, earlier: Mapping[str, int]) -> int:
    """The offset added to the seeds of round `repeat`: the first from `first` on (each round's above the
    last's) at which either a cell of the round is already in the folder (the round is resumed: its done
    cells keep their keys) or no cell of the folder used any of the round's seeds (a new round, with seeds
    no earlier round used). In a fresh folder round r gets offset r, as it always did."""
    used = set(earlier.values())
    offset = first
    while True:
        round_cells = _round(matrix, repeat, offset)
        if any(cell.key in earlier for cell in round_cells) or \
                used.isdisjoint(cell.config.seed for cell in round_cells):
            return offset
        offset += 1


def _round(matrix: Matrix, repeat: int, seed_offset: int) -> list[Cell]:
    """One round's cells in run order (their `order` is set by `cells`); a backend's cells in each environment
    serving it run one after another, their order turning each round."""
    backends = _rotated(tuple(matrix.backends), repeat)
    round_cells = []
    for model in matrix.models:
        for device in matrix.devices:
            for backend in backends:
                for implementation in matrix.implementations:
                    for batch_size in matrix.batch_sizes or (matrix.run.batch_size,):
                        axes = {"backend": backend, "device": device, "model": model,
                                "implementation": implementation}
                        swept = (("batch_size", batch_size),) if len(matrix.batch_sizes) > 1 else ()
                        for variant in _rotated((None, *(v for v in matrix.variants if v.applies_to(axes))), repeat):
                            config = _cell_config(matrix, axes, batch_size, seed_offset, variant)
                            named = swept + (variant.settings if variant else ())
                            round_cells += [Cell(config, repeat, 0, named, environment)
                                            for environment in _rotated(matrix.serving(backend), repeat)]
    return round_cells


def _rotated(items: tuple, repeat: int) -> tuple:
    """The items in an order that turns by one each round, as the backends do: a row and its variants run
    adjacent, and none is always first (machine drift within a round would favour it)."""
    shift = repeat % len(items)
    return items[shift:] + items[:shift]


def _cell_config(matrix: Matrix, axes: dict[str, str], batch_size: int, seed_offset: int,
                 variant: Override | None = None) -> RunConfig:
    settings: dict[str, Any] = {**axes, "batch_size": batch_size}
    for override in (*matrix.overrides, *([variant] if variant else [])):
        if override.applies_to(axes):
            settings.update(override.settings)
    settings["seed"] = settings.get("seed", matrix.run.seed) + seed_offset
    if axes["model"] != "ffn":  # [run] hidden = [...] sizes the ffn of a matrix that has other models too
        settings["hidden"] = RunConfig.hidden
    try:
        return dataclasses.replace(matrix.run, **settings)
    except InvalidValue as error:  # a setting may suit some cells only (steps_per_execution, not under torch)
        raise InvalidValue(error.key, f"{error.problem} in cell {' '.join(axes.values())}") from None


_MATRIX_KEYS = {"backends": BACKENDS, "devices": DEVICES, "models": BUILTIN_MODELS, "implementations": IMPLEMENTATIONS}


def matrix_from(file_values: Mapping[str, Any], overrides: Mapping[str, Any], source: str) -> Matrix:
    """Builds a Matrix from a parsed TOML file's tables and flag overrides (None means not given)."""
    unknown_tables = sorted(set(file_values) - {"matrix", "run", "overrides", "variants", "slurm", "machines",
                                                "environments"})
    if unknown_tables:
        raise ConfigError(f"{source}: unknown table [{unknown_tables[0]}]; "
                          "allowed: [matrix], [run], [[overrides]], [[variants]], [slurm], [[machines]], "
                          "[[environments]]")
    overrides = dict(overrides)
    chosen_environments = environments.chosen(file_values.get("environments", []), overrides.pop("envs", None),
                                              overrides.pop("env", None), source)
    environments.check_headline_marks(chosen_environments, source)
    matrix_values = _new_names(table_of(file_values, "matrix", source), source)
    run_values = dict(table_of(file_values, "run", source))
    for key, value in overrides.items():
        if value is None:
            continue
        if key in MATRIX_KEYS:
            matrix_values[key] = value
        else:
            run_values[key] = value
    flags = source != "command line" and any(value is not None for value in overrides.values())
    where = f"{source} with command-line flags" if flags else source

    unknown = sorted(set(matrix_values) - set(MATRIX_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]} in [matrix]; allowed: {', '.join(MATRIX_KEYS)}")
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
    lists["batch_sizes"] = without_repeats(batch_sizes, "batch_sizes", where)
    numbers = {}
    for key, minimum in (("rounds", 1), ("cell_timeout", 1), ("peak_matmul_size", 0)):
        value = matrix_values.get(key, getattr(Matrix, key))
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{where}: {key} must be a whole number of at least {minimum} (got {value!r})")
        numbers[key] = value
    numbers.update(_adaptive(matrix_values, numbers["rounds"], where))
    numbers["accuracy_margin"] = accuracy_margin(matrix_values.get("accuracy_margin", Matrix.accuracy_margin),
                                                 f"{where}: accuracy_margin")
    run_values.setdefault("progress", "epoch")
    # [run] is every cell's template, the model set per cell; hidden sizes sizes the ffn cells, so the template
    # is checked as an ffn's.
    template = {"model": "ffn", **run_values} if "hidden" in run_values else run_values
    matrix = Matrix(**lists, **numbers, run=run_config_from(template, where, table="[run]"),
                    overrides=_overrides(file_values.get("overrides", []), source, "overrides"),
                    variants=_overrides(file_values.get("variants", []), source, "variants"),
                    environments=chosen_environments)
    try:
        planned = cells(matrix)
    except InvalidValue as error:
        raise ConfigError(f"{where}: {error.key} {error.problem}") from None
    seen: set[str] = set()
    for cell in planned:
        if cell.key in seen:
            raise ConfigError(f"{where}: a [[variants]] table changes nothing for cell {cell.label}, which runs already")
        seen.add(cell.key)
        if cell.config.epochs < 2:
            raise ConfigError(f"{where}: epochs must be at least 2 to compare (got {cell.config.epochs} for cell "
                              f"{cell.label}): the comparison ranks steady epochs, epoch 2 on; the first "
                              "includes compiling and warming up")
    return matrix


def _new_names(table: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A [matrix] table with its older key names (repeats, max_repeats, cell_timeout_seconds) read as today's."""
    renamed = {OLD_MATRIX_KEYS.get(key, key): value for key, value in table.items()}
    both = [old for old, new in OLD_MATRIX_KEYS.items() if old in table and new in table]
    if both:
        raise ConfigError(f"{source}: [matrix] sets both {OLD_MATRIX_KEYS[both[0]]} and {both[0]}, its older name; "
                          f"keep {OLD_MATRIX_KEYS[both[0]]}")
    return renamed


def _adaptive(values: Mapping[str, Any], rounds: int, where: str) -> dict[str, Any]:
    """max_rounds and target_ci: rounds are added past `rounds` until the intervals are narrow enough."""
    target, most = values.get("target_ci"), values.get("max_rounds")
    if target is None:
        if most is not None:
            raise ConfigError(f"{where}: max_rounds needs target_ci, the interval width to stop at (e.g. 0.05)")
        return {}
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target < 1:
        raise ConfigError(f"{where}: target_ci must be a share between 0 and 1, e.g. 0.05 for ±5% (got {target!r})")
    most = 3 * rounds if most is None else most
    if isinstance(most, bool) or not isinstance(most, int) or most < max(rounds, 2):
        raise ConfigError(f"{where}: max_rounds must be a whole number of at least rounds ({rounds}) and 2 "
                          f"(got {most!r})")
    return {"target_ci": float(target), "max_rounds": most}


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


def without_repeats(values: list | tuple, key: str, where: str) -> tuple:
    """The values as a tuple; a value listed twice is refused, naming it (`jax,jax` is a typo, not a wish
    for one row)."""
    repeated = next((value for number, value in enumerate(values) if value in values[:number]), None)
    if repeated is not None:
        raise ConfigError(f"{where}: {key} lists {repeated!r} more than once; list each value once")
    return tuple(values)


def choices(value: Any, allowed: tuple[str, ...], key: str, where: str) -> tuple[str, ...]:
    """A list (or comma-separated string) of allowed names, each once."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key} must be a non-empty list of strings (got {value!r})")
    bad = [v for v in value if v not in allowed and not (key == "models" and is_reference(v))]
    if bad:
        raise ConfigError(f"{where}: {key} has {bad[0]!r}; allowed: {', '.join(allowed)}"
                          + (", or PATH.py:FUNCTION or MODULE:FUNCTION" if key == "models" else "")
                          + suggestion(bad[0], allowed))
    return without_repeats(value, key, where)


def load_matrix(path: Path | None, overrides: Mapping[str, Any]) -> Matrix:
    """The matrix of a config file, or of a shipped config named bare (`colab-t4`), with `overrides` on top."""
    file_values, source = read_config(path)
    return matrix_from(file_values, overrides, source)


def read_config(path: Path | None) -> tuple[dict[str, Any], str]:
    """A config file's tables (none without a file) and the name errors give it: its path, or the command line."""
    if path is None:
        return {}, "command line"
    path = shipped_config(str(path)) if len(path.parts) == 1 and path.suffix != ".toml" else path
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")), str(path)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None


def shipped_config(name: str) -> Path:
    path = SHIPPED_CONFIGS / f"{name}.toml"
    if not path.is_file():
        names = ", ".join(sorted(config.stem for config in SHIPPED_CONFIGS.glob("*.toml")))
        raise ConfigError(f"no shipped config named {name!r}; shipped: {names} (or give the path of a .toml file)")
    return path


def table_of(values: Mapping[str, Any], name: str, source: str) -> Mapping[str, Any]:
    table = values.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: {name} must be a table [{name}]")
    return table
