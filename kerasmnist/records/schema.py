"""The record types: what a run produces and what results files hold, each a frozen dataclass with one
constructor and one JSON form (to_json / from_json). The JSON forms are the ones committed results hold:
the same keys, in the same order, a key left out where its writer left it out.

    TimeToAccuracy  training seconds until validation accuracy first reached the target
    Timeline        where each phase of a run ended (time.time() stamps)
    Phases          a cell's wall time, phase by phase
    CodeIdentity    a user's code named by PATH.py:FUNCTION or MODULE:FUNCTION, and its source's hash
    HelperFile      a module of the user's own that their code ran besides its file, and its source's hash
    ModelIdentity   what the model is: reference, source, arguments, parameters, layers
    DataIdentity    what the data was (the splits' provenance): its checked files (DataFile) or a loader's
                    arrays (ArrayIdentity), and the splits' sizes
    TrainingResult  what both trainers return
    RunRecord       one run, self-describing: written as one JSON file per run
    CellEntry       one line of results.jsonl: a comparison cell, its round, and its RunRecord
    BenchEntry      one line of bench.jsonl: a micro-benchmark of one backend on one device
"""

from __future__ import annotations

import dataclasses
import statistics
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, ClassVar, Self

# 2: rounds, invocations, contention; 3: float32 matmul precision, peak device memory; 4: XLA flags;
# 5: models and data sets by reference (model identity, model_args, from_logits), inference figures; a cell
# entry's phases, and, run on Slurm, its slurm job fields and machine_kind (all optional, None before); a result's
# test_metrics, a failed record's failed_phase and the figures it timed before it broke (optional, absent before)
SCHEMA_VERSION = 5
KIND = "kerasmnist.run"


def _json(value: Any) -> Any:
    """A field's JSON form: a record type's own, lists and dicts item by item, anything else as it is."""
    if hasattr(type(value), "to_json"):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return type(value)(_json(item) for item in value)
    if isinstance(value, dict):
        return {key: _json(item) for key, item in value.items()}
    return value


class JsonForm:
    """The JSON form of a record dataclass: its fields in order, a record type among them through its own
    to_json, and a field of OPTIONAL_KEYS left out while it is None (its writer did not write it). from_json
    reads it back: a key an older writer did not write is the field's default (None where it has none), and
    the fields of READERS are read by the function there (a nested record type's from_json)."""

    OPTIONAL_KEYS: ClassVar[tuple[str, ...]] = ()
    READERS: ClassVar[dict[str, Callable[[Any], Any]]] = {}

    def to_json(self) -> dict[str, Any]:
        return {field.name: _json(getattr(self, field.name)) for field in dataclasses.fields(self)
                if not (field.name in self.OPTIONAL_KEYS and getattr(self, field.name) is None)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        values = {}
        for field in dataclasses.fields(cls):
            value = data.get(field.name, None if field.default is dataclasses.MISSING else field.default)
            read = cls.READERS.get(field.name)
            values[field.name] = read(value) if read and value is not None else value
        return cls(**values)


@dataclass(frozen=True)
class TimeToAccuracy(JsonForm):
    """Training seconds (first epoch included, validation excluded) until validation accuracy first reached
    `target`, checked where `resolution` says (at epoch ends); epochs and seconds None when it never did."""

    target: float
    epochs: int | None
    seconds: float | None
    resolution: str  # schema 1 did not say: its migration gives "epoch ends", where it checked


@dataclass(frozen=True)
class Timeline(JsonForm):
    """time.time() where each phase of a run ended, comparable across processes: with its parent's spawn and
    exit times they split a cell's wall time into Phases (rounds.cell_phases)."""

    spawned: float | None  # when its parent started the process; None for a run started by hand
    started: float  # the process's imports done
    pinned: float
    data_loaded: float
    described: float  # the trainer imported and the environment read
    trained: float


@dataclass(frozen=True)
class Phases(JsonForm, Mapping[str, float]):
    """A cell's wall time, phase by phase: seconds by phase name, in the order the phases ran. The names are
    the JSON form's keys, read as they were written (a phase renamed since keeps its old name there)."""

    seconds: dict[str, float]

    def __getitem__(self, phase: str) -> float:
        return self.seconds[phase]

    def __iter__(self) -> Iterator[str]:
        return iter(self.seconds)

    def __len__(self) -> int:
        return len(self.seconds)

    def to_json(self) -> dict[str, float]:
        return dict(self.seconds)

    @classmethod
    def from_json(cls, data: Mapping[str, float]) -> Phases:
        return cls(dict(data))


@dataclass(frozen=True)
class HelperFile(JsonForm):
    """A module of the user's own that their model or loader ran besides its own file (`from my_blocks import
    MixerBlock`, recursively), found where it ran (references.Reference.helpers): an edited helper is other code."""

    module: str
    path: str
    source_sha256: str


def _helper_files(helpers: list[Mapping[str, Any]]) -> list[HelperFile]:
    return [HelperFile.from_json(helper) for helper in helpers]


@dataclass(frozen=True)
class CodeIdentity(JsonForm):
    """What names a user's code (references.Reference.identity): two files sharing a function name differ,
    and so does an edited file, or an edited helper module it ran."""

    reference: str  # PATH.py:FUNCTION or MODULE:FUNCTION, as given
    kind: str  # "file" or "module"
    path: str  # its source file
    module: str | None  # None for a file
    function: str
    source_sha256: str
    helpers: list[HelperFile] | None = None  # the user's modules it ran besides its file; None: not looked for

    OPTIONAL_KEYS = ("helpers",)
    READERS = {"helpers": _helper_files}


@dataclass(frozen=True, kw_only=True)
class ModelIdentity(JsonForm):
    """What the model is: a built-in (its builder function) or a user's code (its CodeIdentity's fields, flat),
    with the arguments it was called with, its parameters and its layers by class. Migrated from schema 4, a
    built-in has no function and no layers."""

    reference: str
    kind: str  # "builtin", "file" or "module"
    path: str | None = None  # path, module and source_sha256: a user's code's, not a built-in's
    module: str | None = None  # None for a file
    function: str | None = None
    source_sha256: str | None = None
    arguments: dict[str, Any]
    parameters: int | None
    layers: dict[str, int] | None = None  # how many of each layer class the model is made of
    helpers: list[HelperFile] | None = None  # a user's modules it ran besides its file; None: not looked for

    OPTIONAL_KEYS = ("function", "layers", "helpers")
    READERS = {"helpers": _helper_files}

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        if self.kind == "builtin":
            for key in ("path", "module", "source_sha256"):
                del data[key]
        return data


@dataclass(frozen=True)
class DataFile(JsonForm):
    """One file of a built-in data set, as checked before training."""

    name: str
    bytes: int
    sha256: str
    verified_against: str  # what its SHA-256 matched: the published file's, a manifest beside it, its content's


@dataclass(frozen=True)
class ArrayIdentity(JsonForm):
    """One array a user's loader returned."""

    shape: list[int]
    dtype: str
    sha256: str  # of its bytes, C order


@dataclass(frozen=True, kw_only=True)
class DataIdentity(JsonForm):
    """What the data was (data.Splits.provenance): a built-in data set's checked files, or a user's loader and
    the arrays it returned, and the sizes of the splits made from it."""

    name: str  # the data set, or the loader's reference
    origin: str  # where its files were found ("data-dir", "keras-cache", ...), or "loader"
    loader: CodeIdentity | None = None  # a user's loader, and the arrays it returned
    arrays: dict[str, ArrayIdentity] | None = None
    directory: str | None
    files: list[DataFile]
    credit: str
    num_classes: int | None = None  # written from schema 5 on
    train_size: int
    validation_size: int
    test_size: int

    OPTIONAL_KEYS = ("loader", "arrays", "num_classes")
    READERS = {"loader": CodeIdentity.from_json, "files": lambda files: [DataFile.from_json(file) for file in files],
               "arrays": lambda arrays: {name: ArrayIdentity.from_json(array) for name, array in arrays.items()}}


@dataclass(frozen=True)
class TrainingResult(JsonForm):
    """What both trainers (Keras's and the native loops) return: the figures of one training run."""

    resolved_device: str
    device_count: int
    jit_compile: bool
    parameters: int
    test_accuracy: float
    test_loss: float
    epoch_seconds: list[float]
    first_epoch_seconds: float
    steady_epoch_seconds: float | None  # None with a single epoch
    samples_per_second: float | None
    training_flops_per_sample: int | None  # None where a layer's cost is unknown (a user's custom layer)
    flops_unknown_layers: list[str]  # the layers the FLOP count does not know, by class
    achieved_gflops_per_second: float | None
    time_to_accuracy: TimeToAccuracy | None  # None migrated from schema 1 where it was not measured
    contention: dict[str, Any] | None  # None migrated from schema 1, which did not measure it
    profile: dict[str, Any] | None
    validation_seconds: list[float]
    build_seconds: float
    evaluate_seconds: float
    history: dict[str, list[float]]
    peak_device_memory_bytes: int | None  # the most GPU memory held at once; None on the CPU
    model_identity: ModelIdentity | None  # what the model is: reference, source file and hash, arguments, layers
    inference_seconds: list[float] | None  # each timed model.predict pass over the test set
    inference_warmup_seconds: float | None  # the untimed first pass, which traces and compiles predict
    inference_batch_size: int | None
    inference_samples_per_second: float | None  # test images / the median pass
    peak_host_memory_bytes: int | None = None  # the training process's peak resident memory (ru_maxrss)
    timeline: Timeline | None = None  # where each phase of the run ended (run.py)
    # Every other metric the model's evaluation reported on the test set, by name (an auxiliary loss its own
    # test_step tracks); None where it reported only loss and accuracy, and in older records.
    test_metrics: dict[str, Any] | None = None

    OPTIONAL_KEYS = ("test_metrics",)
    READERS = {"time_to_accuracy": TimeToAccuracy.from_json, "model_identity": ModelIdentity.from_json,
               "timeline": Timeline.from_json}


FIGURES = tuple(field.name for field in dataclasses.fields(TrainingResult))
# A record without a result writes these as null: an optional figure is left out, as a result leaves it out.
_NULL_FIGURES = tuple(name for name in FIGURES if name not in TrainingResult.OPTIONAL_KEYS)


@dataclass(frozen=True)
class RunRecord(JsonForm):
    """One run, self-describing: what was run, on what, with which data, and its TrainingResult once it
    finished (None while running, and in a failed record). Its JSON form is flat: the result's figures stand
    among the record's own keys, null without a result; and so does reading them: record.test_accuracy is
    record.result.test_accuracy, None without a result. A run that failed after training started keeps the
    figures it had timed (`partial`: its epochs, their curves, ...) in the same flat keys, read the same way,
    and says in `failed_phase` which phase broke."""

    run_id: str
    status: str  # "running" until written: "ok" or "failed"
    started_at: str
    backend: str
    device: str
    model: str
    dataset: str
    config: dict[str, Any]
    environment: dict[str, Any]
    data: DataIdentity | None = None
    load_data_seconds: float | None = None
    finished_at: str | None = None
    error: str | None = None
    traceback: str | None = None
    # Where a failed run broke: "building", "training", "the placement check", "evaluation", "inference timing"
    # or "counting FLOPs" (trainers.base.PHASES); None for a failure outside them, and in older records.
    failed_phase: str | None = None
    result: TrainingResult | None = None
    # A failed run's figures timed before it broke (epoch_seconds, history, ...), by TrainingResult field name;
    # in the JSON form they stand where the result's figures would.
    partial: dict[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION
    kind: str = KIND

    OPTIONAL_KEYS = ("failed_phase",)
    READERS = {"data": DataIdentity.from_json, "result": TrainingResult.from_json}

    def __post_init__(self) -> None:
        if self.status not in ("running", "ok", "failed"):
            raise ValueError(f"record status must be running, ok or failed (got {self.status!r})")
        if self.status == "ok" and (self.result is None or self.result.test_accuracy is None):
            raise ValueError("an ok record needs its training figures")

    def __getattr__(self, name: str) -> Any:
        """A figure of the result, None without one (only called for a name the record itself lacks)."""
        if name not in FIGURES:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        result = self.__dict__.get("result")
        return (self.__dict__.get("partial") or {}).get(name) if result is None else getattr(result, name)

    @classmethod
    def start(cls, config: dict[str, Any], environment: dict[str, Any], started_at: str, data: DataIdentity,
              load_data_seconds: float) -> RunRecord:
        return cls(run_id=uuid.uuid4().hex[:12], status="running", started_at=started_at, backend=config["backend"],
                   device=config["device"], model=config["model"], dataset=config["dataset"], config=config,
                   environment=environment, data=data, load_data_seconds=load_data_seconds)

    def finished(self, result: TrainingResult, finished_at: str) -> RunRecord:
        return dataclasses.replace(self, status="ok", finished_at=finished_at, result=result)

    def failed(self, error: str, finished_at: str, trace: str | None = None, phase: str | None = None,
               partial: dict[str, Any] | None = None) -> RunRecord:
        """The record of a run that broke (in `phase`), keeping the figures `partial` it had timed."""
        partial = {name: value for name, value in (partial or {}).items() if value is not None}
        return dataclasses.replace(self, status="failed", error=error, traceback=trace, finished_at=finished_at,
                                   failed_phase=phase, partial=partial or None)

    @property
    def helper_files(self) -> list[HelperFile]:
        """The helper modules its user's model and loader ran (HelperFile), as far as the record says."""
        model, loader = self.model_identity, self.data.loader if self.data else None
        return [*(model.helpers or [] if model else []), *(loader.helpers or [] if loader else [])]

    @property
    def inference_median_seconds(self) -> float | None:
        """The median model.predict pass over the test set: the time inference is ranked by."""
        return statistics.median(self.inference_seconds) if self.inference_seconds else None

    @property
    def time_to_accuracy_seconds(self) -> float | None:
        """Training seconds until the run first reached its target validation accuracy (at an epoch end,
        compilation included), the time a time-to-accuracy headline ranks by; None where it never did."""
        reached = self.time_to_accuracy
        return reached.seconds if reached else None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for key, value in super().to_json().items():
            if key == "result":
                data |= value or (dict.fromkeys(_NULL_FIGURES) | _json(self.partial or {}))
            elif key != "partial":
                data[key] = value
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        """The figures are read as the result of an ok record; a failed record's are null, or those it timed
        before it broke (its partial figures)."""
        ok = data.get("status") == "ok"
        partial = None if ok else {name: data[name] for name in FIGURES if data.get(name) is not None} or None
        return super().from_json({**data, "result": data if ok else None, "partial": partial})


@dataclass(frozen=True)
class CellEntry(JsonForm):
    """One line of results.jsonl: a cell of a comparison, how it ended, and its run record when it ran."""

    key: str
    seed: int
    order: int
    repeat: int
    backend: str
    device: str
    model: str
    status: str  # ok, skipped or failed
    reason: str | None
    log_tail: list[str]
    wall_seconds: float
    finished_at: str
    host: dict[str, Any]
    config: dict[str, Any]
    record: RunRecord | None
    software: dict[str, Any] | None = None
    command: str = ""
    invocation: str = ""
    round: str = ""  # one pass over the plan's cells: the report pairs cells by it
    target_ci: float | None = None
    phases: Phases | None = None  # its wall time, phase by phase (rounds.cell_phases)
    schema_version: int = SCHEMA_VERSION
    kind: str = "kerasmnist.cell"
    slurm: dict[str, Any] | None = None  # run on Slurm: job_id, array_job_id, array_index, node, partition
    machine_kind: str | None = None  # the Slurm machine kind ([[machines]] name) it ran on
    # A user's model as the launch side found and hashed it before the cell ran (references.Reference.identity):
    # what names the model of a cell that wrote no model identity (one that failed or was skipped). Left out
    # for a built-in, and by older writers.
    model_code: CodeIdentity | None = None
    # The name of the Python environment it ran in ([[environments]], --env: launch/environments.py); left out
    # where it ran in kerasmnist's own, and by older writers.
    environment: str | None = None

    OPTIONAL_KEYS = ("model_code", "environment")
    READERS = {"record": RunRecord.from_json, "phases": Phases.from_json, "model_code": CodeIdentity.from_json}

    def __post_init__(self) -> None:
        if self.status not in ("ok", "skipped", "failed"):
            raise ValueError(f"cell status must be ok, skipped or failed (got {self.status!r})")
        if self.status == "ok" and (self.record is None or self.record.status != "ok"):
            raise ValueError("an ok cell needs its ok run record")


@dataclass(frozen=True)
class BenchEntry(JsonForm):
    """One line of bench.jsonl: a micro-benchmark of one backend on one device."""

    benchmark: str
    backend: str
    device: str
    status: str  # ok, skipped or failed
    reason: str | None
    host: dict[str, Any]
    rows: list[dict[str, Any]]
    resolved_device: str | None = None
    repeats: int | None = None
    started_at: str = ""
    environment: dict[str, Any] | None = None
    command: str = ""
    invocation: str = ""
    float32_matmul_precision: str = "float32"  # "tf32": TF32 tensor cores allowed
    schema_version: int = SCHEMA_VERSION
    kind: str = "kerasmnist.bench"


CELL_KIND = CellEntry.kind
BENCH_KIND = BenchEntry.kind
Entry = CellEntry | BenchEntry


def new_invocation() -> str:
    """A sortable id for one compare or bench command: when it started, and a random tail."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
