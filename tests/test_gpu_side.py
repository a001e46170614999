"""Device inventory, the matmul benchmark, mixed precision and data-parallel training, on the CPU."""

import json

import pytest
from click.testing import CliRunner

from conftest import QUICK_ARGS, error_line, run_cli
from kerasmnist.cli import cli
from kerasmnist.launch import bench
from kerasmnist import records, report
from kerasmnist.launch.inventory import render


@pytest.mark.slow
def test_env_reports_every_backend_and_what_would_run(tmp_path):
    result = run_cli("env", "--json")
    assert result.returncode == 0, result.stderr
    inventory = json.loads(result.stdout)
    assert set(inventory["backends"]) == {"tensorflow", "torch", "jax"}
    for name, facts in inventory["backends"].items():
        assert facts["installed"] and facts["version"] and facts["cpu"] == "yes"
        assert facts["gpu"].startswith(f"no: backend {name} sees no")
        assert facts["devices"]
    # Pinned before JAX is imported, as a run is: JAX's own error, where it used to say "its devices are [CpuDevice]".
    assert inventory["backends"]["jax"]["gpu"].startswith(
        "no: backend jax sees no GPU (JAX_PLATFORMS=cuda failed to initialise: AssertionError at _src/xla_bridge.py:")
    text = render(inventory)
    assert "--device gpu: no: backend torch sees no CUDA GPU" in text


# The trainings below are shared runs (conftest.SHARED_RUNS), each carrying the settings of several tests.

@pytest.mark.slow
def test_run_record_holds_the_backends_device_facts(trained):
    record = trained("torch-ffn").record
    facts = record.environment["backend"]
    assert facts["version"].startswith("2.") and "cpu" in facts["devices"]
    assert record.device_count == 1


@pytest.mark.slow
def test_matmul_bench_measures_cpus_skips_missing_gpus_and_reports(tmp_path):
    sizes = (1, 64, 256, 10_000_000)  # the last needs far more memory than any machine has
    entries = bench.run_bench(("tensorflow", "torch", "jax"), ("cpu", "gpu"), sizes, 3, tmp_path, "cmd",
                              echo=lambda line: None)
    by_cell = {(e.backend, e.device): e for e in entries}
    for name in ("tensorflow", "torch", "jax"):
        assert by_cell[(name, "gpu")].status == "skipped"
        cpu = by_cell[(name, "cpu")]
        assert cpu.status == "ok" and cpu.resolved_device == "cpu"
        rows = {row["size"]: row for row in cpu.rows if row["operation"] == "matmul"}
        assert rows[256]["median_seconds"] > 0 and rows[256]["gflops_per_second"] > 0
        assert rows[10_000_000]["error"].startswith("10000000x10000000 needs")
        assert any(row["operation"] == "scalar multiply" for row in cpu.rows)
    assert len(records.read_results(tmp_path / records.BENCH_FILE, records.BENCH_KIND)[0]) == 6
    text = report.build([tmp_path], tmp_path).read_text()
    assert "## Matrix multiply" in text and "![Matrix multiply time by size](matmul_seconds.png)" in text
    assert "| matmul torch gpu | skipped | backend torch sees no CUDA GPU" in text


def test_crossover_is_where_the_gpu_wins_from_then_on():
    def rows(times):
        return [{"operation": "matmul", "size": size, "median_seconds": t} for size, t in times.items()]

    cpu = rows({1: 1e-6, 128: 1e-4, 1024: 0.02, 4096: 1.0})
    gpu = rows({1: 2e-5, 128: 5e-5, 1024: 0.03, 4096: 0.01})
    assert bench.crossover(cpu, gpu) == 4096
    assert bench.crossover(cpu, rows({1: 1.0, 128: 1.0, 1024: 1.0, 4096: 2.0})) is None


@pytest.mark.slow
@pytest.mark.parametrize("backend, name", [("tensorflow", "tensorflow-ffn"), ("torch", "torch-ffn-device"),
                                           ("jax", "jax-ffn-tf.data")])
def test_mixed_bfloat16_trains_and_is_recorded(trained, backend, name):
    record = trained(name).record
    assert (record.backend, record.model) == (backend, "ffn")
    assert record.config["precision"] == "mixed_bfloat16"
    assert record.test_accuracy >= 0.85


@pytest.mark.slow
@pytest.mark.parametrize("backend, name", [("tensorflow", "tensorflow-ffn"), ("jax", "jax-ffn-tf.data")])
def test_data_parallel_over_virtual_cpu_devices(trained, backend, name):
    record = trained(name).record
    assert (record.backend, record.model) == (backend, "ffn")
    assert record.device_count == 2 and record.resolved_device == "cpu"
    assert record.test_accuracy >= 0.85


@pytest.mark.slow
@pytest.mark.parametrize("args, code, message", [
    (["--backend", "jax", "--data-parallel", "--cpu-devices", "2", "--batch-size", "65"], 2,
     "--batch-size 65 does not split evenly over 2 devices"),
])
def test_bad_gpu_side_options(tmp_path, args, code, message):
    """Found once the backend is pinned with its CPU split in two: in a process of its own."""
    result = run_cli("train", *QUICK_ARGS, *args, "--out", str(tmp_path))
    assert result.returncode == code
    assert message in error_line(result.stderr)
    assert not list(tmp_path.glob("*.json"))


@pytest.mark.parametrize("args, code, message", [
    (["--backend", "jax", "--data-parallel"], 2, "--data-parallel needs 2 or more cpu devices but jax sees 1"),
    (["--backend", "torch", "--data-parallel"], 2, "--data-parallel is not supported by the torch backend"),
    (["--backend", "jax", "--device", "gpu", "--cpu-devices", "2"], 2, "--cpu-devices can only split the CPU"),
    (["--backend", "jax", "--precision", "float64"], 2, "--precision must be one of float32, mixed_float16"),
])
def test_bad_gpu_side_options_in_this_process(tmp_path, args, code, message, keras_jax):
    """Refused by the configuration's checks before any framework is imported, or once the backend is pinned under
    JAX on one CPU device, as this process is (keras_jax): in this process."""
    result = CliRunner().invoke(cli, ["train", *QUICK_ARGS, *args, "--out", str(tmp_path)])
    assert result.exit_code == code
    assert message in error_line(result.stderr)
    assert not list(tmp_path.glob("*.json"))


@pytest.mark.slow
def test_float16_on_a_cpu_runs_with_a_note(trained):
    shared = trained("torch-ffn")
    assert "kerasmnist: note: float16 on a CPU is emulated" in shared.result.stderr
    assert shared.record.config["precision"] == "mixed_float16"


# A user's model and data data-parallel: test_user_models's compare runs them so under tensorflow and jax.
