"""Shared test helpers.

Training tests run `python -m kerasmnist` in subprocesses: Keras fixes its backend at import, so
one pytest process cannot train under all three. In-process tests that need Keras use the
`keras_jax` fixture, which pins this pytest process to JAX on the CPU once.

Most training tests share their runs: `trained(NAME)` runs one of SHARED_RUNS once per session, on first
use, and every test that asks for it after that gets the same run. A shared run carries every setting
whose effect one test or another asserts, where one run can carry them together.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

from kerasmnist import pinning, records
from kerasmnist.child import backend

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "mnist-small"
# Quick, real training on the fixture: 4,000 training images, 1,000 for validation.
QUICK_ARGS = ["--data-dir", str(FIXTURE_DIR), "--validation-size", "1000", "--epochs", "3",
              "--batch-size", "64", "--progress", "none"]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Runs `kerasmnist ARGS` in a fresh process with an unpinned environment."""
    child_env = pinning.child_environment()
    child_env.pop("KERASMNIST_DATA_DIR", None)
    child_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "kerasmnist", *args], capture_output=True, text=True,
                          env=child_env, timeout=timeout)


# The runs the slow tests share, each `kerasmnist train` with QUICK_ARGS and these flags, and which tests read each
# (tests/test_*.py). The six backend-model runs are the complete-record test's; the other settings ride on them
# where a run can carry them, so that one process answers several tests.
SHARED_RUNS: dict[str, tuple[str, ...]] = {
    # test_train: complete record, the repeated tf.data pipeline (one iterator for the whole fit).
    "tensorflow-cnn": ("--backend", "tensorflow", "--model", "cnn", "--input-pipeline", "tf.data-repeat"),
    "jax-cnn": ("--backend", "jax", "--model", "cnn"),
    # test_train: complete record, channels_first.
    "torch-cnn": ("--backend", "torch", "--model", "cnn", "--data-format", "channels_first"),
    # test_train: complete record, input pipeline, fit told the steps per epoch (the fixture's 4,000 images at
    # batch 64 end in a partial batch of 32); test_gpu_side: bfloat16, data-parallel.
    "tensorflow-ffn": ("--backend", "tensorflow", "--model", "ffn", "--input-pipeline", "tf.data",
                       "--fit-steps-per-epoch", "--precision", "mixed_bfloat16",
                       "--data-parallel", "--cpu-devices", "2"),
    # test_train: complete record, input pipeline; test_gpu_side: the backend's device facts, float16 on a CPU.
    "torch-ffn": ("--backend", "torch", "--model", "ffn", "--input-pipeline", "torch.utils.data",
                  "--precision", "mixed_float16"),
    # test_train: complete record, the same seed twice (with jax-ffn-again); test_profiling: unprofiled.
    "jax-ffn": ("--backend", "jax", "--model", "ffn"),
    "jax-ffn-again": ("--backend", "jax", "--model", "ffn"),
    # test_train: input pipeline; test_gpu_side: bfloat16, data-parallel.
    "jax-ffn-tf.data": ("--backend", "jax", "--model", "ffn", "--input-pipeline", "tf.data",
                        "--precision", "mixed_bfloat16", "--data-parallel", "--cpu-devices", "2"),
    # test_train: input pipeline, fit told the steps per epoch; test_gpu_side: bfloat16; test_profiling: Keras
    # profiled (device input: the least Python per step to profile).
    "torch-ffn-device": ("--backend", "torch", "--model", "ffn", "--input-pipeline", "device",
                         "--fit-steps-per-epoch", "--precision", "mixed_bfloat16", "--profile"),
    # test_native: every backend and model from NumPy arrays, device-resident data for a few; test_profiling: the
    # native loop profiled.
    **{f"native-{backend}-{model}-numpy": ("--implementation", "native", "--backend", backend, "--model", model,
                                           "--input-pipeline", "numpy")
       for backend in ("tensorflow", "torch", "jax") for model in ("cnn", "ffn")},
    "native-jax-cnn-device": ("--implementation", "native", "--backend", "jax", "--model", "cnn",
                              "--input-pipeline", "device"),
    "native-torch-ffn-device": ("--implementation", "native", "--backend", "torch", "--model", "ffn",
                                "--input-pipeline", "device", "--profile"),
    "native-tensorflow-ffn-device": ("--implementation", "native", "--backend", "tensorflow", "--model", "ffn",
                                     "--input-pipeline", "device"),
}


@dataclass(frozen=True)
class Trained:
    """A shared run: what `kerasmnist train` printed, and its record, as written (JSON) and typed."""

    name: str
    result: subprocess.CompletedProcess
    json: dict
    record: records.RunRecord


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """`trained(NAME)`: the shared run NAME (SHARED_RUNS), trained on first use, passed, and read. Under
    pytest-xdist the workers share one folder of runs: the first to ask for a run trains it while holding its
    lock, and the others read what it printed and wrote."""
    folder = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        folder = folder.parent  # the session's folder, above each worker's own
    folder = folder / "shared-runs"
    folder.mkdir(exist_ok=True)

    def run(name: str) -> Trained:
        out, printed = folder / name, folder / f"{name}.printed.json"
        with FileLock(folder / f"{name}.lock"):
            if not printed.exists():
                ran = run_cli("train", "--device", "cpu", *SHARED_RUNS[name], *QUICK_ARGS, "--out", str(out))
                printed.write_text(json.dumps({"args": ran.args, "returncode": ran.returncode,
                                               "stdout": ran.stdout, "stderr": ran.stderr}))
        result = subprocess.CompletedProcess(**json.loads(printed.read_text()))
        assert result.returncode == 0, f"shared run {name} failed:\n{result.stderr}"
        (path,) = sorted(out.glob("*.json"))
        return Trained(name, result, json.loads(path.read_text()), records.read(path))

    return run


def records_in(folder: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]


def error_line(stderr: str) -> str:
    """The single line an error must be: asserts there is exactly one and no traceback."""
    lines = [line for line in stderr.splitlines() if line.startswith("kerasmnist: error:")]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture(scope="session")
def keras_jax():
    backend.pin("jax", "cpu")
    import keras

    return keras


@pytest.fixture
def full_data_dir() -> Path:
    folder = os.environ.get("KERASMNIST_DATA_DIR")
    if not folder:
        pytest.skip("KERASMNIST_DATA_DIR is not set: full-MNIST tests skipped")
    return Path(folder)


def fake_entry(cell, status="ok", steady=1.0, accuracy=0.95, hostname="laptop", reason=None, invocation="test",
               contention=None, peak_memory=None, epoch_seconds=None, model_code=None):
    """A results.jsonl entry as the runner writes it, with made-up figures, for runner and report tests.
    Its round is the cell's repeat in `invocation`, as compare numbers them. Given `epoch_seconds`, the
    steady figure is their median after the first, as a run computes it. Given `model_code` (a user's model
    as references.Reference.identity names it), the entry carries it as the launch side hashed it, and an ok
    run's record names the model by it."""
    import statistics

    from kerasmnist import records

    epoch_seconds = epoch_seconds or [steady * 2, steady]
    steady = statistics.median(epoch_seconds[1:])

    config = cell.config.to_dict()
    host = {"cpu_model": "Test CPU", "logical_cores": 2, "memory_bytes": 2**33, "hostname": hostname}
    record = None
    if status == "ok":
        environment = {"python": "3.11.7", "gpus": [], "host": host,
                       "packages": {"keras": "3.15.1", "tensorflow": "2.21.0", "torch": "2.13.0", "jax": "0.10.2"}}
        result = records.TrainingResult(
            resolved_device=config["device"], device_count=1, jit_compile=config["backend"] == "jax", parameters=1000,
            test_accuracy=accuracy, test_loss=0.1, epoch_seconds=epoch_seconds, first_epoch_seconds=epoch_seconds[0],
            steady_epoch_seconds=steady, samples_per_second=1000 / steady, training_flops_per_sample=600_000,
            flops_unknown_layers=[],
            achieved_gflops_per_second=600_000 * (1000 / steady) / 1e9,
            time_to_accuracy=records.TimeToAccuracy(target=0.98, epochs=2, seconds=steady * 3, resolution="epoch ends"),
            contention=contention, profile=None, validation_seconds=[0.1, 0.1], build_seconds=0.1,
            evaluate_seconds=0.1, history={"val_accuracy": [accuracy - 0.05, accuracy]},
            peak_device_memory_bytes=peak_memory,
            model_identity=records.ModelIdentity.from_json(
                {"reference": config["model"], "kind": "builtin", **(model_code or {}),
                 "arguments": config["model_args"], "parameters": 1000}),
            inference_seconds=[0.5 * steady] * 3, inference_warmup_seconds=steady, inference_batch_size=128,
            inference_samples_per_second=200 / steady)
        data = records.DataIdentity(name=config["dataset"], origin="data-dir", directory="data", files=[], credit="",
                                    num_classes=10, train_size=1000, validation_size=0, test_size=200)
        record = records.RunRecord.start(config, environment, "2026-11-22T10:00:00+00:00", data,
                                         0.1).finished(result, "2026-11-22T10:00:00+00:00")
    return records.CellEntry(
        key=cell.key, seed=config["seed"], order=cell.order, repeat=cell.repeat, backend=config["backend"],
        device=config["device"], model=config["model"], status=status, reason=reason, log_tail=[], wall_seconds=1.0,
        finished_at="2026-11-22T10:00:00+00:00", host=host, config=config, record=record,
        software={"python": "3.11.7", "keras": "3.15.1", "tensorflow": "2.21.0", "torch": "2.13.0", "jax": "0.10.2"},
        invocation=invocation, round=f"{invocation} #{cell.repeat + 1}",
        model_code=records.CodeIdentity.from_json(model_code) if model_code else None)


def with_figures(entry, **figures):
    """The ok entry with some of its run's figures (TrainingResult fields) changed."""
    import dataclasses

    result = dataclasses.replace(entry.record.result, **figures)
    return dataclasses.replace(entry, record=dataclasses.replace(entry.record, result=result))


# The longest tests (over a minute together on 2 cores), started first so that under pytest-xdist neither worker is left
# running one of them alone at the end.
LONGEST_FIRST = ("test_learning.py", "test_user_models.py", "test_colab.py", "test_slurm.py", "test_compare.py",
                 "test_environments.py")


def pytest_collection_modifyitems(items):
    """Under pytest-xdist (`-n 2 --dist loadgroup`), the Slurm tests run one after another on one worker: they share
    the one-node cluster and their module's fixtures. The longest files' tests go first."""
    for item in items:
        if item.get_closest_marker("slurm"):
            item.add_marker(pytest.mark.xdist_group("slurm"))
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
