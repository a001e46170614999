"""The native baselines learn like the Keras runs and leave the same kind of record."""

import numpy as np
import pytest

from conftest import QUICK_ARGS, error_line, records_in, run_cli
from kerasmnist.config import RunConfig
from test_train import ACCURACY_BAR


@pytest.mark.parametrize("model", ["cnn", "ffn"])
@pytest.mark.parametrize("backend", ["tensorflow", "torch", "jax"])
def test_native_loop_learns_and_records(tmp_path, backend, model):
    result = run_cli("train", "--implementation", "native", "--backend", backend, "--model", model, *QUICK_ARGS,
                     "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (record,) = records_in(tmp_path)
    assert record["status"] == "ok" and record["config"]["implementation"] == "native"
    assert record["resolved_device"] == "cpu"
    assert record["parameters"] == {"cnn": 34_826, "ffn": 101_770}[model]
    assert record["test_accuracy"] >= ACCURACY_BAR[model]
    assert len(record["epoch_seconds"]) == 3 and record["steady_epoch_seconds"] > 0
    assert set(record["history"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_native_initial_weights_are_glorot_uniform_with_zero_biases():
    from kerasmnist.native import initial_weights

    for (kernel, bias), fan in zip(initial_weights(RunConfig(model="cnn")), [(9, 288), (288, 576), (1600, 10)]):
        limit = np.sqrt(6 / sum(fan))
        assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.9 * limit
        assert not bias.any()


def test_native_refuses_mixed_precision(tmp_path):
    result = run_cli("train", "--implementation", "native", "--precision", "mixed_bfloat16", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "--implementation native runs float32 on one device only, a batch per step" in error_line(result.stderr)
