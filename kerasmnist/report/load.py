"""Reading results files and grouping their cells into report rows.

One row is one configuration on one machine: every RunConfig setting that changes what is
computed or how it is timed is part of a row's identity (all but progress, paths and the
per-repeat seed), with jit_compile as the run resolved it, and the package versions are part of
the machine. Rows are grouped by these config fields, never by labels parsed back.

Where one machine ran a row's settings in several Python environments (or with several versions), the rows of a
backend are alternatives: one of them, its chosen environment's, is ranked against the other backends
(choose_environments); the others are set against it under "What changed between environments".
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from kerasmnist import records
from kerasmnist.records import BenchEntry, CellEntry, ModelIdentity, RunRecord
from kerasmnist.config import BACKENDS, BUILTIN_MODELS, DEVICES, IMPLEMENTATIONS
from kerasmnist.errors import DataError

# Settings that change neither what a run computes nor how it is timed.
NOT_IDENTITY = ("progress", "data_dir", "seed")
# What a run's record adds to its config's identity: the source of a user's model and data, which a config's
# reference (`my_models.py:build`) does not pin down. None for the built-ins, and for a cell that wrote no record.
SOURCE_KEYS = ("model_source", "data_source")
# The settings that say which model a row trained: one report section per model identity.
MODEL_KEYS = ("model", "model_args", "model_source")
# Settings shown elsewhere than in a row's name or a section's "All rows" line: the backend and device have
# columns, the model its section's title, and jit_compile as resolved and the sources say nothing to a reader.
NOT_DESCRIBED = ("backend", "device", "jit_compile_resolved", *MODEL_KEYS, *SOURCE_KEYS)
# Settings a row's name shows whenever they are not at their default, even when its whole section shares them.
ALWAYS_NAMED = ("float32_matmul_precision",)
# Settings that change how Keras runs the same computation: rows that differ only in these (and in the
# backend or implementation) computed the same thing and may be ranked against each other.
EXECUTION_KNOBS = ("jit_compile", "steps_per_execution", "fit_steps_per_epoch", "data_format", "input_pipeline",
                   "cpu_threads", "xla_flags")


@dataclass(frozen=True)
class Results:
    cells: list[CellEntry]
    bench: list[BenchEntry]
    ignored: list[str]


def gather(results_dirs: list[Path]) -> Results:
    """The training cells and the benchmark entries of every folder, and the lines ignored."""
    cells, bench, ignored = [], [], []
    for folder in results_dirs:
        found_any = False
        for name, kind, target in ((records.RESULTS_FILE, records.CELL_KIND, cells), (records.BENCH_FILE, records.BENCH_KIND, bench)):
            if (folder / name).is_file():
                found, skipped_lines = records.read_results(folder / name, kind)
                target += found
                ignored += skipped_lines
                found_any = True
        if not found_any:
            raise DataError(f"{folder} holds no {records.RESULTS_FILE} or {records.BENCH_FILE}: "
                            f"run kerasmnist compare --out {folder} first")
    return Results(cells, bench, ignored)


def latest_bench(bench: list[BenchEntry]) -> list[BenchEntry]:
    """The newest successful benchmark entry of each machine, backend and device, in the order read."""
    latest: dict[tuple, dict[str, Any]] = {}
    for entry in sorted((e for e in bench if e.status == "ok"), key=lambda e: e.started_at):
        latest[(host_of(entry), entry.backend, entry.device)] = entry
    return list(latest.values())


def host_of(entry: CellEntry | BenchEntry) -> str:
    """The machine: a Slurm machine kind (whichever of its nodes ran a round), else the host."""
    kind = getattr(entry, "machine_kind", None)  # a BenchEntry has none
    return f"Slurm machine kind {kind}" if kind else host_label(entry.host)


def host_label(host: dict[str, Any] | None) -> str:
    host = host or {}
    return f"{host.get('cpu_model', 'unknown CPU')}, {host.get('logical_cores', '?')} cores ({host.get('hostname', '?')})"


def software_versions(entry: CellEntry) -> dict[str, str | None]:
    """Python's and the frameworks' versions: from the entry (schema 2), else from its run record; {} where
    neither says."""
    if entry.software is None and entry.record:
        environment = entry.record.environment
        return {"python": environment.get("python"), **environment.get("packages", {})}
    return entry.software or {}


def software_of(entry: CellEntry) -> str:
    """Python and framework versions, as one line."""
    software = software_versions(entry)
    if not software:
        return "versions unknown"
    return ", ".join(f"{name} {software[name]}" for name in ("python", "keras", "tensorflow", "torch", "jax")
                     if software.get(name))


def identity_of(entry: CellEntry) -> tuple[tuple[str, Any], ...]:
    """The settings that make a row: the config less NOT_IDENTITY, with jit_compile as resolved, the sources of
    a user's model and data (an edited file makes a new row; two files sharing a name, two rows), and the
    environment it ran in where one was given."""
    config = {key: value for key, value in entry.config.items() if key not in NOT_IDENTITY}
    config["hidden"] = tuple(config.get("hidden", ())) if config.get("model") == "ffn" else ()  # the CNN ignores it
    config["model_args"] = tuple(sorted(config.get("model_args", {}).items()))
    config["jit_compile_resolved"] = entry.record.jit_compile if entry.record else None
    config["model_source"], config["data_source"] = _sources(entry.record)
    if config["model_source"] is None and entry.model_code:  # no record says: the file the launch side hashed
        config["model_source"] = (entry.model_code.path, entry.model_code.source_sha256)
    if entry.environment:  # two environments are two rows, even with the same versions
        config["environment"] = entry.environment
    return tuple(sorted(config.items()))


def _sources(record: RunRecord | None) -> tuple[tuple | None, tuple | None]:
    """(path, SHA-256, then each helper module's) of a user's model source; (loader path, loader SHA-256, the
    arrays' SHA-256s, then each helper module's path and SHA-256) of a user's data. A helper edited between two
    runs makes two rows; a record that listed no helpers (written before they were) has none."""
    if record is None:
        return None, None
    model, data = record.model_identity, record.data
    loader = data.loader if data else None
    return ((model.path, model.source_sha256, *_helper_sources(model.helpers))
            if model and model.source_sha256 else None,
            (loader.path, loader.source_sha256, *(array.sha256 for array in data.arrays.values()),
             *_helper_sources(loader.helpers)) if loader else None)


def _helper_sources(helpers: list[records.HelperFile] | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((helper.path, helper.source_sha256) for helper in helpers or []))


@dataclass
class Row:
    """Every cell of one configuration on one machine."""

    machine: str
    software: str
    settings: dict[str, Any]
    entries: list[CellEntry] = field(default_factory=list)  # ok cells, in run order
    others: list[CellEntry] = field(default_factory=list)  # skipped and failed cells
    name_parts: dict[str, str] = field(default_factory=dict)  # setting -> how the row's name shows it
    model_title: str = ""  # its model section's title, told apart from every other section's (title_models)
    # The row of the same settings in its backend's chosen environment, ranked in its place (choose_environments);
    # None where this row is the one ranked.
    superseded_by: Row | None = None

    @property
    def name(self) -> str:
        """The backend and the settings that differ within the row's model section (see name_rows)."""
        return self.name_without()

    def name_without(self, *keys: str) -> str:
        parts = [part for key, part in self.name_parts.items() if part and key not in keys]
        return " ".join([self.backend, ", ".join(parts)]).strip()

    @property
    def backend(self) -> str:
        return self.settings["backend"]

    @property
    def device(self) -> str:
        return self.settings["device"]

    @property
    def environment(self) -> str | None:
        """The name of the Python environment it ran in ([[environments]], --env); None: kerasmnist's own."""
        return self.settings.get("environment")

    @property
    def versions(self) -> dict[str, str | None]:
        """Python's and the frameworks' versions, as its first cell that says them recorded."""
        return next((found for entry in [*self.entries, *self.others] if (found := software_versions(entry))), {})

    @property
    def model(self) -> str:
        return self.settings["model"]

    @property
    def model_key(self) -> tuple:
        """Which model the row trained: its report section."""
        return tuple(self.settings.get(key) for key in MODEL_KEYS)

    @property
    def model_identity(self) -> ModelIdentity | None:
        """What its records say the model is (reference, source, arguments, parameters, layers); where no cell
        wrote one (every cell failed), the user's file and source hash as the launch side found them before the
        cells ran, with no parameter or layer count; None where nothing says (a built-in that never ran)."""
        found = next((record.model_identity for record in [*self.runs, *(e.record for e in self.others if e.record)]
                      if record.model_identity), None)
        code = next((entry.model_code for entry in self.others if entry.model_code), None)
        if found is None and code is not None:
            found = ModelIdentity(reference=code.reference, kind=code.kind, path=code.path, module=code.module,
                                  function=code.function, source_sha256=code.source_sha256,
                                  arguments=dict(self.settings.get("model_args", ())), parameters=None)
        return found

    @property
    def plain_model_title(self) -> str:
        """A built-in's name; a user's function name and arguments, as `build_unet(width=64)`: the model's title
        where no other model reads the same (title_models)."""
        if self.model in BUILTIN_MODELS:
            return self.model
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.settings.get("model_args", ()))
        return f"{self.model.rpartition(':')[2]}({arguments})"

    @property
    def model_header(self) -> str:
        """A user's model's file, the first 12 characters of its source's SHA-256, parameters and layers."""
        identity = self.model_identity
        if identity is None:
            return ""
        parts = [f"`{identity.module or identity.path}`, source SHA-256 {identity.source_sha256[:12]}"
                 if identity.source_sha256 else ""]
        if identity.parameters:
            parts.append(f"{identity.parameters:,} parameters")
        if identity.layers:
            parts.append("layers: " + ", ".join(f"{name} ×{count}" for name, count in identity.layers.items()))
        return ", ".join(part for part in parts if part)

    @property
    def native(self) -> bool:
        return self.settings.get("implementation") == "native"

    @property
    def profiled(self) -> bool:
        """cProfile slows Python-heavy runs: their times are not compared with anything else."""
        return bool(self.settings.get("profile"))

    @property
    def runs(self) -> list[RunRecord]:
        """The ok cells' run records."""
        return [entry.record for entry in self.entries]

    def values(self, key: str) -> list[float]:
        return [getattr(run, key) for run in self.runs if getattr(run, key) is not None]

    def by_round(self, key: str) -> dict[str, float]:
        """round id -> the figure; a round holds at most one cell of a row (a later one wins)."""
        return {entry.round: getattr(entry.record, key) for entry in self.entries
                if getattr(entry.record, key) is not None}

    def median(self, key: str) -> float | None:
        values = self.values(key)
        return statistics.median(values) if values else None

    @property
    def steady(self) -> list[float]:
        return self.values("steady_epoch_seconds")

    @property
    def accuracy(self) -> list[float]:
        return self.values("test_accuracy")

    @property
    def shared_seeds(self) -> int:
        """How many runs share a seed with another run of the row (old results files had one seed)."""
        seeds = [entry.config["seed"] for entry in self.entries]
        return sum(seeds.count(seed) > 1 for seed in seeds)

    def computation(self) -> tuple:
        """What the row computed on its machine and device, less how and in which environment it ran it: rows with
        the same computation may be ranked (each backend's in its chosen environment)."""
        return (self.machine, self.device, *self.computation_anywhere())

    def computation_anywhere(self) -> tuple:
        """What the row computed, less how, where, in which environment and on which device it ran it."""
        return tuple((key, value) for key, value in self.settings.items()
                     if key not in (*EXECUTION_KNOBS, "jit_compile_resolved", "backend", "implementation", "device",
                                    "environment"))


def group(cells: list[CellEntry], preferred_environments: tuple[str, ...] = ()) -> list[Row]:
    """The cells' rows, named and ordered, each backend's alternatives in several environments resolved
    (choose_environments: those of `preferred_environments`, else the newest)."""
    rows: dict[tuple, Row] = {}
    for entry in sorted(cells, key=lambda e: (e.finished_at, e.order)):
        key = (host_of(entry), software_of(entry), identity_of(entry))
        row = rows.setdefault(key, Row(key[0], key[1], dict(key[2])))
        (row.entries if entry.status == "ok" and entry.record else row.others).append(entry)
    _attach_unresolved(rows)

    def rank(row: Row) -> tuple:
        built_in = BUILTIN_MODELS.index(row.model) if row.model in BUILTIN_MODELS else len(BUILTIN_MODELS)
        return (row.machine, built_in, repr(row.model_key), DEVICES.index(row.device),
                BACKENDS.index(row.backend), IMPLEMENTATIONS.index(row.settings.get("implementation", "keras")),
                row.settings.get("batch_size", 0), row.software, repr(sorted(row.settings.items())))

    ordered = sorted(rows.values(), key=rank)
    name_rows(ordered)
    title_models(ordered)
    choose_environments(ordered, preferred_environments)
    return ordered


def choose_environments(rows: list[Row], preferred: tuple[str, ...] = ()) -> None:
    """Of the rows one machine ran with the same settings in several environments (or with several versions, in
    several compares): the one ranked for its backend is the row in a `preferred` environment, else the newest
    (its framework's version, then Keras's, then Python's, then the latest run), even where none of its cells
    finished (the headline then says why); every other one is superseded by it, and set against it rather than
    ranked."""
    alike: dict[tuple, list[Row]] = {}
    for row in rows:
        # how jit_compile resolved is the environment's doing (and unknown where no cell finished)
        rest = sorted((key, value) for key, value in row.settings.items()
                      if key not in ("environment", "jit_compile_resolved"))
        alike.setdefault((row.machine, repr(rest)), []).append(row)
    for twins in alike.values():
        if len({(row.environment, row.software) for row in twins}) == 1:
            continue  # rows that differ in how jit_compile resolved, not in where they ran: each ranked
        chosen = max(twins, key=lambda row: (row.environment in preferred, _newness(row)))
        for row in twins:
            row.superseded_by = None if row is chosen else chosen


def _newness(row: Row) -> tuple:
    """What orders a backend's environments from oldest to newest."""
    versions = row.versions

    def version(package: str) -> Version:
        try:
            return Version(versions.get(package) or "0")
        except InvalidVersion:
            return Version("0")

    latest = max((entry.finished_at for entry in row.entries), default="")
    return version(row.backend), version("keras"), version("python"), latest


def _attach_unresolved(rows: dict[tuple, Row]) -> None:
    """A failed or skipped cell has no record to say how jit_compile resolved, or what source a user's model
    had. Its model is the one finished rows of its reference and arguments ran, helpers included, where they
    ran one source, and it is the file the launch side hashed before the cell ran (CellEntry.model_code) where
    that is known: so its row joins that model's section. And it joins the one row that differs from it only in
    what a record says, where there is exactly one."""
    unrecorded = ("jit_compile_resolved", *SOURCE_KEYS)
    for row in rows.values():
        if not row.entries and row.model not in BUILTIN_MODELS:
            source = row.settings.get("model_source")
            ran = {other.settings["model_source"] for other in rows.values() if other.entries
                   and other.settings.get("model_source") and other.model_key[:2] == row.model_key[:2]
                   and (source is None or other.settings["model_source"][:2] == source[:2])}
            if len(ran) == 1:
                row.settings["model_source"] = ran.pop()
    def resolved(row: Row) -> bool:
        return bool(row.entries) or row.settings.get("jit_compile_resolved") is not None

    for key, row in list(rows.items()):
        if resolved(row):
            continue
        bare = {k: v for k, v in row.settings.items() if k not in unrecorded}
        source = row.settings.get("model_source")
        twins = [other for other_key, other in rows.items() if other is not row and other_key[:2] == key[:2]
                 and {k: v for k, v in other.settings.items() if k not in unrecorded} == bare
                 and (source is None or other.settings.get("model_source") == source)]
        twins = [other for other in twins if resolved(other)] or twins  # a row that ran, over one that did not
        if len(twins) == 1:
            twins[0].others += row.others
            del rows[key]


def section_settings(rows: list[Row]) -> tuple[dict[str, Any], list[str]]:
    """What all rows of a section share, and the settings that differ between them."""
    keys = sorted({key for row in rows for key in row.settings})
    shared = {key: rows[0].settings.get(key) for key in keys
              if all(row.settings.get(key) == rows[0].settings.get(key) for row in rows)}
    return shared, [key for key in keys if key not in shared]


def model_sections(rows: list[Row]) -> list[list[Row]]:
    """The rows of each model identity, in the order the rows come: one report section each."""
    sections: dict[tuple, list[Row]] = {}
    for row in rows:
        sections.setdefault(row.model_key, []).append(row)
    return list(sections.values())


def section_header(model_rows: list[Row]) -> str:
    """A model section's identity line (Row.model_header): the same for a section whose every cell failed as for
    one that finished, less what only a run counts (parameters, layers)."""
    return next((header for row in model_rows if (header := row.model_header)), "")


def title_models(rows: list[Row]) -> None:
    """Each row's model_title: its model section's title, the shortest that tells it from every other section
    of `rows`. A built-in's name, or a user's function with its arguments (`build()`, `build(width=64)`);
    where another file or module defines a function of that name, with as much of the file's path as tells
    them apart (`mixer.py:build()`, `a/models.py:build()`) or the module (`my_models:build()`); where sections
    still read the same, from one file edited between runs, with the first 12 characters of each source's
    SHA-256; where even that is the same, with the reference as given, else a number. Chosen from the
    sections' identities, never from their titles."""
    sections = model_sections(rows)
    titles = [section[0].plain_model_title for section in sections]
    by_function: dict[str, list[int]] = {}  # a user's function name -> its sections
    for index, section in enumerate(sections):
        if section[0].model not in BUILTIN_MODELS:
            by_function.setdefault(section[0].model.rpartition(":")[2], []).append(index)
    for indexes in by_function.values():
        places = [_place(sections[index]) for index in indexes]
        if len(set(places)) > 1:  # two files (or modules) define it: each title names its own
            for index, where in zip(indexes, _shortest(places)):
                titles[index] = f"{where}:{titles[index]}"
    for refine in (_with_source, _with_reference, _with_number):
        titles = _tell_apart(titles, sections, refine)
    for section, title in zip(sections, titles):
        for row in section:
            row.model_title = title


def _tell_apart(titles: list[str], sections: list[list[Row]], refine) -> list[str]:
    """`titles`, where several sections share one, refined (refine(title, their sections) -> their titles)."""
    alike: dict[str, list[int]] = {}
    for index, title in enumerate(titles):
        alike.setdefault(title, []).append(index)
    titles = list(titles)
    for title, indexes in alike.items():
        if len(indexes) > 1:
            for index, better in zip(indexes, refine(title, [sections[index] for index in indexes])):
                titles[index] = better
    return titles


def _place(section: list[Row]) -> tuple[str, ...]:
    """Where a section's model is: its file's path, in parts, or its module, as one part; () for a built-in."""
    row = section[0]
    if row.model in BUILTIN_MODELS:
        return ()
    identity = next((found for row in section if (found := row.model_identity)), None)
    target = row.model.rpartition(":")[0]
    if identity and identity.module:
        return (identity.module,)
    if identity and identity.path:
        return Path(identity.path).parts
    return Path(target).parts if target.endswith(".py") else (target,)


def _shortest(places: list[tuple[str, ...]]) -> list[str]:
    """Each place's last parts, as few as tell the different places apart."""
    distinct = set(places)
    depth = next(depth for depth in range(1, max(map(len, places)) + 1)
                 if len({place[-depth:] for place in distinct}) == len(distinct))
    return [str(Path(*place[-depth:])) for place in places]


def _with_source(title: str, sections: list[list[Row]]) -> list[str]:
    sources = [(section[0].settings.get("model_source") or (None, None))[1] for section in sections]
    if len(set(sources)) == 1:
        return [title] * len(sections)
    return [f"{title} (source {source[:12] if source else 'unknown'})" for source in sources]


def _with_reference(title: str, sections: list[list[Row]]) -> list[str]:
    references = [section[0].model for section in sections]
    if len(set(references)) == 1:
        return [title] * len(sections)
    return [f"{title} (given as {reference})" for reference in references]


def _with_number(title: str, sections: list[list[Row]]) -> list[str]:
    return [f"{title} #{number}" for number in range(1, len(sections) + 1)]


def name_rows(rows: list[Row]) -> None:
    """Each row's name: its backend and the settings that differ within its model's section."""
    for section in model_sections(rows):
        _, differing = section_settings(section)
        for row in section:
            row.name_parts = {key: describe(key, row.settings.get(key)) for key in dict.fromkeys([*differing, *ALWAYS_NAMED])
                              if key not in NOT_DESCRIBED}


def sweeps(rows: list[Row]) -> dict[tuple[str, str, str, str], list[tuple[int, Row]]]:
    """(model title, machine, name less the batch size, device) -> its rows by batch size, for settings that were
    run at several batch sizes and nothing else different."""
    lines: dict[tuple, list[Row]] = {}
    for row in rows:
        if row.entries:
            rest = tuple((k, v) for k, v in row.settings.items() if k not in ("batch_size", "jit_compile_resolved"))
            lines.setdefault((row.machine, row.software, rest), []).append(row)
    return {(line[0].model_title, line[0].machine, line[0].name_without("batch_size"), line[0].device):
            sorted(((row.settings["batch_size"], row) for row in line), key=lambda item: item[0])
            for line in lines.values() if len(line) > 1}


def describe(key: str, value: Any) -> str:
    """A setting as a row name or section header shows it; '' for an off switch."""
    if key == "implementation":
        return "native" if value == "native" else ""
    if key in ("profile", "data_parallel"):
        return {"profile": "profiled", "data_parallel": "data-parallel"}[key] if value else ""
    named = {
        "batch_size": lambda: f"batch {value}",
        "epochs": lambda: f"{value} epochs",
        "learning_rate": lambda: f"learning rate {value:g}",
        "hidden": lambda: f"hidden {','.join(map(str, value))}" if value else "",
        "precision": lambda: str(value),
        "jit_compile": lambda: "" if value == "auto" else f"jit_compile={value}",
        "steps_per_execution": lambda: "" if value == 1 else f"steps_per_execution={value}",
        "fit_steps_per_epoch": lambda: "steps_per_epoch given" if value else "",
        "data_format": lambda: "" if value == "channels_last" else str(value),
        "input_pipeline": lambda: f"input {value}",
        "environment": lambda: f"in {value}" if value else "",
        "cpu_threads": lambda: "default threads" if value is None else f"{value} CPU threads",
        "xla_flags": lambda: f"XLA {value}" if value else "no XLA flags",
        "limit_train": lambda: "all training images" if value is None else f"first {value:,} training images",
        "limit_test": lambda: "all test images" if value is None else f"first {value:,} test images",
        "validation_size": lambda: f"{value:,} held out for validation",
        "dataset": lambda: str(value),
        "target_accuracy": lambda: "" if value is None else f"target {value:.0%}",
        "cpu_devices": lambda: "" if value == 1 else f"over {value} CPU devices",
        "from_logits": lambda: "from logits" if value else "",
        "inference_batch_size": lambda: "" if value is None else f"inference batch {value}",
        "float32_matmul_precision": lambda: {"float32": "", None: "", "tf32": "TF32"}.get(value,
                                                                                          f"float32 as the {value}"),
    }
    return named[key]() if key in named else f"{key}={value}"
