"""The project's data model: what a run produces and what results files hold, each a frozen dataclass
with one constructor and one JSON form (to_json / from_json), written atomically.

    TrainingResult  what both trainers return
    RunRecord       one run, self-describing: written as one JSON file per run
    CellEntry       one line of results.jsonl: a comparison cell, its round, and its RunRecord
    BenchEntry      one line of bench.jsonl: a micro-benchmark of one backend on one device

Results files of earlier schema versions are read through MIGRATIONS, one step per version.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import statistics
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from kerasmnist.errors import ConfigError, DataError

# 2: rounds, invocations, contention; 3: float32 matmul precision, peak device memory; 4: XLA flags;
# 5: models and data sets by reference (model identity, model_args, from_logits), inference figures; a cell
# entry's phases, and, run on Slurm, its slurm job fields and machine_kind (all optional, None before)
SCHEMA_VERSION = 5
KIND = "kerasmnist.run"

def _from_json(cls, data: dict[str, Any]):
    """A dataclass from its JSON form; keys an older writer did not write are None (their default)."""
    return cls(**{f.name: data.get(f.name, f.default if f.default is not dataclasses.MISSING else None)
                  for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class TrainingResult:
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
    time_to_accuracy: dict[str, Any]
    contention: dict[str, Any]
    profile: dict[str, Any] | None
    validation_seconds: list[float]
    build_seconds: float
    evaluate_seconds: float
    history: dict[str, list[float]]
    peak_device_memory_bytes: int | None  # the most GPU memory held at once; None on the CPU
    model_identity: dict[str, Any]  # what the model is: reference, source file and hash, arguments, layers
    inference_seconds: list[float] | None  # each timed model.predict pass over the test set
    inference_warmup_seconds: float | None  # the untimed first pass, which traces and compiles predict
    inference_batch_size: int | None
    inference_samples_per_second: float | None  # test images / the median pass
    peak_host_memory_bytes: int | None = None  # the training process's peak resident memory (ru_maxrss)
    timeline: dict[str, float | None] | None = None  # time.time() where each phase of the run ended (run.py)


@dataclass(frozen=True)
class RunRecord:
    """One run, self-describing: the figures of TrainingResult (None until it finished, or in a failed
    record) beside what was run, on what, with which data. Its JSON form is flat."""

    run_id: str
    status: str  # "running" until written: "ok" or "failed"
    started_at: str
    backend: str
    device: str
    model: str
    dataset: str
    config: dict[str, Any]
    environment: dict[str, Any]
    data: dict[str, Any] | None = None
    load_data_seconds: float | None = None
    finished_at: str | None = None
    error: str | None = None
    traceback: str | None = None
    resolved_device: str | None = None
    device_count: int | None = None
    jit_compile: bool | None = None
    parameters: int | None = None
    test_accuracy: float | None = None
    test_loss: float | None = None
    epoch_seconds: list[float] | None = None
    first_epoch_seconds: float | None = None
    steady_epoch_seconds: float | None = None
    samples_per_second: float | None = None
    training_flops_per_sample: int | None = None
    flops_unknown_layers: list[str] | None = None
    achieved_gflops_per_second: float | None = None
    time_to_accuracy: dict[str, Any] | None = None
    contention: dict[str, Any] | None = None
    profile: dict[str, Any] | None = None
    validation_seconds: list[float] | None = None
    build_seconds: float | None = None
    evaluate_seconds: float | None = None
    history: dict[str, list[float]] | None = None
    peak_device_memory_bytes: int | None = None
    model_identity: dict[str, Any] | None = None
    inference_seconds: list[float] | None = None
    inference_warmup_seconds: float | None = None
    inference_batch_size: int | None = None
    inference_samples_per_second: float | None = None
    peak_host_memory_bytes: int | None = None
    timeline: dict[str, float | None] | None = None
    schema_version: int = SCHEMA_VERSION
    kind: str = KIND

    def __post_init__(self) -> None:
        if self.status not in ("running", "ok", "failed"):
            raise ValueError(f"record status must be running, ok or failed (got {self.status!r})")
        if self.status == "ok" and self.test_accuracy is None:
            raise ValueError("an ok record needs its training figures")

    @classmethod
    def start(cls, config: dict[str, Any], environment: dict[str, Any], started_at: str, data: dict[str, Any],
              load_data_seconds: float) -> RunRecord:
        return cls(run_id=uuid.uuid4().hex[:12], status="running", started_at=started_at, backend=config["backend"],
                   device=config["device"], model=config["model"], dataset=config["dataset"], config=config,
                   environment=environment, data=data, load_data_seconds=load_data_seconds)

    def finished(self, result: TrainingResult, finished_at: str) -> RunRecord:
        return dataclasses.replace(self, status="ok", finished_at=finished_at, **dataclasses.asdict(result))

    def failed(self, error: str, finished_at: str, trace: str | None = None) -> RunRecord:
        return dataclasses.replace(self, status="failed", error=error, traceback=trace, finished_at=finished_at)

    @property
    def inference_median_seconds(self) -> float | None:
        """The median model.predict pass over the test set: the time inference is ranked by."""
        return statistics.median(self.inference_seconds) if self.inference_seconds else None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        return _from_json(cls, data)


@dataclass(frozen=True)
class CellEntry:
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
    phases: dict[str, float] | None = None  # its wall time, phase by phase (timing.cell_phases)
    schema_version: int = SCHEMA_VERSION
    kind: str = "kerasmnist.cell"
    slurm: dict[str, Any] | None = None  # run on Slurm: job_id, array_job_id, array_index, node, partition
    machine_kind: str | None = None  # the Slurm machine kind ([[machines]] name) it ran on

    def __post_init__(self) -> None:
        if self.status not in ("ok", "skipped", "failed"):
            raise ValueError(f"cell status must be ok, skipped or failed (got {self.status!r})")
        if self.status == "ok" and (self.record is None or self.record.status != "ok"):
            raise ValueError("an ok cell needs its ok run record")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellEntry:
        record = data.get("record")
        return _from_json(cls, data | {"record": RunRecord.from_json(record) if record else None})


@dataclass(frozen=True)
class BenchEntry:
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

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchEntry:
        return _from_json(cls, data)


def ensure_writable(out_dir: Path) -> None:
    """Fails before any training when the record could not be written afterwards."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as error:
        raise ConfigError(f"output folder {out_dir} is not writable ({error.strerror})") from None


def write(record: RunRecord, out_dir: Path) -> Path:
    """Writes the record under a unique name; a reader never sees a half-written file."""
    stamp = record.started_at.replace("-", "").replace(":", "").split(".")[0]
    model = re.sub(r"[^A-Za-z0-9_.-]+", "_", record.model.rpartition(":")[2])  # a reference's function name
    path = out_dir / f"{stamp}-{record.backend}-{record.device}-{model}-{record.run_id}.json"
    replace_atomically(path, json.dumps(record.to_json(), indent=2) + "\n")
    return path


def replace_atomically(path: Path, text: str) -> None:
    """Writes `text` to `path` through a temporary file and a rename: readers see old or new, never half.
    A write that fails (a full disk) leaves the old file as it was, and no temporary file behind.
    The file keeps the mode it had; a new one gets the user's umask, as open() would give it (the
    temporary file alone would be private to its owner, 0600, unreadable to collaborators)."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                     delete=False, encoding="utf-8") as temporary:
        try:
            temporary.write(text)
            temporary.flush()
            os.fsync(temporary.fileno())
            os.chmod(temporary.name, _mode_for(path))
        except BaseException:
            temporary.close()
            os.unlink(temporary.name)
            raise
    os.replace(temporary.name, path)


def _mode_for(path: Path) -> int:
    """The permission bits `path` has, or those a new file gets from the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)  # the only way to read it is to set it: put back at once
        os.umask(umask)
        return 0o666 & ~umask


def read(path: Path) -> RunRecord:
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
    return RunRecord.from_json(record)


# The comparison's results file: one JSON object per line, one line per cell.
RESULTS_FILE = "results.jsonl"
CELL_KIND = CellEntry.kind
BENCH_FILE = "bench.jsonl"
BENCH_KIND = BenchEntry.kind
Entry = CellEntry | BenchEntry


def new_invocation() -> str:
    """A sortable id for one compare or bench command: when it started, and a random tail."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def read_results(path: Path, kind: str = CELL_KIND) -> tuple[list[Entry], list[str]]:
    """The entries of `kind` in a JSON-lines results file, and a line for each line it had to ignore (and why).

    A kill while writing cannot truncate the file (it is replaced whole), but a file copied
    mid-write or edited by hand can hold a bad line: that line is ignored, never the file, and
    writers keep it as it is (add_result).
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror})") from None
    entries, ignored = [], []
    for number, line in enumerate(lines, start=1):
        entry, problem = _parse(line, kind)
        if entry is not None:
            entries.append(entry)
        elif problem:
            ignored.append(f"{path}:{number}: {problem}")
    return entries, ignored


def _parse(line: str, kind: str) -> tuple[Entry | None, str | None]:
    """A results line as an entry, else why it cannot be read (None for a blank line)."""
    if not line.strip():
        return None, None
    try:
        entry = json.loads(line)
    except ValueError:
        return None, "not valid JSON (a truncated or corrupt line)"
    if not isinstance(entry, dict) or entry.get("kind") != kind:
        return None, f"not a {kind} entry"
    if entry.get("schema_version") not in MIGRATIONS and entry.get("schema_version") != SCHEMA_VERSION:
        return None, (f"schema version {entry.get('schema_version')} is not one this kerasmnist reads "
                      f"(1 to {SCHEMA_VERSION}); read it with the kerasmnist that wrote it")
    try:
        return (CellEntry if kind == CELL_KIND else BenchEntry).from_json(migrate(entry)), None
    except (KeyError, TypeError, ValueError, AttributeError) as error:  # a line edited by hand or from elsewhere
        return None, f"a {kind} entry with a missing or malformed field ({type(error).__name__}: {error})"


SUPERSEDED_FILE = "superseded.jsonl"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path`'s lock file (.NAME.lock beside it), held while a writer reads, merges and
    replaces it, so two compares into one folder both keep their results. fcntl.flock is POSIX: on Windows
    writers are not serialised."""
    with open(path.parent / f".{path.name}.lock", "a", encoding="utf-8") as lock:
        if fcntl:
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def _supersedes(new: Entry, old: Entry | None) -> bool:
    """A newer entry of the same cell replaces an older one, unless the older one finished ok and the
    newer did not: a failed, skipped or interrupted rerun never replaces a result."""
    return (isinstance(new, CellEntry) and isinstance(old, CellEntry) and old.key == new.key
            and (new.status == "ok" or old.status != "ok"))


def add_result(path: Path, entry: Entry) -> list[Entry]:
    """Adds `entry` to a results file and returns the file's readable entries afterwards.

    Under the file's lock, the file is read again (what other writers added meanwhile stays), lines
    that cannot be read stay byte for byte, and an entry the new one supersedes moves to
    superseded.jsonl beside it, archived, never deleted. The file is then replaced whole.
    """
    kind = entry.kind
    with locked(path):
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        parsed = [_parse(line, kind)[0] for line in lines]
        superseded = [line for line, old in zip(lines, parsed) if _supersedes(entry, old)]
        if superseded:
            with open(path.parent / SUPERSEDED_FILE, "a", encoding="utf-8") as archive:
                archive.write("".join(line + "\n" for line in superseded))
                archive.flush()
                os.fsync(archive.fileno())
        kept = [(line, old) for line, old in zip(lines, parsed) if not _supersedes(entry, old)]
        replace_atomically(path, "".join(line + "\n" for line, _ in kept) + json.dumps(entry.to_json()) + "\n")
    return [old for _, old in kept if old is not None] + [entry]


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


MIGRATIONS = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4, 4: _v4_to_v5}


def migrate(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry of any readable schema version, brought up to this one step by step."""
    while entry["schema_version"] != SCHEMA_VERSION:
        entry = MIGRATIONS[entry["schema_version"]](entry)
    return entry
