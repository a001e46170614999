"""--profile: where the training steps' time goes, in the record and the report."""

import pytest

from conftest import QUICK_ARGS, records_in, run_cli
from kerasmnist.child.profiling import OWNERS, owner


def test_code_is_owned_by_keras_the_framework_or_other():
    assert owner("/venv/lib/python3.11/site-packages/keras/src/layers/layer.py", "__call__") == "Keras (Python)"
    assert owner("~", "<built-in method torch.matmul>") == "framework calls"
    assert owner("~", "<built-in method tensorflow.python._pywrap_tfe.TFE_Py_Execute>") == "framework calls"
    assert owner("/venv/lib/python3.11/site-packages/torch/optim/adam.py", "_single_tensor_adam") == "framework (Python)"
    assert owner("~", "<built-in method builtins.isinstance>") == "other"
    assert owner("/work/main/kerasmnist/child/native.py", "train_step") == "other"


@pytest.mark.slow
@pytest.mark.parametrize("implementation", ["keras", "native"])
def test_a_profiled_run_records_where_its_steady_epochs_went(tmp_path, implementation):
    result = run_cli("train", "--backend", "torch", "--model", "ffn", "--implementation", implementation, "--profile",
                     *QUICK_ARGS, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (record,) = records_in(tmp_path)
    profile = record["profile"]
    assert record["config"]["profile"] is True and profile["epochs"] == [2, 3]  # the first epoch stays out
    assert list(profile["seconds_by_owner"]) == list(OWNERS)
    assert profile["profiled_seconds"] == pytest.approx(sum(profile["seconds_by_owner"].values()))
    assert profile["seconds_by_owner"]["framework calls"] > 0
    keras_seconds = profile["seconds_by_owner"]["Keras (Python)"]
    assert keras_seconds > 0 if implementation == "keras" else keras_seconds == 0
    assert profile["top_functions"] and all(f["owner"] in OWNERS for f in profile["top_functions"])


@pytest.mark.slow
def test_an_unprofiled_run_has_no_profile(tmp_path):
    result = run_cli("train", "--backend", "jax", "--model", "ffn", *QUICK_ARGS, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert records_in(tmp_path)[0]["profile"] is None
