import dataclasses
import hashlib
import json
import re

import pytest
from click.testing import CliRunner

from conftest import FIXTURE_DIR, error_line, fake_entry, run_cli
from kerasmnist import cli, records, report, tasks
from kerasmnist.launch import compare, processes, rounds
from kerasmnist.config import RunConfig
from kerasmnist.errors import UNAVAILABLE_EXIT
from kerasmnist.launch.matrix import CELL_AXES, Matrix, cells, matrix_from


def small_matrix(rounds=1, **run):
    return matrix_from({"matrix": {"models": ["ffn"], "peak_matmul_size": 0, "rounds": rounds},
                        "run": {"data_dir": str(FIXTURE_DIR), **run}}, {}, "t")


def stub_cells(monkeypatch, statuses=None, interrupt_at=None):
    ran = []

    def fake_run_cell(cell, timeout_seconds, out_dir):
        if interrupt_at is not None and len(ran) == interrupt_at:
            raise KeyboardInterrupt
        ran.append(cell.label)
        return fake_entry(cell, status=(statuses or {}).get(cell.config.backend, "ok"), reason="because")

    monkeypatch.setattr(rounds, "run_cell", fake_run_cell)
    return ran


def saved(out):
    entries, ignored = records.read_results(out / records.RESULTS_FILE)
    assert not ignored
    return entries


def test_every_finished_cell_is_saved_and_a_rerun_resumes(tmp_path, monkeypatch):
    ran = stub_cells(monkeypatch, interrupt_at=2)
    outcome = compare.run_matrix(small_matrix(), tmp_path, "cmd", echo=lambda line: None)
    assert outcome.interrupted and outcome.exit_code == 130
    assert [e.backend for e in saved(tmp_path)] == ["tensorflow", "torch"]

    ran = stub_cells(monkeypatch)
    outcome = compare.run_matrix(small_matrix(), tmp_path, "cmd", echo=lambda line: None)
    assert ran == ["jax cpu ffn round 1"]
    assert outcome.counts == {"ok": 1, "skipped": 0, "failed": 0, "already done": 2}
    assert [e.backend for e in saved(tmp_path)] == ["tensorflow", "torch", "jax"]


def test_force_reruns_done_cells_without_duplicating_them(tmp_path, monkeypatch):
    stub_cells(monkeypatch)
    compare.run_matrix(small_matrix(), tmp_path, "cmd", echo=lambda line: None)
    ran = stub_cells(monkeypatch)
    compare.run_matrix(small_matrix(), tmp_path, "cmd", force=True, echo=lambda line: None)
    assert len(ran) == 3 and len(saved(tmp_path)) == 3


def test_a_changed_configuration_is_not_taken_as_done(tmp_path, monkeypatch):
    stub_cells(monkeypatch)
    compare.run_matrix(small_matrix(), tmp_path, "cmd", echo=lambda line: None)
    ran = stub_cells(monkeypatch)
    compare.run_matrix(small_matrix(epochs=2), tmp_path, "cmd", echo=lambda line: None)
    assert len(ran) == 3


def test_failed_cells_set_the_exit_status_and_are_retried(tmp_path, monkeypatch):
    stub_cells(monkeypatch, statuses={"torch": "failed", "jax": "skipped"})
    outcome = compare.run_matrix(small_matrix(), tmp_path, "cmd", echo=lambda line: None)
    assert outcome.counts == {"ok": 1, "skipped": 1, "failed": 1, "already done": 0}
    assert outcome.exit_code == 1
    ran = stub_cells(monkeypatch)
    assert compare.run_matrix(small_matrix(), tmp_path, "cmd", echo=lambda line: None).exit_code == 0
    assert sorted(ran) == ["jax cpu ffn round 1", "torch cpu ffn round 1"]


def test_a_truncated_results_line_is_ignored_and_said(tmp_path, monkeypatch):
    stub_cells(monkeypatch)
    compare.run_matrix(small_matrix(), tmp_path, "cmd", echo=lambda line: None)
    path = tmp_path / records.RESULTS_FILE
    text = path.read_text()
    path.write_text(text[: len(text) - 40])  # the last line cut short, as by a copy taken mid-write
    said = []
    ran = stub_cells(monkeypatch)
    compare.run_matrix(small_matrix(), tmp_path, "cmd", echo=said.append)
    assert ran == ["jax cpu ffn round 1"]
    assert any("results.jsonl:3: not valid JSON" in line for line in said)


def test_rounds_added_by_a_later_command_take_seeds_no_earlier_round_used(tmp_path, monkeypatch):
    stub_cells(monkeypatch)
    compare.run_matrix(small_matrix(rounds=2), tmp_path, "first", echo=lambda line: None)
    # The same rows from another spelling of the data folder (other keys), stopped in its second round.
    other_spelling = f"{FIXTURE_DIR.parent}/./{FIXTURE_DIR.name}"
    stub_cells(monkeypatch, interrupt_at=4)
    compare.run_matrix(small_matrix(rounds=2, data_dir=other_spelling), tmp_path, "second", echo=lambda line: None)
    ran = stub_cells(monkeypatch)
    compare.run_matrix(small_matrix(rounds=2, data_dir=other_spelling), tmp_path, "second", echo=lambda line: None)
    assert len(ran) == 2  # the rerun found the 4 cells done
    seeds = {}
    for entry in saved(tmp_path):
        seeds.setdefault(entry.config["data_dir"], []).append(entry.seed)
    assert sorted(seeds[str(FIXTURE_DIR)]) == [0, 0, 0, 1, 1, 1]
    assert sorted(seeds[other_spelling]) == [2, 2, 2, 3, 3, 3]


def test_a_cell_that_cannot_run_here_is_skipped_and_one_with_bad_input_failed():
    unavailable = processes.ChildResult(UNAVAILABLE_EXIT, (), ("kerasmnist: error: backend torch sees no "
                                                                        "CUDA GPU",))
    assert unavailable.status() == ("skipped", "backend torch sees no CUDA GPU")
    bad_data = processes.ChildResult(2, (), ("kerasmnist: error: data folder x is not a readable directory",))
    assert bad_data.status() == ("failed", "data folder x is not a readable directory")


@pytest.mark.parametrize("args, folder", [(["compare", "--config", "quick"], "kerasmnist-results/quick"),
                                          (["compare"], "kerasmnist-results/compare"),
                                          (["sweep", "--batch-sizes", "64,128"], "kerasmnist-results/sweep")])
def test_results_go_to_a_folder_of_their_own_outside_reports(tmp_path, monkeypatch, args, folder):
    monkeypatch.chdir(tmp_path)
    stub_cells(monkeypatch)
    monkeypatch.setattr(report, "build", lambda folders, out: out / "report.md")
    result = CliRunner().invoke(cli.cli, [*args, "--backends", "jax", "--models", "ffn", "--peak-matmul-size", "0"])
    assert result.exit_code == 0, result.output
    assert [path.relative_to(tmp_path).as_posix() for path in tmp_path.glob("*/*/results.jsonl")] == \
        [f"{folder}/results.jsonl"]
    assert len(saved(tmp_path / folder)) == 3 * (2 if args[0] == "sweep" else 1)  # 3 rounds by default
    help_text = " ".join(CliRunner().invoke(cli.cli, [args[0], "--help"]).output.split())
    assert f"[default: {folder.rsplit('/', 1)[0]}/" in help_text


def test_every_train_setting_is_a_compare_and_sweep_flag_of_the_same_name():
    settings = {field.name for field in dataclasses.fields(RunConfig)} - set(CELL_AXES)
    for command in (cli.train, cli.compare, cli.sweep):
        assert settings <= {param.name for param in command.params}, command.name
    assert {"rounds", "max_rounds", "cell_timeout", "target_ci", "config_path"} <= \
        {param.name for param in cli.sweep.params}
    arguments = ["--seed", "7", "--hidden", "64,32", "--learning-rate", "0.01", "--dataset", "fashion-mnist",
                 "--jit-compile", "true", "--steps-per-execution", "4", "--data-format", "channels_first",
                 "--xla-flags=--xla_cpu_use_thunk_runtime=false", "--target-accuracy", "0.9", "--tf32",
                 "--cell-timeout", "60", "--repeats", "4", "--backends", "jax"]
    parsed = cli.compare.make_context("compare", arguments).params
    matrix, _ = compare.load(parsed.pop("config_path"), {key: value for key, value in parsed.items()
                                                         if key not in ("out", "force")})
    assert (matrix.rounds, matrix.cell_timeout) == (4, 60)
    assert matrix.run == dataclasses.replace(
        Matrix.run, model="ffn", seed=7,  # hidden sizes make [run] an ffn template
        hidden=(64, 32), learning_rate=0.01, dataset="fashion-mnist", jit_compile="true",
        steps_per_execution=4, data_format="channels_first", xla_flags="--xla_cpu_use_thunk_runtime=false",
        target_accuracy=0.9, float32_matmul_precision="tf32")


def test_a_cells_child_receives_its_config_whole():
    config = RunConfig(backend="jax", model="ffn", hidden=(64, 32), limit_train=100, cpu_threads=1, cpu_devices=2,
                       data_parallel=True, float32_matmul_precision="tf32", model_args={"width": 8, "name": "a|b"},
                       xla_flags="--xla_cpu_use_thunk_runtime=false --xla_cpu_max_isa=AVX2")
    received, spawned_at = tasks.from_json(tasks.to_json(tasks.TrainTask(config), 12.5))
    assert received == tasks.TrainTask(config) and spawned_at == 12.5
    assert received.config.data_dir is None  # unset stays unset: the child finds the data as train would


# Real cells, each a `kerasmnist train` process.

def real_cell(tmp_path, backend, device, **run):
    matrix = matrix_from({"matrix": {"backends": [backend], "devices": [device], "models": ["ffn"]},
                          "run": {"data_dir": str(FIXTURE_DIR), "validation_size": 1000, **run}}, {}, "t")
    return cells(matrix)[0]


@pytest.mark.slow
def test_a_cell_that_cannot_run_here_is_skipped_with_the_reason(tmp_path):
    entry = rounds.run_cell(real_cell(tmp_path, "torch", "gpu"), 300, tmp_path)
    assert entry.status == "skipped"
    assert entry.reason.startswith("backend torch sees no CUDA GPU")
    assert entry.record is None


@pytest.mark.slow
def test_a_cell_past_its_timeout_is_killed_and_failed(tmp_path):
    entry = rounds.run_cell(real_cell(tmp_path, "jax", "cpu", epochs=50), 3, tmp_path)
    assert entry.status == "failed" and entry.reason == "timed out after 3 s"


def test_a_cell_killed_by_a_signal_is_failed():
    status, reason = processes.ChildResult(-9, (), ("Epoch 1/5",)).status()
    assert status == "failed" and reason == "killed by SIGKILL (out of memory?): Epoch 1/5"
    assert processes.ChildResult(-15, (), ("Epoch 1/5",)).status()[1] == "killed by SIGTERM: Epoch 1/5"


@pytest.mark.slow
def test_real_matrix_end_to_end_across_all_backends(tmp_path):
    out = tmp_path / "report"
    arguments = ["compare", "--models", "ffn", "--epochs", "2", "--rounds", "1", "--data-dir", str(FIXTURE_DIR),
                 "--validation-size", "1000", "--limit-train", "1000", "--peak-matmul-size", "256", "--out", str(out)]
    result = run_cli(*arguments, env={"MPLBACKEND": "Agg"})
    assert result.returncode == 0, result.stderr
    entries = saved(out)
    assert sorted(e.backend for e in entries) == ["jax", "tensorflow", "torch"]
    assert all(e.status == "ok" and e.record.resolved_device == "cpu" for e in entries)
    for name in ("report.md", "results.csv", "steady_epoch_seconds.png", "test_accuracy.png", "learning_curves.png"):
        assert (out / name).stat().st_size > 0
    report = (out / "report.md").read_text()
    assert "ran fastest in a single round: no order is decided" in report  # one round ranks nothing
    assert "undecided: 1 round, no interval" in report
    assert "kerasmnist compare --models ffn" in report
    # Each cell's GFLOP/s as a share of the 256 x 256 matmul rate its backend reached in this run.
    peaks = records.read_results(out / "bench.jsonl", "kerasmnist.bench")[0]
    assert sorted((e.backend, e.status) for e in peaks) == [("jax", "ok"), ("tensorflow", "ok"), ("torch", "ok")]
    # samples/s, inference samples/s, then GFLOP/s with its share of the peak
    assert re.search(r"\| jax \| cpu \| 1 ok \| 1 \| [^|]+ \| [^|]+ \| [\d,]+ \| [\d,]+ \| [\d.]+ \(\d+%\) \|", report), report
    contention = entries[0].record.contention
    assert 0 < contention["own_cpu_seconds"] <= contention["wall_seconds"] * contention["logical_cores"] + 0.1
    assert contention["other_cpu_seconds"] >= 0 and contention["load_average_start"] >= 0
    assert all(e.round == f"{e.invocation} #1" for e in entries)

    again = run_cli(*arguments)
    assert again.returncode == 0
    assert "3 of 3 cells already done" in again.stderr and "matmul:" not in again.stderr
    assert len(saved(out)) == 3


@pytest.mark.slow
def test_compare_refuses_an_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_cli("compare", "--models", "ffn", "--out", str(blocker / "out"))
    assert result.returncode == 2
    assert "is not writable" in error_line(result.stderr)


def test_rounds_are_added_until_every_ratio_is_narrow_enough(tmp_path, monkeypatch):
    """--target-ci: stub cells with a steady 2:1 ratio and 1% noise stop as soon as the interval is
    narrow; with 30% noise they run to --max-rounds and the report names the ratio that stopped short."""
    import random

    def run_with(noise, out):
        rng = random.Random(0)

        def fake_run_cell(cell, timeout_seconds, out_dir):
            speed = {"jax": 1.0, "torch": 2.0}[cell.config.backend] * (1 + rng.uniform(-noise, noise))
            return fake_entry(cell, steady=speed)

        monkeypatch.setattr(rounds, "run_cell", fake_run_cell)
        matrix = matrix_from({"matrix": {"backends": ["jax", "torch"], "models": ["ffn"], "rounds": 2,
                                         "target_ci": 0.05, "max_rounds": 6, "peak_matmul_size": 0}}, {}, "t")
        lines = []
        compare.run_matrix(matrix, out, "test", echo=lines.append)
        return saved(out), lines

    steady, lines = run_with(0.01, tmp_path / "steady")
    assert len({e.repeat for e in steady}) < 6  # stopped before --max-rounds
    assert any("every ratio's 95% interval is within ±5%: done" in line for line in lines)
    noisy, lines = run_with(0.3, tmp_path / "noisy")
    assert sorted({e.repeat for e in noisy}) == [0, 1, 2, 3, 4, 5]
    text = report.build([tmp_path / "noisy"], tmp_path / "noisy").read_text()
    # A 2:1 ratio keeps its order through 30% noise: only the precision target was missed.
    assert "The order stands; only the ±5% precision target" in text and "- torch on cpu, vs fastest:" in text


@pytest.mark.slow
def test_a_cells_phases_add_up_to_its_wall_time(tmp_path):
    """The phases span the child's life from its spawn to its exit; the cell's wall time adds what the parent
    does around it (starting the process, reading the record, the host facts), which takes well under a second
    (on this project's 2-core machine: 0.1 to 0.3 s), so 1 s less than the wall time is the tolerance."""
    entry = rounds.run_cell(real_cell(tmp_path, "jax", "cpu"), 300, tmp_path)
    assert entry.status == "ok", entry.reason
    phases = entry.phases
    assert all(seconds >= 0 for seconds in phases.values()), phases
    assert entry.wall_seconds - 1.0 < sum(phases.values()) <= entry.wall_seconds
    assert phases["steady epochs"] == pytest.approx(sum(entry.record.epoch_seconds[1:]))
    assert phases["process start and imports"] > 0 and phases["writing the record and exiting"] > 0


def test_a_plan_with_too_few_steady_epochs_is_noted_once_and_one_with_enough_is_not():
    said = []
    rounds.note_few_steady_epochs(cells(matrix_from({"run": {"epochs": 3}}, {}, "t")), said.append)
    rounds.note_few_steady_epochs(cells(matrix_from({"run": {"epochs": 8}}, {}, "t")), said.append)
    assert said == ["note: some cells have 2 steady epochs; a median needs 7 to be one speed's (--epochs 8 or more), "
                    "and the report will say so"]


def test_a_failed_cell_of_a_users_model_names_its_file_and_hash_as_found_before_it_ran(tmp_path, monkeypatch):
    """A cell whose child failed before writing a record (here: it crashed at once) still says which model it was:
    the file and its source hash, found here without importing it; a built-in's cell carries none."""
    models = tmp_path / "models.py"
    models.write_text("def build(input_shape, num_classes):\n    raise NotImplementedError\n")
    monkeypatch.setattr(processes, "spawn", lambda *args, **kwargs: processes.ChildResult(1, (), ("Segmentation fault",)))
    for model, identity in ((f"{models}:build", {"reference": f"{models}:build", "kind": "file", "path": str(models),
                                                 "module": None, "function": "build",
                                                 "source_sha256": hashlib.sha256(models.read_bytes()).hexdigest()}),
                            ("ffn", None)):
        [cell] = cells(matrix_from({"matrix": {"backends": ["jax"], "models": [model], "rounds": 1}}, {}, "t"))
        entry = rounds.run_cell(cell, 60, tmp_path)
        assert entry.status == "failed" and entry.record is None
        assert (entry.model_code.to_json() if entry.model_code else None) == identity
        assert records.CellEntry.from_json(json.loads(json.dumps(entry.to_json()))) == entry
