"""Bad input: one clear line, a non-zero exit, no traceback, and no record."""

import pytest
from click.testing import CliRunner

from conftest import FIXTURE_DIR, QUICK_ARGS, error_line, run_cli
from kerasmnist.cli import cli


def invoke(tmp_path, *args):
    result = CliRunner().invoke(cli, ["train", "--out", str(tmp_path / "runs"), *args])
    return result, error_line(result.stderr)


@pytest.mark.parametrize("args, expected", [
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--batch-size", "-1"], "--batch-size must be at least 1"),
    (["--hidden", "0"], "--hidden needs one or more sizes"),
    (["--backend", "mxnet"], "--backend must be one of tensorflow, torch, jax"),
    (["--model", "resnet50"], "--model must be one of cnn, ffn, resnet, lstm, vit, or PATH.py:FUNCTION"),
    (["--model", "cnn", "--hidden", "64"], "--hidden sets the ffn's hidden layers only"),
    (["--model", "vit", "--implementation", "native"], "--implementation native exists for cnn and ffn only"),
    (["--device", "tpu"], "--device must be one of cpu, gpu"),
    (["--epochs", "many"], "'many' is not a valid integer"),
    (["--limit-train", "100000"], "--limit-train must be between 1 and 50000: the 60000 training images less the "
                                   "10000 held out for validation (got 100000)"),
    (["--limit-train", "55001", "--validation-size", "5000"], "--limit-train must be between 1 and 55000"),
    (["--backend", "pytorch"], "--backend must be one of tensorflow, torch, jax (got 'pytorch'); did you mean 'torch'?"),
    (["--no-such-flag"], "No such option '--no-such-flag'"),
])
def test_bad_flags_fail_before_anything_runs(tmp_path, args, expected):
    result, line = invoke(tmp_path, *args)
    assert result.exit_code == 2
    assert expected in line
    assert not (tmp_path / "runs").exists()


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = CliRunner().invoke(cli, ["train", "--out", str(blocker / "runs")])
    assert result.exit_code == 2
    assert "is not writable" in error_line(result.stderr)


# The errors below are found after the backend is pinned: under JAX on the CPU, to which this process is pinned
# (keras_jax) as a `kerasmnist train --backend jax` process pins itself, so they run in this one.

def test_limit_train_larger_than_the_data(tmp_path, keras_jax):
    result, line = invoke(tmp_path, "--backend", "jax", *QUICK_ARGS, "--limit-train", "4500")
    assert result.exit_code == 2
    assert "--limit-train 4500 is larger than the 4000 training images left after holding out 1000" in line
    assert not list((tmp_path / "runs").glob("*.json"))


@pytest.mark.parametrize("name, is_file", [("nowhere", False), ("a-file", True)])
def test_unreadable_data_dir(tmp_path, name, is_file, keras_jax):
    path = tmp_path / name
    if is_file:
        path.write_bytes(b"")
    result, line = invoke(tmp_path, "--backend", "jax", "--data-dir", str(path))
    assert result.exit_code == 2  # bad input, as every other
    assert f"data folder {path} is not a readable directory" in line


def test_corrupt_data_file_is_named(tmp_path, keras_jax):
    data = tmp_path / "data"
    data.mkdir()
    for path in FIXTURE_DIR.iterdir():
        (data / path.name).write_bytes(path.read_bytes())
    truncated = data / "train-images-idx3-ubyte.gz"
    truncated.write_bytes(truncated.read_bytes()[:1000])
    result, line = invoke(tmp_path, "--backend", "jax", "--data-dir", str(data))
    assert result.exit_code == 2
    assert f"{truncated}: SHA-256" in line and "(1000 bytes) does not match" in line
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*.json"))


# A GPU run pins a process of its own.

@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "torch", "jax"])
def test_gpu_request_without_gpu_fails_cleanly(tmp_path, backend):
    result = run_cli("train", "--backend", backend, "--device", "gpu", *QUICK_ARGS, "--out", str(tmp_path))
    assert result.returncode == 2
    assert f"backend {backend} sees no" in error_line(result.stderr)
    assert not list(tmp_path.glob("*.json"))


def test_backend_whose_framework_is_missing(tmp_path):
    hidden = tmp_path / "hide-torch" / "torch"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\")\n")
    result = run_cli("train", "--backend", "torch", *QUICK_ARGS, "--out", str(tmp_path / "runs"),
                     env={"PYTHONPATH": str(hidden.parent)})
    assert result.returncode == 2
    assert "backend torch needs torch, which is not installed here" in error_line(result.stderr)


def test_bench_refuses_an_unknown_backend(tmp_path):
    result = CliRunner().invoke(cli, ["bench", "matmul", "--backends", "jax,mxnet", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "command line: --backends has 'mxnet'; allowed: tensorflow, torch, jax" in error_line(result.stderr)


@pytest.mark.parametrize("args, expected", [
    (["compare", "--epochs", "1"], "command line: epochs must be at least 2 to compare (got 1 for cell "),
    (["compare", "--backends", "tensorflow,pytorch"],
     "command line: backends has 'pytorch'; allowed: tensorflow, torch, jax; did you mean 'torch'?"),
    (["compare", "--precision", "float16"], "command line: --precision must be one of float32, mixed_float16"),
    (["sweep", "--models", "ffn"], "sweep needs --batch-sizes (or batch_sizes in the config's [matrix])"),
    (["sweep", "--batch-sizes", "64,128", "--epochs", "1"], "epochs must be at least 2 to compare"),
])
def test_compare_refuses_a_plan_before_running_anything(tmp_path, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert expected in error_line(result.stderr)
    assert not list(tmp_path.iterdir())  # not even the results folder
