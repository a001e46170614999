"""The matrix on Slurm (kerasmnist.launch.executors.slurm). The tests marked `slurm` run against a real cluster, the one-node cluster
`.ci/slurm.sh start` brings up (partitions main and second stand for two machine kinds), and skip where sinfo does
not answer. Their cells are tiny: the FFN under torch, 2 epochs of 1,000 images."""

from __future__ import annotations

import dataclasses
import json
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FIXTURE_DIR, error_line, fake_entry, run_cli
from kerasmnist import pinning
from kerasmnist.child import backend
from kerasmnist import records
from kerasmnist.launch import environments
from kerasmnist.launch.compare import plan_from
from kerasmnist.launch.executors import slurm
from kerasmnist.errors import ConfigError
from kerasmnist.launch.matrix import cells, matrix_from

PARTITIONS = ("main", "second")


def slurm_partitions() -> set[str] | str:
    """The partitions Slurm reports here, or why it does not answer."""
    if shutil.which("sinfo") is None:
        return "no sinfo here"
    try:
        answer = subprocess.run(["sinfo", "--noheader", "--format=%R"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "sinfo gave no answer in 30 s"
    return set(answer.stdout.split()) if answer.returncode == 0 else f"sinfo failed: {answer.stderr.strip()}"


@pytest.fixture(scope="module")
def cluster():
    partitions = slurm_partitions()
    if isinstance(partitions, str) or not set(PARTITIONS) <= partitions:
        pytest.skip(f"no Slurm cluster with partitions {' and '.join(PARTITIONS)} answers here "
                    f"({partitions if isinstance(partitions, str) else 'it has ' + ', '.join(sorted(partitions))}); "
                    ".ci/slurm.sh start brings one up")


def write_config(folder: Path, machines: list[dict], rounds: int = 1, batch_sizes: tuple[int, ...] = (), **slurm_keys):
    """A tiny matrix: the FFN under torch on the CPU, each cell 2 epochs of 1,000 images; jobs share the node."""
    lines = ["[matrix]", 'backends = ["torch"]', 'models = ["ffn"]', f"rounds = {rounds}", "peak_matmul_size = 0",
             *([f"batch_sizes = {list(batch_sizes)}"] if batch_sizes else []),
             "[run]", "epochs = 2", "limit_train = 1000", "validation_size = 200", 'progress = "none"',
             f'data_dir = "{FIXTURE_DIR}"',
             "[slurm]", "exclusive = false", "cpus_per_task = 1", *(f"{key} = {json.dumps(value)}"
                                                                  for key, value in slurm_keys.items())]
    for machine in machines:
        lines += ["[[machines]]", *(f"{key} = {json.dumps(value)}" for key, value in machine.items())]
    path = folder / "cluster.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def saved(out: Path) -> list[records.CellEntry]:
    entries, ignored = records.read_results(out / records.RESULTS_FILE)
    assert not ignored
    return entries


def start_compare(config: Path, out: Path) -> subprocess.Popen:
    child_env = pinning.child_environment()
    child_env.pop("KERASMNIST_DATA_DIR", None)
    return subprocess.Popen([sys.executable, "-m", "kerasmnist", "compare", "--config", str(config), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env,
                            # a shell starts background jobs with SIGINT ignored: the driver must see Ctrl-C
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_first_cell(out: Path, timeout: float = 300) -> Path:
    """The folder of the first job with a finished cell in it, once there is one (the job still runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for results in out.glob(f"{slurm.JOBS_DIR}/*/{records.RESULTS_FILE}"):
            if records.read_results(results)[0]:
                return results.parent
        time.sleep(0.5)
    raise AssertionError("no job finished a cell in time")


def our_queued_jobs() -> list[str]:
    answer = subprocess.run(["squeue", "--noheader", "--format=%i %j"], capture_output=True, text=True, check=True)
    return [line for line in answer.stdout.splitlines() if " kerasmnist-" in line]


TWO_KINDS = [{"name": "one", "partition": "main"}, {"name": "two", "partition": "second"}]


@pytest.fixture(scope="module")
def two_kinds_two_rounds(cluster, tmp_path_factory):
    folder = tmp_path_factory.mktemp("two-kinds")
    result = run_cli("compare", "--config", str(write_config(folder, TWO_KINDS, rounds=2, parallel=2)),
                     "--out", str(folder / "out"))
    return result, folder / "out"


@pytest.mark.slow
@pytest.mark.slurm
def test_a_two_kind_two_round_matrix_comes_home_and_the_report_has_both_kinds(two_kinds_two_rounds):
    result, out = two_kinds_two_rounds
    assert result.returncode == 0, result.stderr
    assert "4 ok, 0 skipped, 0 failed, 0 already done" in result.stdout
    entries = saved(out)
    assert sorted((entry.machine_kind, entry.repeat, entry.status) for entry in entries) == [
        ("one", 0, "ok"), ("one", 1, "ok"), ("two", 0, "ok"), ("two", 1, "ok")]
    assert len({entry.round for entry in entries}) == 4  # a round is one kind's pass: kinds never pair
    report = (out / "report.md").read_text()
    assert "Slurm machine kind one" in report and "Slurm machine kind two" in report
    assert "## Across machines" in report and "unpaired runs" in report
    assert all(entry.phases for entry in entries)  # each cell's phases, as the node's run_cell recorded them
    assert all((folder / slurm.FOLDED_FILE).exists() for folder in (out / slurm.JOBS_DIR).glob("*_*"))

    rerun = run_cli("compare", "--config", str(out.parent / "cluster.toml"), "--out", str(out))
    assert rerun.returncode == 0 and "0 ok, 0 skipped, 0 failed, 4 already done" in rerun.stdout
    assert "submitted" not in rerun.stderr


@pytest.mark.slow
@pytest.mark.slurm
def test_each_entry_records_its_slurm_job_node_partition_and_kind(two_kinds_two_rounds):
    _, out = two_kinds_two_rounds
    for entry in saved(out):
        job = entry.slurm
        assert job["job_id"] == f"{job['array_job_id']}_{job['array_index']}"
        assert job["array_index"] == entry.repeat  # one array per kind, one task per round
        assert job["partition"] == {"one": "main", "two": "second"}[entry.machine_kind]
        assert job["node"] == entry.host["hostname"]
        assert (out / slurm.JOBS_DIR / job["job_id"] / records.RESULTS_FILE).is_file()  # where the node wrote it


@pytest.mark.slow
@pytest.mark.slurm
def test_a_job_cancelled_mid_cell_keeps_its_finished_cells_and_a_rerun_runs_only_the_rest(cluster, tmp_path):
    config = write_config(tmp_path, [{"name": "one", "partition": "main"}], batch_sizes=(64, 128))
    out = tmp_path / "out"
    driver = start_compare(config, out)
    job_folder = wait_for_first_cell(out)
    subprocess.run(["scancel", job_folder.name], check=True)  # the second cell is training
    stdout, stderr = driver.communicate(timeout=300)
    assert driver.returncode == 1, stderr
    assert "1 ok, 0 skipped, 1 failed, 0 already done" in stdout
    (finished,), (failed,) = ([e for e in saved(out) if e.status == status] for status in ("ok", "failed"))
    assert "CANCELLED" in failed.reason and failed.slurm["job_id"] == job_folder.name

    rerun = run_cli("compare", "--config", str(config), "--out", str(out))
    assert rerun.returncode == 0, rerun.stderr
    assert "1 ok, 0 skipped, 0 failed, 1 already done" in rerun.stdout
    entries = saved(out)
    assert [entry.status for entry in entries] == ["ok", "ok"]
    assert finished in entries and failed.key in {entry.key for entry in entries}


@pytest.mark.slow
@pytest.mark.slurm
def test_sigint_to_the_driver_cancels_its_jobs_and_loses_nothing_finished(cluster, tmp_path):
    config = write_config(tmp_path, [{"name": "one", "partition": "main"}], rounds=2, batch_sizes=(64, 128),
                          parallel=1)
    out = tmp_path / "out"
    driver = start_compare(config, out)
    job_folder = wait_for_first_cell(out)
    (finished,) = records.read_results(job_folder / records.RESULTS_FILE)[0]  # not folded home yet
    driver.send_signal(signal.SIGINT)
    _, stderr = driver.communicate(timeout=300)
    assert driver.returncode == 130, stderr
    assert our_queued_jobs() == []  # the running round and the pending one
    assert "cancelling this run's Slurm jobs" in stderr
    assert [entry.key for entry in saved(out)] == [finished.key]  # home, and nothing recorded failed


@pytest.mark.slow
@pytest.mark.slurm
def test_a_failing_setup_line_fails_the_round_with_the_job_log(cluster, tmp_path):
    config = write_config(tmp_path, [{"name": "one", "partition": "main", "setup": ["no-such-command-here"]}])
    result = run_cli("compare", "--config", str(config), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    (entry,) = saved(tmp_path / "out")
    assert entry.status == "failed" and "FAILED" in entry.reason and "no-such-command-here" in entry.reason


# A managed environment that installs only kerasmnist (editable, no dependencies): the rest is the driver's.
SITE_ENVIRONMENT = {"name": "site", "packages": [], "system_site_packages": True, "backends": ["torch"]}


@pytest.mark.slow
@pytest.mark.slurm
def test_a_managed_environment_made_on_the_login_node_runs_the_nodes_cells(cluster, tmp_path):
    """The node's own cache folder is made to differ (a setup line): its cell still runs with the interpreter the
    driver made before submitting."""
    config = write_config(tmp_path, [{"name": "one", "partition": "main"}],
                          setup=[f"export {environments.CACHE_VARIABLE}={tmp_path / 'not-the-drivers'}"])
    config.write_text(config.read_text() + "[[environments]]\n"
                      + "".join(f"{key} = {json.dumps(value)}\n" for key, value in SITE_ENVIRONMENT.items()))
    cache = tmp_path / "cache"
    result = run_cli("compare", "--config", str(config), "--out", str(tmp_path / "out"),
                     env={environments.CACHE_VARIABLE: str(cache)})
    assert result.returncode == 0, result.stderr
    (folder,) = cache.iterdir()
    assert result.stderr.index(f"site: made in {folder}") < result.stderr.index("one: submitted")
    (entry,) = saved(tmp_path / "out")
    assert (entry.status, entry.environment, entry.slurm["partition"]) == ("ok", "site", "main")
    assert entry.record.environment["executable"] == str(folder / "bin" / "python")


def test_a_jobs_cells_keep_the_environment_folders_the_driver_resolved(tmp_path, monkeypatch):
    """Pickled to the node as submitit sends it, a pinned environment keeps the driver's folder, whatever the
    node's cache folder; a node that does not see its interpreter names it."""
    monkeypatch.setenv(environments.CACHE_VARIABLE, str(tmp_path / "driver"))
    (cell,) = cells(matrix_from({"matrix": {"backends": ["torch"], "models": ["ffn"], "rounds": 1},
                                 "environments": [SITE_ENVIRONMENT]}, {}, "t"))
    sent = pickle.dumps(dataclasses.replace(cell, environment=cell.environment.pinned()))
    monkeypatch.setenv(environments.CACHE_VARIABLE, str(tmp_path / "node"))
    on_node = pickle.loads(sent)
    assert Path(on_node.environment.interpreter).parent.parent.parent == tmp_path / "driver"
    assert cell.environment.folder.parent == tmp_path / "node"  # unpinned: computed where it is asked
    assert slurm.first_unseen_interpreter((on_node,)) == f"environment site's {on_node.environment.interpreter}"
    Path(on_node.environment.interpreter).parent.mkdir(parents=True)
    Path(on_node.environment.interpreter).touch()
    assert slurm.first_unseen_interpreter((on_node,)) is None


@pytest.mark.slurm
def test_a_partition_slurm_rejects_is_one_line_with_slurms_message(cluster, tmp_path):
    result = run_cli("compare", "--slurm", "--slurm-partition", "no-such-partition", "--backends", "torch",
                     "--models", "ffn", "--peak-matmul-size", "0", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "Invalid partition name specified" in error_line(result.stderr)
    assert our_queued_jobs() == []


def test_without_submitit_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    with pytest.raises(ConfigError, match=r'pip install "kerasmnist\[slurm\]"'):
        matrix, executor = plan_from({}, {"slurm": True}, "t")
        executor.run(matrix, Path("unused"), "cmd", False, print)


def test_without_slurm_commands_the_error_says_so(monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match=r"no Slurm commands on this machine \(sbatch not found\)"):
        matrix, executor = plan_from({}, {"slurm": True}, "t")
        executor.run(matrix, Path("unused"), "cmd", False, print)


def kinds_of(tables, flags):
    """The Slurm machine kinds compare would run a config's matrix on; none where it runs here."""
    matrix, executor = plan_from(tables, flags, "t")
    assert "machines" not in {field.name for field in dataclasses.fields(matrix)}  # where to run is not what to run
    return getattr(executor, "kinds", ())


def test_machine_kinds_take_the_slurm_defaults_flags_and_their_own_keys():
    tables = {"matrix": {"devices": ["cpu", "gpu"]}, "slurm": {"partition": "gpu", "time_minutes": 30},
              "machines": [{"name": "t4", "constraint": "t4"}, {"name": "cpus", "partition": "cpu", "devices": ["cpu"]}]}
    t4, cpus = kinds_of(tables, {"slurm_time_minutes": 60, "slurm_parallel": 2})
    assert (t4.partition, t4.constraint, t4.time_minutes, t4.parallel, t4.devices) == ("gpu", "t4", 60, 2, ("cpu", "gpu"))
    assert (cpus.partition, cpus.devices, cpus.exclusive) == ("cpu", ("cpu",), True)
    assert kinds_of(tables, {"slurm": False}) == ()  # --no-slurm: here
    assert kinds_of({}, {}) == ()
    (only,) = kinds_of({}, {"slurm": True})
    assert only.name == "slurm" and only.partition is None


@pytest.mark.parametrize("tables, message", [
    ({"slurm": {"parallel": 0}}, "parallel must be a whole number of at least 1"),
    ({"slurm": {"exclusive": "yes"}}, "exclusive must be true or false"),
    ({"slurm": {"gpus": 1}}, "unknown Slurm key gpus"),
    ({"machines": [{"name": "a"}, {"name": "a"}]}, "two [[machines]] tables are named 'a'"),
    ({"machines": [{"partition": "x"}]}, "a machine kind needs a name"),
    ({"machines": [{"name": "a", "devices": ["gpu"]}]}, "devices has 'gpu', which the matrix does not run"),
])
def test_bad_slurm_tables_are_refused_with_one_line(tables, message):
    with pytest.raises(ConfigError) as refused:
        plan_from(tables, {}, "t")
    assert message in str(refused.value)


def kind_plan(kind_name: str, entries: list[records.CellEntry], rounds: int = 2, seed: int = 0):
    """A kind's plan of a two-kind matrix (the FFN under torch), seeded against `entries`."""
    matrix, executor = plan_from({"matrix": {"backends": ["torch"], "models": ["ffn"], "rounds": rounds},
                                  "run": {"seed": seed}, "machines": [{"name": "one"}, {"name": "two"}]}, {}, "t")
    return slurm.kind_plan(matrix, next(kind for kind in executor.kinds if kind.name == kind_name), entries)


def ran_on(kind_name: str, plan) -> list[records.CellEntry]:
    return [dataclasses.replace(fake_entry(cell), key=slurm.kind_key(cell, kind_name), machine_kind=kind_name)
            for cell in plan]


def seeds(plan) -> list[int]:
    return [cell.config.seed for cell in plan]


def test_a_kinds_new_rounds_take_seeds_its_earlier_rounds_did_not_use():
    earlier = ran_on("one", kind_plan("one", [], rounds=1, seed=1))  # kind one ran a round with seed 1
    assert seeds(kind_plan("one", earlier)) == [0, 2]  # seed 0 is new to it; 1 is taken, so 2
    assert seeds(kind_plan("two", earlier)) == [0, 1]  # kind two has no entries: as in a fresh folder
    assert seeds(kind_plan("one", [])) == seeds(kind_plan("two", [])) == [0, 1]  # fresh: alike on every kind


def test_a_kinds_resumed_rounds_keep_their_seeds_and_keys():
    earlier = ran_on("one", kind_plan("one", [], seed=1))
    plan = kind_plan("one", earlier[:1], rounds=3, seed=1)  # round 1 came home; rounds 2 and 3 did not
    assert seeds(plan) == [1, 2, 3]
    assert slurm.kind_key(plan[0], "one") == earlier[0].key  # so a rerun counts it done


def test_folding_a_job_brings_its_entries_home_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(slurm, "_final_state", lambda job_id: ("COMPLETED", None))
    matrix, executor = plan_from({"matrix": {"backends": ["torch"], "models": ["ffn"], "rounds": 1}}, {"slurm": True},
                                 "t")
    (kind,) = executor.kinds
    (cell,) = slurm.kind_plan(matrix, kind, [])
    job = slurm.Job("7_0", "kerasmnist-slurm-test", kind.name, tmp_path / slurm.JOBS_DIR / "7_0", 1)
    entry = dataclasses.replace(fake_entry(cell), key=slurm.kind_key(cell, kind.name), machine_kind=kind.name,
                                phases=records.Phases({"process start and imports": 0.5, "steady epochs": 0.25}),
                                slurm={"job_id": "7_0", "array_job_id": "7", "array_index": 0, "node": "n1",
                                       "partition": "main"})
    job.folder.mkdir(parents=True)
    records.add_result(job.folder / records.RESULTS_FILE, entry)
    records.replace_atomically(job.folder / slurm.PLAN_FILE, json.dumps(
        {"name": job.name, "kind": kind.name, "job_id": job.job_id, "stamp": {},
         "cells": [{"key": entry.key, "order": 0, "repeat": 0, "config": entry.config}]}))
    slurm.Driver(matrix, executor.kinds, tmp_path, "cmd", lambda line: None).fold(job, record_missing=True)
    assert saved(tmp_path) == [entry]  # phases and the Slurm fields included
    assert (job.folder / slurm.FOLDED_FILE).exists()
