import json

import pytest

from conftest import fake_entry
from kerasmnist import records, report
from kerasmnist.errors import DataError
from kerasmnist.matrix import cells, matrix_from


def write_results(folder, entries):
    folder.mkdir(parents=True, exist_ok=True)
    records.write_results(folder / records.RESULTS_FILE, entries)
    return folder


def matrix_cells(devices=("cpu",), repeats=1):
    return cells(matrix_from({"matrix": {"devices": list(devices), "repeats": repeats}}, {}, "t"))


def test_report_has_tables_plots_csv_and_problem_cells(tmp_path):
    entries = []
    for cell in matrix_cells(devices=("cpu", "gpu"), repeats=2):
        speed = {"tensorflow": 2.0, "torch": 3.0, "jax": 1.0}[cell.config.backend]
        if cell.config.device == "gpu" and cell.config.backend == "torch":
            entries.append(fake_entry(cell, status="skipped", reason="backend torch sees no CUDA GPU"))
        elif cell.config.device == "gpu" and cell.config.backend == "jax" and cell.repeat == 1:
            entries.append(fake_entry(cell, status="failed", reason="out of memory"))
        else:
            entries.append(fake_entry(cell, steady=speed / (10 if cell.config.device == "gpu" else 1)))
    path = report.build([write_results(tmp_path, entries)], tmp_path)
    text = path.read_text()
    assert "| jax | cpu | 2 ok | 1.00 (1.00–1.00) | 2.00 (2.00–2.00) | 1,000 | 0.6 | 95.00% ± 0.00 " \
           "| 98%: 3.0 (3.0–3.0) s | 1.00× | – |" in text
    assert "| tensorflow | gpu | 2 ok | 0.20 (0.20–0.20) | 0.40 (0.40–0.40) | 5,000 | 3.0 | 95.00% ± 0.00 " \
           "| 98%: 0.6 (0.6–0.6) s | 2.00× | 10.0× |" in text
    assert "| torch | gpu | 0 ok, 2 skipped | – | – | – | – | – | – | – | – |" in text
    assert "| jax | gpu | 1 ok, 1 failed | 0.10 | 0.20 | 10,000 | 6.0 | 95.00% | 98%: 0.3 s | 1.00× | 10.0× |" in text
    assert "- Fastest on cpu (Test CPU, 2 cores (laptop)): **jax**; tensorflow 2.00× slower, torch 3.00× slower." in text
    assert "| torch gpu cnn repeat 1 | skipped | backend torch sees no CUDA GPU |" in text
    assert "| jax gpu cnn repeat 2 | failed | out of memory |" in text
    assert "24 cells: 18 ok, 4 skipped, 2 failed" in text
    for name in set(report.PLOTS) - {"matmul_seconds.png", "batch_sweep.png"}:  # no benchmark, no sweep here
        assert (tmp_path / name).stat().st_size > 0 and f"]({name})" in text
    assert not (tmp_path / "matmul_seconds.png").exists() and not (tmp_path / "batch_sweep.png").exists()
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + len(entries) and rows[0].startswith("order,repeat,machine,backend")


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
    text = report.build([laptop, colab], tmp_path / "merged").read_text()
    assert "| machine | backend | device |" in text
    assert "(laptop)" in text and "(colab)" in text


def test_corrupt_lines_and_other_schema_versions_are_ignored_and_listed(tmp_path):
    folder = write_results(tmp_path, [fake_entry(cell) for cell in matrix_cells()])
    path = folder / records.RESULTS_FILE
    old = fake_entry(matrix_cells()[0]) | {"schema_version": 0}
    path.write_text(path.read_text() + json.dumps(old) + "\n" + '{"schema_version": 1, "kind": "kerasm')
    text = report.build([folder], folder).read_text()
    assert "results.jsonl:7: schema version 0 is not the supported version 1" in text
    assert "results.jsonl:8: not valid JSON (a truncated or corrupt line)" in text
    assert "6 cells: 6 ok" in text


def test_report_of_a_folder_without_results(tmp_path):
    with pytest.raises(DataError, match="holds no results.jsonl"):
        report.build([tmp_path], tmp_path)


def test_rows_keep_variants_apart(tmp_path):
    from kerasmnist.report import variant_of

    assert variant_of({"precision": "float32", "device": "cpu"}) == ""
    assert variant_of({"implementation": "native", "device": "cpu"}) == "native"
    assert variant_of({"precision": "mixed_float16", "data_parallel": True, "device": "gpu",
                       "steps_per_execution": 4}) == "mixed_float16, steps_per_execution=4, data-parallel"


def test_batch_size_sweep_says_where_doubling_stops_paying(tmp_path):
    matrix = matrix_from({"matrix": {"backends": ["jax"], "models": ["ffn"], "batch_sizes": [64, 128, 256, 512]}}, {}, "t")
    steady = {64: 1.0, 128: 0.5, 256: 0.45, 512: 0.44}
    entries = [fake_entry(cell, steady=steady[cell.config.batch_size]) for cell in cells(matrix)]
    text = report.build([write_results(tmp_path, entries)], tmp_path).read_text()
    assert ("- jax on cpu: throughput grows at least 10% per step up to batch 256; "
            "64: 1,000/s, 128: 2,000/s, 256: 2,222/s, 512: 2,273/s.") in text
    assert "| jax batch 64 | cpu |" in text and (tmp_path / "batch_sweep.png").stat().st_size > 0


def test_keras_runs_are_set_against_the_native_loop_with_the_same_batch(tmp_path):
    plain = cells(matrix_from({"matrix": {"backends": ["torch"], "models": ["ffn"],
                                          "implementations": ["keras", "native"]}}, {}, "t"))
    tuned = cells(matrix_from({"matrix": {"backends": ["torch"], "models": ["ffn"]},
                               "overrides": [{"jit_compile": "true"}]}, {}, "t"))
    steady = {("keras", "auto"): 4.0, ("native", "auto"): 1.0, ("keras", "true"): 2.0}
    accuracy = {("keras", "auto"): 0.95, ("native", "auto"): 0.96, ("keras", "true"): 0.955}
    entries = [fake_entry(cell, steady=steady[cell.config.implementation, cell.config.jit_compile],
                          accuracy=accuracy[cell.config.implementation, cell.config.jit_compile])
               for cell in plain + tuned]
    text = report.build([write_results(tmp_path, entries)], tmp_path).read_text()
    assert "| torch | cpu | 250 | 1,000 | 0.25× | -1.00 points |" in text
    assert "| torch jit_compile=true | cpu | 500 | 1,000 | 0.50× | -0.50 points |" in text
    assert ("- torch on cpu: the fastest Keras run (jit_compile=true) reaches 0.50× the native loop's throughput, "
            "test accuracy -0.50 points: misses the goal of 0.9× and 0.3 points.") in text


def test_gflops_are_set_against_the_matmul_peak_of_the_same_backend_and_device(tmp_path):
    from kerasmnist import bench

    entries = [fake_entry(cell) for cell in matrix_cells()]  # 0.6 GFLOP/s each
    host = entries[0]["host"]
    peak = {"schema_version": records.SCHEMA_VERSION, "kind": bench.BENCH_KIND, "benchmark": "matmul",
            "backend": "jax", "device": "cpu", "status": "ok", "reason": None, "resolved_device": "cpu", "host": host,
            "rows": [{"operation": "scalar multiply", "size": 0, "median_seconds": 1e-5, "gflops_per_second": None},
                     {"operation": "matmul", "size": 4096, "median_seconds": 1.0, "gflops_per_second": 2.4}]}
    folder = write_results(tmp_path, entries)
    records.write_results(folder / bench.BENCH_FILE, [peak])
    text = report.build([folder], folder).read_text()
    assert "| jax | cpu | 1 ok | 1.00 | 2.00 | 1,000 | 0.6 (25%) |" in text
    assert "| torch | cpu | 1 ok | 1.00 | 2.00 | 1,000 | 0.6 |" in text  # no peak measured for torch


def test_profiled_runs_are_kept_apart_and_say_where_the_time_went(tmp_path):
    from kerasmnist.profiling import OWNERS

    profiled = cells(matrix_from({"matrix": {"backends": ["torch"], "models": ["ffn"]}, "run": {"profile": True}}, {}, "t"))
    entries = [fake_entry(cell) for cell in matrix_cells()] + [fake_entry(cell) for cell in profiled]
    entries[-1]["record"]["profile"] = {
        "tool": "cProfile", "epochs": [2], "profiled_seconds": 4.0,
        "seconds_by_owner": dict(zip(OWNERS, [2.0, 1.0, 0.5, 0.5])),
        "top_functions": [{"function": "keras/src/layers/layer.py:872 __call__", "owner": "Keras (Python)",
                           "self_seconds": 0.5, "calls": 10}]}
    text = report.build([write_results(tmp_path, entries)], tmp_path).read_text()
    assert "| torch profiled | cpu | 4.00 | 50% | 25% | 12% | 12% | `keras/src/layers/layer.py:872 __call__` 0.50 |" in text
    assert "| torch | cpu | 1 ok |" in text and "| torch profiled | cpu | 1 ok |" in text
    assert "torch profiled | cpu | 1 ok | 1.00 | 2.00 | 1,000 | 0.6 | 95.00% | 98%: 3.0 s | – |" in text
    assert "Fastest on cpu" in text and "torch profiled 1.00× slower" not in text  # its times are inflated
