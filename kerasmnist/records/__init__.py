"""The project's data model and where it is kept, in three modules:

    schema.py      the record types, each a frozen dataclass with one JSON form (to_json / from_json)
    store.py       the locked, atomic store: one JSON file per run, results.jsonl and bench.jsonl
    migrations.py  results files of earlier schema versions, brought up to this one

`from kerasmnist import records` and records.X reach all that other modules use.
"""

from kerasmnist.records.schema import (BENCH_KIND, CELL_KIND, SCHEMA_VERSION, ArrayIdentity, BenchEntry, CellEntry,
                                       CodeIdentity, DataFile, DataIdentity, HelperFile,
                                       ModelIdentity, Phases, RunRecord,
                                       Timeline, TimeToAccuracy, TrainingResult, new_invocation)
from kerasmnist.records.store import (BENCH_FILE, RESULTS_FILE, SUPERSEDED_FILE, add_result, ensure_writable, read,
                                      read_results, replace_atomically, write)

__all__ = ["BENCH_FILE", "BENCH_KIND", "CELL_KIND", "RESULTS_FILE", "SCHEMA_VERSION", "SUPERSEDED_FILE",
           "ArrayIdentity", "BenchEntry", "CellEntry", "CodeIdentity", "DataFile", "DataIdentity", "HelperFile",
           "ModelIdentity",
           "Phases", "RunRecord", "Timeline", "TimeToAccuracy", "TrainingResult", "add_result", "ensure_writable",
           "new_invocation", "read", "read_results", "replace_atomically", "write"]
