"""Where records live: one JSON file per run, and the results files (results.jsonl, bench.jsonl), one entry a
line. Every write replaces its file whole through a temporary file and a rename, and the results files are
changed under a lock, so that neither a kill nor a second writer loses a result.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from kerasmnist.errors import ConfigError, DataError
from kerasmnist.records.migrations import migrate, readable
from kerasmnist.records.schema import (CELL_KIND, KIND, SCHEMA_VERSION, BenchEntry, CellEntry, Entry,
                                       RunRecord)

# The comparison's results file: one JSON object per line, one line per cell.
RESULTS_FILE = "results.jsonl"
BENCH_FILE = "bench.jsonl"
SUPERSEDED_FILE = "superseded.jsonl"


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
    if not readable(entry.get("schema_version")):
        return None, (f"schema version {entry.get('schema_version')} is not one this kerasmnist reads "
                      f"(1 to {SCHEMA_VERSION}); read it with the kerasmnist that wrote it")
    try:
        return (CellEntry if kind == CELL_KIND else BenchEntry).from_json(migrate(entry)), None
    except (KeyError, TypeError, ValueError, AttributeError) as error:  # a line edited by hand or from elsewhere
        return None, f"a {kind} entry with a missing or malformed field ({type(error).__name__}: {error})"


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
    newer did not: a failed, skipped or interrupted rerun never replaces a result. Nor does a result of other
    code under the same key: the user's helper modules (which the key cannot hold) edited in between."""
    return (isinstance(new, CellEntry) and isinstance(old, CellEntry) and old.key == new.key
            and (new.status == "ok" or old.status != "ok")
            and not (old.status == "ok" and new.status == "ok" and _helpers(old) != _helpers(new)))


def _helpers(entry: CellEntry) -> set[tuple[str, str]]:
    return {(helper.path, helper.source_sha256) for helper in entry.record.helper_files}


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
