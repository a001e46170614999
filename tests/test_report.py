"""The report's findings, asserted on the typed analysis it is rendered from (load.Row, analysis, headline,
stats.Ratio), so a change of layout fails none of them; how report.md says them is checked by a few cells read
back by column (report_markdown) and, as a whole, by the golden files of tests/test_golden.py."""

import csv
import dataclasses
import hashlib
import io
import itertools
import json
import re
import statistics
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import report_markdown
from conftest import fake_entry, with_figures
from kerasmnist import cli, records, report
from kerasmnist.errors import DataError
from kerasmnist.launch.matrix import cells, matrix_from
from kerasmnist.report import analysis, headline, load, markdown, speeds
from kerasmnist.report.stats import verdict


def write_lines(path, entries):
    """A results file as the writers leave it: one entry's JSON form per line."""
    path.write_text("".join(json.dumps(entry.to_json()) + "\n" for entry in entries))


def write_results(folder, entries):
    folder.mkdir(parents=True, exist_ok=True)
    write_lines(folder / records.RESULTS_FILE, entries)
    return folder


def matrix_cells(devices=("cpu",), repeats=1):
    return cells(matrix_from({"matrix": {"devices": list(devices), "repeats": repeats}}, {}, "t"))


def analysed(folder, entries=None, build=True):
    """What the report of `folder` (its results written from `entries` first, if given) is made from: the
    results read, the rows, and report.md's text (None with build=False: the rows alone need no plots)."""
    if entries is not None:
        write_results(folder, entries)
    results = load.gather([folder])
    text = report.build([folder], folder).read_text() if build else None
    return results, load.group(results.cells), text


def row_named(rows, name, device="cpu", model=None):
    [row] = [row for row in rows if row.name == name and row.device == device and model in (None, row.model)]
    return row


def close(found, estimate, low=None, high=None):
    """A ratio's estimate and interval as the report prints them, to 2 decimals."""
    printed = (round(found.estimate, 2), found.low and round(found.low, 2), found.high and round(found.high, 2))
    return printed == (estimate, low, high) if low is not None else printed[0] == estimate


def statuses_of(cells_read):
    return [sum(entry.status == status for entry in cells_read) for status in ("ok", "skipped", "failed")]


def test_report_has_tables_plots_csv_and_problem_cells(tmp_path):
    entries = []
    for cell in matrix_cells(devices=("cpu", "gpu"), repeats=3):
        # A few percent of noise per round, so the ratios have intervals.
        speed = {"tensorflow": 2.0, "torch": 3.0, "jax": 1.0}[cell.config.backend] * (1 + 0.02 * cell.repeat)
        if cell.config.device == "gpu" and cell.config.backend == "torch":
            entries.append(fake_entry(cell, status="skipped", reason="backend torch sees no CUDA GPU"))
        elif cell.config.device == "gpu" and cell.config.backend == "jax" and cell.repeat == 1:
            entries.append(fake_entry(cell, status="failed", reason="out of memory"))
        else:
            noise = 1 + 0.01 * ((cell.order * 7) % 3)
            entries.append(fake_entry(cell, steady=speed * noise / (10 if cell.config.device == "gpu" else 1)))
    results, rows, text = analysed(tmp_path, entries)
    assert (len(results.cells), *statuses_of(results.cells), len({e.round for e in results.cells})) == (36, 28, 6, 2, 3)
    standings = analysis.standings(rows)
    jax_cpu, tensorflow_gpu = row_named(rows, "jax", model="cnn"), row_named(rows, "tensorflow", "gpu", "cnn")
    assert (len(jax_cpu.entries), len({e.round for e in jax_cpu.entries})) == (3, 3)
    assert standings[id(jax_cpu)].fastest is jax_cpu and not analysis.instability(jax_cpu)
    torch_gpu, jax_gpu = row_named(rows, "torch", "gpu", "cnn"), row_named(rows, "jax", "gpu", "cnn")
    assert not torch_gpu.entries and [e.status for e in torch_gpu.others] == ["skipped"] * 3
    assert len(jax_gpu.entries) == 2 and [e.status for e in jax_gpu.others] == ["failed"]
    [cnn_on_cpu] = [found for found in headline.headlines(rows) if found.label == "cnn on cpu"]
    assert cnn_on_cpu.fastest is jax_cpu and cnn_on_cpu.decided
    tensorflow = next(c for c in cnn_on_cpu.contenders if c.row.backend == "tensorflow")
    assert close(tensorflow.versus_fastest, 2.00, 1.92, 2.09) and tensorflow.versus_fastest.rounds == 3
    assert tensorflow.verdict == "slower"
    assert len(tensorflow_gpu.entries) == 3 and not analysis.instability(tensorflow_gpu)
    assert close(analysis.gpu_speedup(tensorflow_gpu, rows), 10.0, 10.0, 10.0)
    # How the model table and the problem list say it.
    table = report_markdown.table_with(text, "runs", after="## Model `cnn`")
    assert [(line["row"], line["device"], line["runs"], line["rounds"]) for line in table if line["device"] == "gpu"] \
        == [("tensorflow", "gpu", "3 ok", "3"), ("torch", "gpu", "0 ok, 3 skipped", "0"), ("jax", "gpu", "2 ok, 1 failed", "2")]
    assert report_markdown.row_of(table, row="jax", device="cpu")["vs fastest [95%]"] == "fastest"
    assert report_markdown.row_of(table, row="tensorflow", device="gpu")["GPU speed-up [95%]"] == "10.0× [10.0–10.0]"
    problems = report_markdown.table_with(text, "reason", after="## Skipped and failed cells")
    assert {"cell": "torch gpu cnn round 1", "status": "skipped", "reason": "backend torch sees no CUDA GPU"} in problems
    assert {"cell": "jax gpu cnn round 2", "status": "failed", "reason": "out of memory"} in problems
    for name in set(report.PLOTS) - {"matmul_seconds.png", "batch_sweep.png", "step_costs.png"}:  # no benchmark, no sweep here
        assert (tmp_path / name).stat().st_size > 0 and f"]({name})" in text
    assert not (tmp_path / "matmul_seconds.png").exists() and not (tmp_path / "batch_sweep.png").exists()
    cell_lines = (tmp_path / "results.csv").read_text().splitlines()
    assert len(cell_lines) == 1 + len(entries) and cell_lines[0].startswith("round,order,repeat,seed,machine")
    row_lines = list(csv.DictReader(io.StringIO((tmp_path / "rows.csv").read_text())))
    assert len(row_lines) == 12
    jax_line = next(r for r in row_lines if (r["model"], r["backend"], r["device"]) == ("cnn", "jax", "cpu"))
    assert float(jax_line["steady_ci_low"]) < float(jax_line["steady_median"]) < float(jax_line["steady_ci_high"])


@pytest.mark.parametrize("statuses", list(itertools.product(["ok", "skipped", "failed"], repeat=3)))
def test_report_never_crashes_on_any_mix_of_ok_skipped_and_failed_cells(tmp_path, statuses):
    """One row per backend (the first sorted row included) in every combination of outcomes."""
    entries = [fake_entry(cell, status=status, reason=None if status == "ok" else f"{status} here")
               for cell, status in zip(cells(matrix_from({"matrix": {"models": ["ffn"]}}, {}, "t")), statuses)]
    results, rows, text = analysed(tmp_path, entries)  # builds
    assert statuses_of(results.cells) == [statuses.count(status) for status in ("ok", "skipped", "failed")]
    assert [(len(row.entries), len(row.others)) for row in rows] == [(s == "ok", s != "ok") for s in statuses]
    runs = [line["runs"] for line in report_markdown.table_with(text, "runs")]
    assert sum(cell.startswith("0 ok, 1 ") for cell in runs) == 3 - statuses.count("ok")


def test_report_is_rebuilt_from_the_records_alone(tmp_path):
    folder = write_results(tmp_path / "a", [fake_entry(cell) for cell in matrix_cells()])
    first = report.build([folder], folder).read_text()
    second = report.build([folder], folder).read_text()
    strip = lambda text: [line for line in text.splitlines() if "Report built" not in line]
    assert strip(first) == strip(second)


def test_results_from_two_machines_merge_into_one_report(tmp_path):
    laptop = write_results(tmp_path / "laptop", [fake_entry(c) for c in matrix_cells()])
    colab = write_results(tmp_path / "colab", [fake_entry(c, hostname="colab", steady=0.1)
                                               for c in matrix_cells(devices=("gpu",))])
    rows = load.group(load.gather([laptop, colab]).cells)
    assert {(row.machine, row.device) for row in rows} == {("Test CPU, 2 cores (laptop)", "cpu"),
                                                          ("Test CPU, 2 cores (colab)", "gpu")}
    text = report.build([laptop, colab], tmp_path / "merged").read_text()
    table = report_markdown.table_with(text, "runs", after="## Model `cnn`")  # a machine column, when merged
    assert {line["machine"] for line in table} == {"Test CPU, 2 cores (laptop)", "Test CPU, 2 cores (colab)"}


def test_corrupt_lines_and_other_schema_versions_are_ignored_and_listed(tmp_path):
    folder = write_results(tmp_path, [fake_entry(cell) for cell in matrix_cells()])
    path = folder / records.RESULTS_FILE
    old = fake_entry(matrix_cells()[0]).to_json() | {"schema_version": 0}
    path.write_text(path.read_text() + json.dumps(old) + "\n" + '{"schema_version": 1, "kind": "kerasm')
    results, _, text = analysed(folder)
    other_version, truncated = [line.split(f"{records.RESULTS_FILE}:")[1] for line in results.ignored]
    assert other_version.startswith(f"7: schema version 0 is not one this kerasmnist reads (1 to {records.SCHEMA_VERSION})")
    assert truncated == "8: not valid JSON (a truncated or corrupt line)"
    assert statuses_of(results.cells) == [6, 0, 0]
    assert "## Ignored lines" in text and all(line in text for line in results.ignored)


def test_report_of_a_folder_without_results(tmp_path):
    with pytest.raises(DataError, match="holds no results.jsonl"):
        report.build([tmp_path], tmp_path)


def test_runs_that_computed_different_things_get_rows_of_their_own(tmp_path):
    """Two commands with different epoch counts into one folder: two rows, never ranked against each other, and
    the section's header says what they share."""
    two = cells(matrix_from({"matrix": {"backends": ["jax"], "models": ["ffn"], "rounds": 1}, "run": {"epochs": 2}}, {}, "t"))
    three = cells(matrix_from({"matrix": {"backends": ["jax"], "models": ["ffn"], "rounds": 1}, "run": {"epochs": 3}}, {}, "t"))
    entries = [fake_entry(c, steady=1.0, invocation="first") for c in two] + \
              [fake_entry(c, steady=1.5, invocation="second") for c in three]
    _, rows, _ = analysed(tmp_path, entries, build=False)
    assert [(row.name, row.device, len(row.entries), row.steady) for row in rows] == [
        ("jax 2 epochs", "cpu", 1, [1.0]), ("jax 3 epochs", "cpu", 1, [1.5])]
    shared, differing = load.section_settings(rows)
    assert shared["batch_size"] == 128 and shared["hidden"] == (128,) and differing == ["epochs"]
    standings = analysis.standings(rows)  # different computations are never ranked
    assert all(standings[id(row)].fastest is row and standings[id(row)].versus_fastest is None for row in rows)
    assert [(found.label, found.contenders) for found in headline.headlines(rows)] == [
        ("ffn on cpu (2 epochs)", []), ("ffn on cpu (3 epochs)", [])]


def test_repeats_that_share_a_seed_are_flagged(tmp_path):
    entries = [fake_entry(cell) for cell in matrix_cells(repeats=2)]
    for entry in entries:
        entry.config["seed"] = 0  # as schema-1 files recorded them
    _, rows, _ = analysed(tmp_path, entries, build=False)
    assert [row.shared_seeds for row in rows] == [2] * 6
    assert markdown.accuracy_text(rows[0]) == "95.00% ± 0.00 (2 runs share a seed: spread understated)"


def test_a_row_is_flagged_unstable_when_its_epochs_or_the_machine_were_noisy(tmp_path):
    quiet = {"wall_seconds": 10.0, "logical_cores": 2, "own_cpu_seconds": 19.0, "other_cpu_seconds": 0.5,
             "steal_seconds": 0.1, "load_average_start": 2.0, "load_average_end": 2.1, "steady_epoch_cv": 0.02}
    noisy = quiet | {"steady_epoch_cv": 0.14, "other_cpu_seconds": 8.0}
    entries = [fake_entry(cell, contention=noisy if cell.config.backend == "torch" else quiet)
               for cell in matrix_cells()]
    _, rows, text = analysed(tmp_path, entries)
    assert {(row.model, row.backend): analysis.instability(row) for row in rows} == {
        (model, backend): ["epoch CV up to 14%", "other processes used up to 40% of the CPUs"] if backend == "torch"
        else [] for model in ("cnn", "ffn") for backend in ("tensorflow", "torch", "jax")}
    table = report_markdown.table_with(text, "stability")
    assert report_markdown.row_of(table, row="torch")["stability"] == \
        "unstable: epoch CV up to 14%; other processes used up to 40% of the CPUs"
    assert text.count("1 row is marked unstable") == 2  # a warning in each model's section


def test_a_row_at_two_speeds_is_flagged_with_each_speed_and_its_share(tmp_path):
    """TensorFlow's CNN epochs toggle between 1.3 s and 2.1 s within each run (6 fast, 3 slow of 9 steady
    epochs); torch and JAX run at one speed; the FFN runs have a single steady epoch each."""
    toggling = [2.5, 1.30, 1.31, 2.10, 2.12, 1.29, 1.30, 1.32, 2.11, 1.30]
    steady = [2.5] + [1.0 + 0.01 * (i % 3) for i in range(9)]
    entries = []
    for cell in matrix_cells(repeats=3):
        drift = 1 + 0.01 * cell.repeat
        if cell.config.model == "ffn":
            entries.append(fake_entry(cell))
        else:
            times = toggling if cell.config.backend == "tensorflow" else steady
            entries.append(fake_entry(cell, epoch_seconds=[t * drift for t in times]))
    _, rows, text = analysed(tmp_path, entries)
    cnn, ffn = load.model_sections(rows)
    found = {row.backend: analysis.row_speeds(row) for row in cnn}
    assert found["tensorflow"].several and not found["torch"].several and not found["jax"].several
    assert found["tensorflow"].text() == "steady epochs at two speeds: 1.31 s (67% of 27 epochs), 2.13 s (33%)"
    assert [analysis.fewest_steady_epochs(row) for row in cnn] == [None] * 3  # 9 steady epochs a run
    assert [analysis.fewest_steady_epochs(row) for row in ffn] == [1] * 3
    # The table shows the speeds in the row's steady cell, and the section lists the row; the method says which
    # figure the ratios use.
    assert markdown.steady_text(cnn[0]).startswith(f"**{found['tensorflow'].text()}**; each run's median")
    assert [line for line in markdown.several_speeds_lines(cnn) if line.startswith("- ")] == [
        f"- tensorflow on cpu: {found['tensorflow'].text()}."]
    assert "use each run's median steady epoch" in markdown.METHOD and markdown.METHOD in text
    speeds_column = {line["backend"] + " " + line["model"]: line["speeds"]
                     for line in csv.DictReader(io.StringIO((tmp_path / "rows.csv").read_text()))}
    assert speeds_column["tensorflow cnn"].startswith("steady epochs at two speeds") and not speeds_column["torch cnn"]
    assert f"at least {speeds.MIN_STEADY_EPOCHS + 1} epochs" in "".join(markdown.few_steady_epochs_lines(ffn))


def test_batch_size_sweep_says_where_doubling_stops_paying(tmp_path):
    matrix = matrix_from({"matrix": {"backends": ["jax"], "models": ["ffn"], "batch_sizes": [64, 128, 256, 512]}}, {}, "t")
    steady = {64: 1.0, 128: 0.5, 256: 0.45, 512: 0.44}
    _, rows, text = analysed(tmp_path, [fake_entry(cell, steady=steady[cell.config.batch_size]) for cell in cells(matrix)])
    [stop] = analysis.sweep_stops(rows)
    assert (stop.name, stop.device, stop.best_size) == ("jax", "cpu", 256)  # 512 gains 2%: not worth it
    assert [(size, round(rate)) for size, rate in stop.rates] == [(64, 1000), (128, 2000), (256, 2222), (512, 2273)]
    assert [row.name for row in rows] == ["jax batch 64", "jax batch 128", "jax batch 256", "jax batch 512"]
    assert [len(found.contenders) for found in headline.headlines(rows)] == [0] * 4  # each batch size its own
    assert (tmp_path / "batch_sweep.png").stat().st_size > 0 and "](batch_sweep.png)" in text


def test_the_cost_per_step_is_split_into_a_fixed_and_a_per_sample_part(tmp_path):
    matrix = matrix_from({"matrix": {"backends": ["torch"], "models": ["ffn"], "implementations": ["keras", "native"],
                                     "batch_sizes": [16, 64, 250, 1000], "repeats": 2}}, {}, "t")
    fixed = {"keras": 2e-3, "native": 0.5e-3}  # a step's own cost; 10 µs per sample for both
    noise = np.random.default_rng(1).normal(1.0, 0.02, size=len(cells(matrix)))  # 2% timing noise
    entries = []
    for cell in cells(matrix):
        batch = cell.config.batch_size
        steps = -(-1000 // batch)  # fake_entry's runs train on 1,000 images
        per_step = (fixed[cell.config.implementation] + 10e-6 * batch) * noise[cell.order]
        entries.append(fake_entry(cell, steady=per_step * steps))
    _, rows, text = analysed(tmp_path, entries)
    keras, native = [cost for cost in analysis.step_costs(rows) if cost.fit]
    assert (keras.name, keras.device, native.name) == ("torch", "cpu", "torch native")
    assert 2e-3 < keras.medians()[16] < 3e-3  # 2 ms fixed and 16 × 10 µs
    for fit, truth in ((keras.fit, 2000e-6), (native.fit, 500e-6)):
        assert fit.fits and fit.fixed_interval[0] <= truth <= fit.fixed_interval[1]
        assert fit.per_unit_interval[0] <= 10e-6 <= fit.per_unit_interval[1]
    assert (tmp_path / "step_costs.png").stat().st_size > 0 and "](step_costs.png)" in text


def test_keras_runs_are_set_against_the_native_loop_of_the_same_round(tmp_path):
    # A knob as a [[variants]] row: it runs beside its baseline and the native loop in every round.
    matrix = {"matrix": {"backends": ["torch"], "models": ["ffn"], "implementations": ["keras", "native"], "repeats": 4},
              "variants": [{"implementations": ["keras"], "jit_compile": "true"}]}
    steady = {("keras", "auto"): 4.0, ("native", "auto"): 1.0, ("keras", "true"): 2.0}
    accuracy = {("keras", "auto"): 0.95, ("native", "auto"): 0.96, ("keras", "true"): 0.955}
    drift = [1.0, 1.3, 0.8, 1.1]  # the machine slows and speeds up; each round's pair shares it
    entries = [fake_entry(cell, steady=steady[cell.config.implementation, cell.config.jit_compile] * drift[cell.repeat]
                          * (1.01 if cell.config.implementation == "keras" and cell.repeat % 2 else 1.0),
                          accuracy=accuracy[cell.config.implementation, cell.config.jit_compile])
               for cell in cells(matrix_from(matrix, {}, "t"))]
    _, rows, _ = analysed(tmp_path, entries, build=False)
    keras = row_named(rows, "torch")
    assert len(keras.entries) == 4 and (round(statistics.median(keras.steady), 2), round(min(keras.steady), 2),
                                        round(max(keras.steady), 2)) == (4.22, 3.20, 5.25)
    assert analysis.instability(keras) == ["repeats vary 20%"]
    pairs = analysis.keras_versus_native(rows)
    assert [(pair.keras.name, round(pair.keras.median("samples_per_second")), round(pair.native.median("samples_per_second")),
             round(pair.accuracy_points, 2), pair.throughput.rounds) for pair in pairs] == [
        ("torch", 238, 955, -1.0, 4), ("torch jit_compile=true", 475, 955, -0.5, 4)]
    assert close(pairs[0].throughput, 0.25, 0.25, 0.25)  # the drift cancels
    assert close(pairs[1].throughput, 0.50, 0.49, 0.50)
    [goal] = analysis.goal_verdicts(pairs)
    assert (goal.backend, goal.device, goal.picked_round, goal.chosen.keras.name) == (
        "torch", "cpu", "test #1", "torch jit_compile=true")
    assert close(goal.confirmation, 0.50, 0.49, 0.50) and goal.confirmation.rounds == 3
    assert goal.text.startswith("- torch on cpu: the fastest Keras setting in round `test #1` was *torch "
                                "jit_compile=true*; on the 3 other rounds it reaches 0.50× [0.49–0.50] the native "
                                "loop's throughput")
    assert goal.text.endswith("misses the goal of 0.9× (interval's lower bound) and 0.3 points.")


def test_an_undecided_goal_says_about_how_many_rounds_would_decide_it(tmp_path):
    matrix = {"matrix": {"backends": ["jax"], "models": ["ffn"], "implementations": ["keras", "native"], "repeats": 4}}
    wobble = [1.0, 1.06, 0.95, 1.03]  # Keras at about 0.88x of native, give or take a few percent per round
    entries = [fake_entry(cell, steady=(1 / 0.88) * wobble[cell.repeat] if cell.config.implementation == "keras" else 1.0)
               for cell in cells(matrix_from(matrix, {}, "t"))]
    _, rows, _ = analysed(tmp_path, entries, build=False)
    [goal] = analysis.goal_verdicts(analysis.keras_versus_native(rows))
    assert goal.picked_round is None and goal.confirmation.low < analysis.GOAL_RATIO < goal.confirmation.high
    assert re.search(r"reaches 0\.87× \[0\.8\d–0\.9\d\] the native loop's throughput, test accuracy \+0\.00 points: "
                     r"undecided: the interval straddles the goal of 0\.9× \(interval's lower bound\) and 0\.3 points; "
                     r"about \d+ more rounds? would likely decide it\.", goal.text)


def test_each_setting_is_set_against_the_same_row_without_it(tmp_path):
    matrix = {"matrix": {"backends": ["jax"], "models": ["cnn"], "repeats": 4},
              "variants": [{"xla_flags": "--xla_cpu_use_thunk_runtime=false"}, {"cpu_threads": 1},
                           {"xla_flags": "--xla_cpu_prefer_vector_width=512"}]}
    drift = [1.0, 1.3, 0.8, 1.1]
    wobble = [1.0, 1.02, 0.99, 1.01]  # a setting that changes nothing but noise

    def steady(config, repeat):
        if config.cpu_threads == 1:
            return 8.0 * drift[repeat]
        return {"": 4.0, "--xla_cpu_use_thunk_runtime=false": 2.0,
                "--xla_cpu_prefer_vector_width=512": 4.0 * wobble[repeat]}[config.xla_flags] * drift[repeat]

    entries = [fake_entry(cell, steady=steady(cell.config, cell.repeat)) for cell in cells(matrix_from(matrix, {}, "t"))]
    _, rows, _ = analysed(tmp_path, entries, build=False)
    effects = {(effect.row.name, effect.knob): effect for effect in analysis.knob_effects(rows)}
    assert sorted(effects) == [("jax 1 CPU threads, no XLA flags", "cpu_threads"),
                               ("jax default threads, XLA --xla_cpu_prefer_vector_width=512", "xla_flags"),
                               ("jax default threads, XLA --xla_cpu_use_thunk_runtime=false", "xla_flags")]
    assert all(effect.without.name == "jax default threads, no XLA flags" and effect.speedup.rounds == 4
               for effect in effects.values())
    thunk = effects["jax default threads, XLA --xla_cpu_use_thunk_runtime=false", "xla_flags"]
    threads = effects["jax 1 CPU threads, no XLA flags", "cpu_threads"]
    vector = effects["jax default threads, XLA --xla_cpu_prefer_vector_width=512", "xla_flags"]
    assert load.describe(thunk.knob, thunk.row.settings[thunk.knob]) == "XLA --xla_cpu_use_thunk_runtime=false"
    assert load.describe(threads.knob, threads.row.settings[threads.knob]) == "1 CPU threads"
    assert close(thunk.speedup, 2.00, 2.00, 2.00) and verdict(thunk.speedup, above="faster", below="slower") == "faster"
    assert close(threads.speedup, 0.50, 0.50, 0.50) and verdict(threads.speedup, above="faster", below="slower") == "slower"
    assert close(vector.speedup, 1.00, 0.97, 1.02)
    assert verdict(vector.speedup, above="faster", below="slower").startswith("tied within the noise (")


def test_gflops_are_set_against_the_matmul_peak_of_the_same_backend_and_device(tmp_path):
    entries = [fake_entry(cell) for cell in matrix_cells()]  # 0.6 GFLOP/s each
    peak = records.BenchEntry(
        benchmark="matmul", backend="jax", device="cpu", status="ok", reason=None, resolved_device="cpu",
        host=entries[0].host, invocation="test", started_at="2026-11-22T09:59:00+00:00",
        rows=[{"operation": "scalar multiply", "size": 0, "median_seconds": 1e-5, "gflops_per_second": None},
              {"operation": "matmul", "size": 4096, "median_seconds": 1.0, "gflops_per_second": 2.4}])
    folder = write_results(tmp_path, entries)
    write_lines(folder / records.BENCH_FILE, [peak])
    results, rows, text = analysed(folder)
    peaks = analysis.peak_rates(results.bench)
    jax, torch = row_named(rows, "jax", model="cnn"), row_named(rows, "torch", model="cnn")
    assert analysis.share_of_peak(jax, peaks) == [pytest.approx(0.25)]
    assert analysis.share_of_peak(torch, peaks) == []  # no peak measured for torch
    table = report_markdown.table_with(text, "GFLOP/s (of best GEMM)", after="## Model `cnn`")
    assert report_markdown.row_of(table, row="jax")["GFLOP/s (of best GEMM)"] == "0.6 (25%)"
    assert report_markdown.row_of(table, row="torch")["GFLOP/s (of best GEMM)"] == "0.6"
    other_command = analysis.peak_rates([dataclasses.replace(peak, invocation="an earlier command")])
    assert analysis.share_of_peak(jax, other_command) == []  # a peak from another run is not used
    assert markdown.gflops_text(jax, other_command) == "0.6"
    peak.rows[1]["gflops_per_second"] = 0.5
    assert markdown.gflops_text(jax, analysis.peak_rates([peak])) == \
        "0.6 (120%, above the GEMM rate: check the FLOP count)"


def test_profiled_runs_are_kept_apart_and_say_where_the_time_went(tmp_path):
    from kerasmnist.child.profiling import OWNERS

    profiled = cells(matrix_from({"matrix": {"backends": ["torch"], "models": ["ffn"], "rounds": 1}, "run": {"profile": True}}, {}, "t"))
    entries = [fake_entry(cell) for cell in matrix_cells()] + [fake_entry(cell) for cell in profiled]
    entries[-1] = with_figures(entries[-1], profile={
        "tool": "cProfile", "epochs": [2], "profiled_seconds": 4.0,
        "seconds_by_owner": dict(zip(OWNERS, [2.0, 1.0, 0.5, 0.5])),
        "top_functions": [{"function": "keras/src/layers/layer.py:872 __call__", "owner": "Keras (Python)",
                           "self_seconds": 0.5, "calls": 10}]})
    _, rows, text = analysed(tmp_path, entries)
    ffn = [row for row in rows if row.model == "ffn"]
    torch, torch_profiled = row_named(ffn, "torch"), row_named(ffn, "torch profiled")
    assert len(torch.entries) == len(torch_profiled.entries) == 1
    standings = analysis.standings(rows)
    assert id(torch_profiled) not in standings  # its times are inflated: never ranked
    [found] = headline.headlines(ffn)
    assert torch_profiled not in [found.fastest, *(c.row for c in found.contenders), *(row for row, _ in found.unranked)]
    assert found.fastest_text().endswith("ran fastest in a single round: no order is decided")
    assert markdown.versus_fastest_text(torch_profiled, standings) == "–"
    where = report_markdown.table_with(text, "profiled s")
    assert report_markdown.row_of(where, run="torch profiled") == {
        "run": "torch profiled", "device": "cpu", "profiled s": "4.00", **dict(zip(OWNERS, ["50%", "25%", "12%", "12%"])),
        "costliest functions (self s)": "`keras/src/layers/layer.py:872 __call__` 0.50"}


def test_a_schema_1_results_file_is_read_through_the_migration(tmp_path):
    """A copy of the full-MNIST results committed on 2026-11-22 (schema 1) still makes a report, each
    (command, repeat) standing for a round, and the repeats that shared a seed are flagged."""
    import shutil

    original = Path(__file__).parent / "fixtures" / "results" / "schema-1.jsonl"
    old_lines = [json.loads(line) for line in original.read_text().splitlines()]
    assert {entry["schema_version"] for entry in old_lines} == {1}
    shutil.copy(original, tmp_path / records.RESULTS_FILE)
    entries, ignored = records.read_results(tmp_path / records.RESULTS_FILE)
    assert not ignored and len(entries) == len(old_lines)
    assert all(e.schema_version == records.SCHEMA_VERSION and e.round.startswith("v1 kerasmnist compare")
               for e in entries)
    assert all(e.record.contention is None for e in entries if e.record)
    assert all(e.config["xla_flags"] == "" for e in entries)  # as a run of today without --xla-flags
    assert all(e.record.config == e.config for e in entries if e.record)
    results, rows, text = analysed(tmp_path)  # the report builds
    assert results.ignored == [] and any(row.shared_seeds for row in rows)
    assert "Ignored lines" not in text and "runs share a seed: spread understated" in text


def matmul_entry(rows, backend="jax"):
    return records.BenchEntry(
        benchmark="matmul", backend=backend, device="cpu", status="ok", reason=None, resolved_device="cpu",
        host={"cpu_model": "Test CPU", "logical_cores": 2, "hostname": "laptop"}, invocation="test",
        started_at="2026-11-22T09:59:00+00:00",
        rows=[{"operation": "scalar multiply", "size": 0, "median_seconds": 1e-5, "gflops_per_second": None}, *rows])


def test_a_matmul_report_with_every_size_refused_has_a_note_and_no_plot(tmp_path):
    """`bench matmul --sizes 100000` on a small machine: the size is refused, and the report still builds."""
    refused = {"operation": "matmul", "size": 100000,
               "error": "100000x100000 needs 111.8 GiB for two float32 operands and the product; the cpu has 7.0 GiB free"}
    tmp_path.mkdir(exist_ok=True)
    write_lines(tmp_path / records.BENCH_FILE, [matmul_entry([refused])])
    result = CliRunner().invoke(cli.cli, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "report.md").read_text()
    [jax] = report_markdown.table_with(text, "scalar multiply")
    assert (jax["backend"], jax["device"], jax["scalar multiply"]) == ("jax", "cpu", "10 µs")
    assert jax["100000×100000"] == f"not run: {refused['error']}"
    assert "No matrix size could be measured" in text and not (tmp_path / "matmul_seconds.png").exists()
    write_lines(tmp_path / records.BENCH_FILE, [matmul_entry([refused, {
        "operation": "matmul", "size": 1024, "median_seconds": 0.01, "gflops_per_second": 214.7}])])
    text = report.build([tmp_path], tmp_path).read_text()
    assert "No matrix size could be measured" not in text and (tmp_path / "matmul_seconds.png").stat().st_size > 0


def test_report_lists_the_lines_it_ignored_and_says_so_in_the_terminal(tmp_path):
    folder = write_results(tmp_path, [fake_entry(cell) for cell in matrix_cells()])
    path = folder / records.RESULTS_FILE
    malformed = {"kind": records.CELL_KIND, "schema_version": records.SCHEMA_VERSION}  # of the kind, but no fields
    path.write_text(path.read_text() + "not json\n" + json.dumps(malformed) + "\n")
    result = CliRunner().invoke(cli.cli, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    assert "2 unreadable results lines ignored (listed in the report, under Ignored lines)" in result.output
    assert result.output.splitlines()[-1] == f"full report: {folder / 'report.md'}"
    results, _, _ = analysed(folder, build=False)
    not_json, no_fields = [line.split(f"{records.RESULTS_FILE}:")[1] for line in results.ignored]
    assert not_json == "7: not valid JSON (a truncated or corrupt line)"
    assert no_fields.startswith("8: a kerasmnist.cell entry with a missing or malformed field (ValueError: ")
    assert statuses_of(results.cells) == [6, 0, 0]
    text = (folder / "report.md").read_text()
    assert "## Ignored lines" in text and all(line in text for line in results.ignored)


def test_a_ratio_decided_but_wider_than_the_target_is_said_to_stand(tmp_path):
    """With --target-ci: a 2x gap with a wide interval keeps its order; only the precision target was missed."""
    matrix = matrix_from({"matrix": {"backends": ["torch", "jax"], "models": ["ffn"], "repeats": 4}}, {}, "t")
    wobble = [1.0, 1.3, 0.85, 1.15]  # torch's own noise, not shared with jax: a wide interval around 2
    entries = [dataclasses.replace(fake_entry(cell, steady=2.0 * wobble[cell.repeat] if cell.config.backend == "torch"
                                              else 1.0), target_ci=0.05) for cell in cells(matrix)]
    _, rows, _ = analysed(tmp_path, entries, build=False)
    [(row, what, found)] = analysis.wide_ratios(rows, 0.05)
    assert (row.name, what) == ("torch", "vs fastest") and found.excludes(1.0) and 2.0 <= found.estimate < 3.0
    said = "\n".join(markdown.short_of_target(rows))
    assert ("The order stands; only the ±5% precision target (compare --target-ci) was missed: the interval excludes 1 "
            "but is wider than the target:") in said
    assert "- torch on cpu, vs fastest: 2." in said and "with the order undecided" not in said


def test_every_plot_draws_a_backend_in_one_colour():
    from kerasmnist.report.plots import BACKEND_COLOURS, line_styles

    styles = line_styles(["torch", "jax", "torch", "torch"])
    assert [colour for colour, _ in styles] == [BACKEND_COLOURS[b] for b in ("torch", "jax", "torch", "torch")]
    assert len({marker for colour, marker in styles if colour == BACKEND_COLOURS["torch"]}) == 3


def test_gflops_are_unknown_where_the_count_does_not_know_a_layer(tmp_path):
    plan = cells(matrix_from({"matrix": {"backends": ["jax"], "models": ["ffn"], "rounds": 1}}, {}, "t"))
    entry = fake_entry(plan[0])
    entry = with_figures(entry, training_flops_per_sample=None, achieved_gflops_per_second=None,
                         flops_unknown_layers=["Squash"])
    [row] = load.group([entry])
    assert markdown.gflops_text(row, {}) == "unknown (Squash)"  # a count that left a layer out would be wrong


def test_each_compare_says_what_share_of_its_wall_time_went_to_training_steps(tmp_path):
    plan = cells(matrix_from({"matrix": {"backends": ["jax", "torch"], "models": ["ffn"], "rounds": 1}}, {}, "t"))
    phases = records.Phases({"process start and imports": 1.0, "first epoch (tracing, compiling)": 2.0,
                             "steady epochs": 5.0, "evaluation": 2.0})
    entries = [dataclasses.replace(fake_entry(cell), wall_seconds=10.0, phases=phases) for cell in plan]
    _, _, text = analysed(tmp_path, entries)
    [split] = report_markdown.table_with(text, "training steps", after="## Where each compare's time went")
    assert split == {"compare": "test", "cells": "2", "cells' wall time": "20 s", "training steps": "70%",  # (2 + 5) / 10
                     **dict(zip(phases, ["10%", "20%", "50%", "20%"]))}

USER_MODEL = f"{Path(__file__).parent / 'fixtures' / 'user' / 'models.py'}:build_bn_convnet"


def test_a_pipe_in_a_model_argument_or_a_reason_stays_in_its_table_cell(tmp_path):
    """`--model-arg activation=relu|gelu` names the model's section, headline lines included; a failed cell's
    reason may hold a `|` too. Every table cell escapes it: each line of every table has its header's cells."""
    plan = cells(matrix_from({"matrix": {"backends": ["torch", "jax"], "models": [USER_MODEL], "rounds": 2},
                              "run": {"model_args": {"activation": "relu|gelu"}}}, {}, "t"))
    entries = [fake_entry(cell, steady={"torch": 2.0, "jax": 1.0}[cell.config.backend] * (1 + 0.01 * cell.order))
               for cell in plan[:-1]]
    entries.append(fake_entry(plan[-1], status="failed", reason="ValueError: expected relu|gelu|tanh"))
    text = report.build([write_results(tmp_path, entries)], tmp_path).read_text()
    found = report_markdown.tables(text)  # fails on a line whose cells a `|` split
    headline_table = report_markdown.table_with(text, "model and device")
    assert headline_table[0]["model and device"] == "build_bn_convnet(activation='relu|gelu') on cpu"
    assert "build_bn_convnet(activation='relu\\|gelu') on cpu" in text  # escaped, as GitHub's tables need it
    problems = report_markdown.table_with(text, "reason")
    assert [line["reason"] for line in problems] == ["ValueError: expected relu|gelu|tanh"]
    assert len(found) >= 4


def test_a_quick_like_report_prints_no_matplotlib_warning(tmp_path, capfd):
    """quick's runs hold out no validation split, so there are no learning curves: no empty plot, and no
    "No artists with labels found to put in legend" in the user's terminal."""
    import warnings

    matrix = matrix_from({"matrix": {"backends": ["tensorflow", "torch", "jax"], "models": ["cnn"], "rounds": 3,
                                     "peak_matmul_size": 0},
                          "run": {"epochs": 8, "limit_train": 1024, "validation_size": 0, "limit_test": 1000}}, {}, "t")
    entries = []
    for cell in cells(matrix):
        steady = {"tensorflow": 1.0, "torch": 1.3, "jax": 2.4}[cell.config.backend] * (1 + 0.02 * cell.repeat)
        entry = fake_entry(cell, epoch_seconds=[steady * 3] + [steady * (1 + 0.01 * i) for i in range(7)])
        entries.append(with_figures(entry, history={"accuracy": [0.9] * 8, "loss": [0.3] * 8}))  # no val_accuracy
    folder = write_results(tmp_path, entries)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text = report.build([folder], folder).read_text()
    assert [str(warning.message) for warning in caught] == []
    assert "No artists" not in capfd.readouterr().err
    assert not (tmp_path / "learning_curves.png").exists() and "learning_curves.png" not in text
    assert (tmp_path / "relative_throughput.png").stat().st_size > 0


def test_merging_several_folders_needs_out_and_never_replaces_the_first_folders_report(tmp_path):
    """`kerasmnist report A B` would have written the merged report into A, over A's own."""
    laptop = write_results(tmp_path / "laptop", [fake_entry(cell) for cell in matrix_cells()])
    colab = write_results(tmp_path / "colab", [fake_entry(cell, hostname="colab") for cell in matrix_cells()])
    result = CliRunner().invoke(cli.cli, ["report", str(laptop), str(colab)])
    assert result.exit_code == 2 and not (laptop / "report.md").exists()
    assert result.stderr.splitlines() == [
        f"kerasmnist: error: merging 2 results folders needs --out DIR for the merged report (without it, it would "
        f"replace {laptop}'s own report)"]
    merged = tmp_path / "merged"
    result = CliRunner().invoke(cli.cli, ["report", str(laptop), str(colab), "--out", str(merged)])
    assert result.exit_code == 0 and (merged / "report.md").is_file() and not (laptop / "report.md").exists()
    result = CliRunner().invoke(cli.cli, ["report", str(laptop)])  # one folder: its report goes into it
    assert result.exit_code == 0 and (laptop / "report.md").is_file()


def test_bench_matmul_writes_where_compare_does_not_into_a_checkouts_reports(tmp_path, monkeypatch):
    from kerasmnist.launch import bench

    ran = {}
    monkeypatch.setattr(bench, "run_bench", lambda backends, devices, sizes, repeats, out, command, **_: ran.update(
        out=out))
    monkeypatch.setattr(report, "write", lambda folders, out: ran.update(report=out) or report.Built(out, [], [], {}))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli.cli, ["bench", "matmul", "--backends", "jax", "--devices", "cpu"])
    assert result.exit_code == 0, result.output
    assert ran == {"out": cli.RESULTS_ROOT / "matmul", "report": cli.RESULTS_ROOT / "matmul"}
    assert str(cli.RESULTS_ROOT) == "kerasmnist-results"


# A user's model files as users write them: each exposes `build`, never imported here (the report and the launch
# side name them by path and source hash alone).
BUILD = "def build(input_shape, num_classes, width=32):\n    raise NotImplementedError  # {}\n"


def model_files(folder, *names):
    """`folder/NAME.py` for each name (a path with folders makes them), each defining `build`; their references."""
    references = []
    for name in names:
        path = folder / f"{name}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(BUILD.format(name))
        references.append(f"{path}:build")
    return references


def user_cells(models, rounds=2, model_args=None, invocation="test", devices=("cpu",)):
    """A plan of torch and JAX cells of the user's `models`, each with its model's file and hash as the launch
    side finds them."""
    plan = cells(matrix_from({"matrix": {"backends": ["torch", "jax"], "models": list(models), "rounds": rounds,
                                         "devices": list(devices)},
                              "run": {"model_args": model_args or {}}}, {}, "t"))
    return [(cell, cell.model_code.to_json()) for cell in plan]


def timed_user_entries(models, **options):
    return [fake_entry(cell, steady={"torch": 2.0, "jax": 1.0}[cell.config.backend] * (1 + 0.01 * cell.order),
                       model_code=code, invocation=options.get("invocation", "test"))
            for cell, code in user_cells(models, **options)]


def section_titles(text):
    return re.findall(r"^## Model `(.*)`$", text, re.MULTILINE)


def test_two_files_with_the_same_function_name_get_two_titles_headline_labels_and_plot_labels(tmp_path):
    """Two model files that each expose `build`: each section title, headline label and plot label names its file,
    as little of its path as tells them apart; a model alone in its name is `build()`."""
    mixer, fnet = model_files(tmp_path / "models", "mixer", "fnet")
    results, rows, text = analysed(tmp_path / "results", timed_user_entries([mixer, fnet]))
    assert sorted(section_titles(text)) == ["fnet.py:build()", "mixer.py:build()"]
    assert sorted(h.label for h in headline.headlines(rows)) == ["fnet.py:build() on cpu", "mixer.py:build() on cpu"]
    headline_table = report_markdown.table_with(text, "model and device")
    assert sorted(line["model and device"] for line in headline_table if line["model and device"]) == [
        "fnet.py:build() on cpu", "mixer.py:build() on cpu"]
    from kerasmnist.report import plots

    assert sorted(label for label, _, _ in plots.headline_bars(headline.headlines(rows))["cpu"]) == [
        "fnet.py:build(): jax", "fnet.py:build(): torch", "mixer.py:build(): jax", "mixer.py:build(): torch"]
    for name in ("mixer", "fnet"):  # each section says which file, with its hash and parameters
        path = tmp_path / "models" / f"{name}.py"
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert f"`{path}`, source SHA-256 {digest[:12]}, 1,000 parameters." in text
    # Alone, a model is its function; two files of one name in two folders need a folder each.
    [alone] = load.model_sections(load.group(timed_user_entries([mixer])))
    assert alone[0].model_title == "build()"
    first, second = model_files(tmp_path, "a/models", "b/models")
    titles = {section[0].model_title for section in load.model_sections(load.group(timed_user_entries([first, second])))}
    assert titles == {"a/models.py:build()", "b/models.py:build()"}


def test_the_same_function_with_two_argument_sets_is_told_apart_by_its_arguments(tmp_path):
    """One file's `build` with width 32 and 64, and another file's `build` with width 32: the arguments tell
    the first two apart, the files the two of width 32 (and every title of a shared function name names its file)."""
    mixer, fnet = model_files(tmp_path / "models", "mixer", "fnet")
    entries = (timed_user_entries([mixer, fnet], model_args={"width": 32})
               + timed_user_entries([mixer], model_args={"width": 64}, invocation="second"))
    rows = load.group(entries)
    assert sorted(section[0].model_title for section in load.model_sections(rows)) == [
        "fnet.py:build(width=32)", "mixer.py:build(width=32)", "mixer.py:build(width=64)"]
    assert len({h.label for h in headline.headlines(rows)}) == 3
    alone = load.group(timed_user_entries([mixer], model_args={"width": 32})
                       + timed_user_entries([mixer], model_args={"width": 64}, invocation="second"))
    assert sorted(section[0].model_title for section in load.model_sections(alone)) == [
        "build(width=32)", "build(width=64)"]


def test_a_section_whose_every_cell_failed_names_its_file_and_hash_as_a_finished_one_does(tmp_path):
    """Every cell of one model failed (its records say nothing of it): its section has the identity line the
    launch side could give, its file and source hash, no parameter count; its headline says every cell failed,
    and why. A failed cell of an edited file is not pooled with the old file's row."""
    mixer, fnet = model_files(tmp_path / "models", "mixer", "fnet")
    why = "training failed: too many values to unpack (expected 2)"
    entries = [fake_entry(cell, status="failed", reason=why, model_code=code) for cell, code in user_cells([mixer])]
    entries += timed_user_entries([fnet])
    results, rows, text = analysed(tmp_path / "results", entries)
    digest = entries[0].model_code.source_sha256
    section = text[text.index("## Model `mixer.py:build()`"):]
    assert section.split("\n")[2] == f"`{tmp_path / 'models' / 'mixer.py'}`, source SHA-256 {digest[:12]}."
    [failed] = [h for h in headline.headlines(rows) if h.section == "mixer.py:build()"]
    assert failed.fastest_text() == f"no fastest: every cell failed: {why}"
    assert f"mixer.py:build() on cpu: no fastest: every cell failed: {why}" in headline.render_text(
        headline.headlines(rows))
    assert "2 or more epochs" not in text

    # mixer.py edited after its finished rounds: its failed cells are the new file's, a section of their own.
    finished = timed_user_entries([mixer])
    Path(mixer.rpartition(":")[0]).write_text(BUILD.format("edited"))
    edited = [fake_entry(cell, status="failed", reason=why, model_code=code)
              for cell, code in user_cells([mixer], invocation="second")]
    sections = load.model_sections(load.group(finished + edited))
    assert sorted((sum(len(row.entries) for row in section), sum(len(row.others) for row in section))
                  for section in sections) == [(0, 4), (4, 0)]
    assert {section[0].model_title for section in sections} == {
        f"build() (source {finished[0].model_code.source_sha256[:12]})",
        f"build() (source {edited[0].model_code.source_sha256[:12]})"}


def test_the_failed_cells_table_names_a_cells_round(tmp_path):
    entries = [fake_entry(cell, status="failed", reason="crashed") if cell.config.backend == "torch" else fake_entry(cell)
               for cell in cells(matrix_from({"matrix": {"backends": ["torch", "jax"], "models": ["ffn"],
                                                         "rounds": 2}}, {}, "t"))]
    _, _, text = analysed(tmp_path, entries)
    problems = report_markdown.table_with(text, "reason", after="## Skipped and failed cells")
    assert [line["cell"] for line in problems] == ["torch cpu ffn round 1", "torch cpu ffn round 2"]


@pytest.mark.parametrize("launch_hashed", [True, False], ids=["hashed-before-running", "older-entries"])
def test_a_user_models_skipped_gpu_cells_stay_in_its_section(tmp_path, launch_hashed):
    """No GPU here: the GPU cells of a user's model are skipped, and their rows are in the model's one section,
    whether the launch side hashed the file (entries now) or not (older entries: the one source its finished
    cells ran)."""
    [mixer] = model_files(tmp_path, "mixer")
    entries = [fake_entry(cell, status="skipped", reason="no GPU", model_code=code if launch_hashed else None)
               if cell.config.device == "gpu" else fake_entry(cell, model_code=code)
               for cell, code in user_cells([mixer], devices=("cpu", "gpu"))]
    [section] = load.model_sections(load.group(entries))
    assert sorted((row.device, row.backend) for row in section) == [
        ("cpu", "jax"), ("cpu", "torch"), ("gpu", "jax"), ("gpu", "torch")]
    assert section[0].model_title == "build()"
