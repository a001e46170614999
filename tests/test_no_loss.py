"""No finished result is ever lost: concurrent writers, unreadable lines, failed reruns, signals, full disks.

Most cases use stub cells (no training), so the suite stays fast; the signal cases run real processes.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import FIXTURE_DIR, fake_entry
from kerasmnist import pinning
from kerasmnist.child import backend
from kerasmnist.launch import compare, rounds
from kerasmnist import records, report
from kerasmnist.launch.matrix import cells, matrix_from

TESTS = Path(__file__).parent


def matrix(*backends, repeats=1):
    return matrix_from({"matrix": {"backends": list(backends), "models": ["ffn"], "repeats": repeats,
                                   "peak_matmul_size": 0}}, {}, "t")


def results(out):
    entries, ignored = records.read_results(out / records.RESULTS_FILE)
    return entries, ignored


def stub(monkeypatch, status="ok", seen=None):
    def fake_run_cell(cell, timeout_seconds, out_dir):
        if seen is not None:
            seen.append(cell.label)
        return fake_entry(cell, status=status, reason=None if status == "ok" else f"{status} here")

    monkeypatch.setattr(rounds, "run_cell", fake_run_cell)


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from conftest import fake_entry
    from kerasmnist.launch import compare, rounds
    from kerasmnist.launch.matrix import matrix_from

    out, name, other, block = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "block"

    def fake_run_cell(cell, timeout_seconds, out_dir):
        (out / f"{{name}}.{{cell.repeat}}.started").touch()
        # Wait until the other writer has a cell in flight too: both have read the results file.
        deadline = time.time() + 60
        while not list(out.glob(f"{{other}}.{{cell.repeat}}.started")) and time.time() < deadline:
            time.sleep(0.02)
        if block and cell.repeat == 1:
            time.sleep(600)  # the test kills this writer here, mid-cell
        return fake_entry(cell)

    rounds.run_cell = fake_run_cell
    matrix = matrix_from({{"matrix": {{"backends": [name], "models": ["ffn"], "repeats": 2,
                                     "peak_matmul_size": 0}}}}, {{}}, "t")
    compare.run_matrix(matrix, out, "writer " + name, echo=lambda line: None)
""").format(tests=str(TESTS))


def start_writer(tmp_path, out, name, other, block=False):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    return subprocess.Popen([sys.executable, str(script), str(out), name, other, "block" if block else "run"],
                            env=pinning.child_environment())


def test_two_compares_into_one_folder_both_keep_every_result(tmp_path):
    out = tmp_path / "shared"
    out.mkdir()
    writers = [start_writer(tmp_path, out, "jax", "torch"), start_writer(tmp_path, out, "torch", "jax")]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    entries, ignored = results(out)
    assert not ignored
    assert sorted((e.backend, e.repeat) for e in entries) == [("jax", 0), ("jax", 1), ("torch", 0), ("torch", 1)]


def test_a_compare_killed_mid_cell_keeps_the_cells_it_finished(tmp_path):
    out = tmp_path / "killed"
    out.mkdir()
    (out / "other.0.started").touch()
    (out / "other.1.started").touch()
    writer = start_writer(tmp_path, out, "jax", "other", block=True)
    deadline = time.time() + 60
    while not (out / "jax.1.started").exists() and time.time() < deadline:
        time.sleep(0.05)
    writer.kill()  # kill -9: no handler runs
    writer.wait()
    entries, ignored = results(out)
    assert [(e.backend, e.repeat, e.status) for e in entries] == [("jax", 0, "ok")] and not ignored


def test_unreadable_lines_stay_byte_for_byte(tmp_path, monkeypatch):
    path = tmp_path / records.RESULTS_FILE
    old = fake_entry(cells(matrix("jax"))[0]).to_json() | {"schema_version": 0}
    bad_lines = [json.dumps(old), '{"schema_version": 2, "kind": "kerasm']
    path.write_text("".join(line + "\n" for line in bad_lines))
    stub(monkeypatch)
    said = []
    compare.run_matrix(matrix("torch"), tmp_path, "cmd", echo=said.append)
    lines = path.read_text().splitlines()
    assert lines[:2] == bad_lines and len(lines) == 3
    assert any("results.jsonl:1: schema version 0" in line for line in said)
    assert any("results.jsonl:2: not valid JSON" in line for line in said)


@pytest.mark.parametrize("status", ["failed", "skipped"])
def test_a_rerun_that_does_not_finish_never_replaces_a_result(tmp_path, monkeypatch, status):
    stub(monkeypatch)
    compare.run_matrix(matrix("jax"), tmp_path, "first", echo=lambda line: None)
    stub(monkeypatch, status=status)
    outcome = compare.run_matrix(matrix("jax"), tmp_path, "again --force", force=True, echo=lambda line: None)
    assert outcome.counts[status] == 1
    entries, _ = results(tmp_path)
    assert sorted(e.status for e in entries) == sorted(["ok", status])  # the attempt is kept beside it
    text = report.build([tmp_path], tmp_path).read_text()
    assert f"| {status} attempt (an earlier ok result stands) |" in text
    assert "| jax | cpu | 1 ok" in text
    seen = []
    stub(monkeypatch, seen=seen)
    compare.run_matrix(matrix("jax"), tmp_path, "resume", echo=lambda line: None)
    assert seen == []  # the cell still counts as done


def test_a_successful_rerun_replaces_the_result_and_archives_the_old_one(tmp_path, monkeypatch):
    stub(monkeypatch)
    compare.run_matrix(matrix("jax"), tmp_path, "first", echo=lambda line: None)
    compare.run_matrix(matrix("jax"), tmp_path, "second", force=True, echo=lambda line: None)
    entries, _ = results(tmp_path)
    assert [e.command for e in entries] == ["second"]
    archived, _ = records.read_results(tmp_path / records.SUPERSEDED_FILE)
    assert [e.command for e in archived] == ["first"]


@pytest.mark.slow
def test_a_rerun_keeps_the_files_of_earlier_attempts(tmp_path):
    cell = cells(matrix_from({"matrix": {"backends": ["torch"], "devices": ["gpu"], "models": ["ffn"]}}, {}, "t"))[0]
    earlier = tmp_path / "runs" / cell.key / "earlier-attempt"
    earlier.mkdir(parents=True)
    (earlier / "record.json").write_text("{}")
    entry = rounds.run_cell(cell, 300, tmp_path)  # skipped at once: no GPU here
    assert entry.status == "skipped" and (earlier / "record.json").exists()
    assert len(list((tmp_path / "runs" / cell.key).iterdir())) == 2


def test_a_full_disk_fails_the_cell_and_keeps_the_results_saved_before(tmp_path, monkeypatch):
    stub(monkeypatch)
    compare.run_matrix(matrix("jax"), tmp_path, "first", echo=lambda line: None)
    before = (tmp_path / records.RESULTS_FILE).read_text()

    def full_disk(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("kerasmnist.records.store.os.fsync", full_disk)
    said = []
    outcome = compare.run_matrix(matrix("torch"), tmp_path, "second", echo=said.append)
    assert outcome.counts["failed"] == 1 and outcome.exit_code == 1
    assert any("could not be saved" in line and "No space left on device" in line for line in said)
    assert (tmp_path / records.RESULTS_FILE).read_text() == before
    assert not list(tmp_path.glob(".results.jsonl.*.tmp"))


def test_a_crash_before_the_rename_leaves_the_old_file_whole(tmp_path, monkeypatch):
    stub(monkeypatch)
    compare.run_matrix(matrix("jax"), tmp_path, "first", echo=lambda line: None)
    before = (tmp_path / records.RESULTS_FILE).read_text()

    def killed(source, target):
        raise SystemExit("killed between writing the new file and renaming it")

    monkeypatch.setattr("kerasmnist.records.store.os.replace", killed)
    with pytest.raises(SystemExit):
        compare.run_matrix(matrix("torch"), tmp_path, "second", echo=lambda line: None)
    assert (tmp_path / records.RESULTS_FILE).read_text() == before


@pytest.fixture
def umask():
    """Sets the process's umask for one test, and puts it back."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_new_results_file_gets_the_mode_the_umask_gives(tmp_path, monkeypatch, umask, mask, mode):
    umask(mask)
    stub(monkeypatch)
    compare.run_matrix(matrix("jax"), tmp_path, "first", echo=lambda line: None)
    assert (tmp_path / records.RESULTS_FILE).stat().st_mode & 0o777 == mode


@pytest.mark.parametrize("mode", [0o644, 0o640])
def test_a_replaced_file_keeps_its_mode(tmp_path, umask, mode):
    umask(0o077)  # a private umask must not make a shared file private
    path = tmp_path / "report.md"
    path.write_text("old")
    path.chmod(mode)
    records.replace_atomically(path, "new")
    assert path.read_text() == "new" and path.stat().st_mode & 0o777 == mode


def training_children(out):
    """The pids of pinned training children (`python -m kerasmnist.child FOLDER`) writing into `out`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if " -m kerasmnist.child " in text and str(out) in text:
            found.append(int(cmdline.parent.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the child through /proc")
@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_stops_compare_and_its_child_and_keeps_what_finished(tmp_path, signal_number):
    out = tmp_path / "stopped"
    child_env = pinning.child_environment()
    child_env.pop("KERASMNIST_DATA_DIR", None)
    compare_process = subprocess.Popen(
        [sys.executable, "-m", "kerasmnist", "compare", "--backends", "jax", "--models", "ffn", "--epochs", "5000",
         "--limit-train", "4000", "--validation-size", "1000", "--data-dir", str(FIXTURE_DIR),
         "--peak-matmul-size", "0", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env)
    for line in compare_process.stdout:  # the child's progress: wait until it trains its second epoch
        if line.startswith("Epoch 2/"):
            break
    children = training_children(out)
    assert children, "the training child never started"
    compare_process.send_signal(signal_number)
    stderr = compare_process.communicate(timeout=60)[1]
    assert compare_process.returncode != 0
    assert f"stopped by {signal.Signals(signal_number).name}" in stderr and "rerun the same command" in stderr
    time.sleep(0.5)
    assert not training_children(out), "an orphaned training child is still running"
    written = list((out / "runs").glob("*/*/*.json"))
    assert len(written) == 1 and '"status": "failed"' in written[0].read_text()  # it wrote its own record
    assert "interrupted" in written[0].read_text()


@pytest.mark.slow
def test_sigterm_to_train_writes_a_failed_record(tmp_path):
    child_env = {"KERASMNIST_DATA_DIR": ""}
    process = subprocess.Popen(
        [sys.executable, "-m", "kerasmnist", "train", "--backend", "jax", "--model", "ffn", "--epochs", "5000",
         "--limit-train", "4000", "--validation-size", "1000", "--progress", "epoch", "--data-dir", str(FIXTURE_DIR),
         "--out", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=pinning.child_environment() | child_env)
    process.stdout.readline()  # the first epoch line: training has begun
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM and "kerasmnist: stopped by SIGTERM" in stderr
    (record,) = [records.read(path) for path in tmp_path.glob("*.json")]
    assert record.status == "failed" and "interrupted" in record.error


def test_a_cell_that_finished_as_the_stop_came_is_kept(tmp_path, monkeypatch):
    """The stop reached compare while its child was writing an ok record: that result is saved too."""
    def finished_then_stopped(cell, timeout_seconds, out_dir):
        raise rounds.CellInterrupted("stopped by SIGTERM", fake_entry(cell))

    monkeypatch.setattr(rounds, "run_cell", finished_then_stopped)
    said = []
    outcome = compare.run_matrix(matrix("jax", "torch"), tmp_path, "cmd", echo=said.append)
    assert outcome.interrupted and outcome.counts["ok"] == 1
    entries, _ = results(tmp_path)
    assert [(e.backend, e.status) for e in entries] == [("jax", "ok")]
    assert any(line.startswith("stopped by SIGTERM: the cells finished are kept") for line in said)
