"""The record types' JSON forms against what was committed: every results file of every schema version reads,
and what this version writes is byte for byte what was written."""

import dataclasses
import json
import pickle
from pathlib import Path

import pytest

from conftest import fake_entry, with_figures
from kerasmnist import records
from kerasmnist.launch.matrix import Matrix, cells

ROOT = Path(__file__).parent.parent
COMMITTED = sorted([*ROOT.glob("reports/**/results*.jsonl"), *ROOT.glob("reports/**/bench*.jsonl"),
                    *ROOT.glob("tests/fixtures/results/*.jsonl")])


def test_the_committed_results_cover_every_schema_version():
    versions = {json.loads(line)["schema_version"] for path in COMMITTED for line in path.read_text().splitlines()}
    assert versions == set(range(1, records.SCHEMA_VERSION + 1))


@pytest.mark.parametrize("path", COMMITTED, ids=lambda path: str(path.relative_to(ROOT)))
def test_a_committed_results_file_reads_whole_and_this_versions_lines_write_back_byte_for_byte(path):
    kind = records.BENCH_KIND if path.name.startswith("bench") else records.CELL_KIND
    entries, ignored = records.read_results(path, kind)
    lines = path.read_text().splitlines()
    assert not ignored and len(entries) == len(lines)
    for line, entry in zip(lines, entries):
        assert entry.schema_version == records.SCHEMA_VERSION
        if json.loads(line)["schema_version"] == records.SCHEMA_VERSION:
            assert json.dumps(entry.to_json()) == line
        assert type(entry).from_json(entry.to_json()) == entry  # a migrated entry too: one JSON form, both ways


def code(kind):
    """A user's code's identity as references.Reference.identity writes it."""
    return {"reference": "models.py:build" if kind == "file" else "pkg.models:build", "kind": kind,
            "path": "/work/models.py", "module": None if kind == "file" else "pkg.models", "function": "build",
            "source_sha256": "ab" * 32}


@pytest.mark.parametrize("identity", [
    {"reference": "cnn", "kind": "builtin", "function": "build_cnn", "arguments": {}, "parameters": 34_826,
     "layers": {"Conv2D": 2, "Dense": 1}},
    {"reference": "cnn", "kind": "builtin", "arguments": {}, "parameters": 34_826},  # migrated from schema 4
    code("file") | {"arguments": {"width": 8}, "parameters": 1000, "layers": {"Dense": 1}},
    code("module") | {"arguments": {}, "parameters": 1000, "layers": {"Dense": 1}},
], ids=["builtin", "builtin-schema-4", "file", "module"])
def test_a_model_identity_keeps_the_keys_its_kind_writes_in_order(identity):
    typed = records.ModelIdentity.from_json(identity)
    assert list(typed.to_json().items()) == list(identity.items())


@pytest.mark.parametrize("provenance", [
    {"name": "mnist", "origin": "data-dir", "directory": "/data",
     "files": [{"name": "train-images-idx3-ubyte.gz", "bytes": 9912422, "sha256": "cd" * 32,
                "verified_against": "published SHA-256"}], "credit": "Yann LeCun"},
    {"name": "loader.py:load", "origin": "loader", "loader": code("file"),
     "arrays": {"x_train": {"shape": [1200, 16, 16, 3], "dtype": "uint8", "sha256": "ef" * 32}},
     "directory": None, "files": [], "credit": ""},
], ids=["builtin", "loader"])
@pytest.mark.parametrize("schema", [4, 5])
def test_a_data_identity_keeps_the_keys_its_origin_writes_in_order(provenance, schema):
    sizes = ({"num_classes": 10} if schema == 5 else {}) | {"train_size": 1000, "validation_size": 200, "test_size": 100}
    written = provenance | sizes  # as data.load writes it: what the data is, then the splits' sizes
    typed = records.DataIdentity.from_json(written)
    assert list(typed.to_json().items()) == list(written.items())


def test_a_record_reads_its_results_figures_and_a_failed_one_has_none():
    record = fake_entry(cells(Matrix())[0]).record
    assert record.test_accuracy == record.result.test_accuracy and record.time_to_accuracy.epochs == 2
    assert record.to_json()["test_accuracy"] == record.result.test_accuracy  # flat in the JSON form
    started = records.RunRecord.start(record.config, record.environment, record.started_at, record.data, 0.1)
    failed = started.failed("MemoryError", "2026-11-22T10:01:00+00:00")
    assert failed.test_accuracy is None and failed.inference_median_seconds is None
    assert all(failed.to_json().get(name) is None for name in records.schema.FIGURES)
    assert "test_metrics" not in failed.to_json() and "failed_phase" not in failed.to_json()  # as older ones
    assert records.RunRecord.from_json(failed.to_json()) == failed
    with pytest.raises(AttributeError, match="no attribute 'accuracy'"):
        record.accuracy
    with pytest.raises(ValueError, match="an ok record needs its training figures"):
        dataclasses.replace(record, result=None)
    assert pickle.loads(pickle.dumps(record)) == record  # a Slurm job's results travel pickled


def test_phases_are_read_by_name_in_the_order_they_ran():
    written = {"process start and imports": 0.5, "reading the environment": 0.25, "steady epochs": 2.0}
    phases = records.Phases.from_json(written)
    assert list(phases) == list(written) and phases["steady epochs"] == 2.0 and sum(phases.values()) == 2.75
    assert phases.get("validation", 0) == 0 and phases.to_json() == written


def test_a_run_that_failed_after_training_began_keeps_what_it_timed_flat_and_reads_it_back():
    record = fake_entry(cells(Matrix())[0]).record
    started = records.RunRecord.start(record.config, record.environment, record.started_at, record.data, 0.1)
    failed = started.failed("ValueError: bad", "2026-11-22T10:01:00+00:00", "Traceback ...", "evaluation",
                            {"build_seconds": 0.5, "epoch_seconds": [2.0, 1.0], "first_epoch_seconds": 2.0,
                             "history": {"loss": [0.5, 0.3]}, "test_accuracy": None})
    written = failed.to_json()
    assert written["failed_phase"] == "evaluation" and written["epoch_seconds"] == [2.0, 1.0]
    assert written["history"] == {"loss": [0.5, 0.3]} and written["test_accuracy"] is None
    assert "partial" not in written and failed.epoch_seconds == [2.0, 1.0] and failed.test_accuracy is None
    assert records.RunRecord.from_json(json.loads(json.dumps(written))) == failed


def test_extra_test_metrics_are_written_where_there_are_some_and_read_back():
    entry = fake_entry(cells(Matrix())[0])
    assert "test_metrics" not in entry.record.to_json()  # none: the key left out, as older records have it
    with_metrics = with_figures(entry, test_metrics={"aux_loss": 0.25}).record
    assert with_metrics.to_json()["test_metrics"] == {"aux_loss": 0.25}
    assert records.RunRecord.from_json(with_metrics.to_json()) == with_metrics
