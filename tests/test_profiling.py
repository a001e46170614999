"""--profile: where the training steps' time goes, in the record and the report."""

import pytest

from kerasmnist.child.profiling import OWNERS, owner


def test_code_is_owned_by_keras_the_framework_or_other():
    assert owner("/venv/lib/python3.11/site-packages/keras/src/layers/layer.py", "__call__") == "Keras (Python)"
    assert owner("~", "<built-in method torch.matmul>") == "framework calls"
    assert owner("~", "<built-in method tensorflow.python._pywrap_tfe.TFE_Py_Execute>") == "framework calls"
    assert owner("/venv/lib/python3.11/site-packages/torch/optim/adam.py", "_single_tensor_adam") == "framework (Python)"
    assert owner("~", "<built-in method builtins.isinstance>") == "other"
    assert owner("/work/main/kerasmnist/child/trainers/native_torch.py", "train_step") == "other"


# Shared runs (conftest.SHARED_RUNS): torch's FFN with device input, Keras's and the native loop's; jax's FFN
# unprofiled.
@pytest.mark.slow
@pytest.mark.parametrize("implementation, name", [("keras", "torch-ffn-device"), ("native", "native-torch-ffn-device")])
def test_a_profiled_run_records_where_its_steady_epochs_went(trained, implementation, name):
    record = trained(name).record
    assert (record.backend, record.model, record.config["implementation"]) == ("torch", "ffn", implementation)
    profile = record.profile
    assert record.config["profile"] is True and profile["epochs"] == [2, 3]  # the first epoch stays out
    assert list(profile["seconds_by_owner"]) == list(OWNERS)
    assert profile["profiled_seconds"] == pytest.approx(sum(profile["seconds_by_owner"].values()))
    assert profile["seconds_by_owner"]["framework calls"] > 0
    keras_seconds = profile["seconds_by_owner"]["Keras (Python)"]
    assert keras_seconds > 0 if implementation == "keras" else keras_seconds == 0
    assert profile["top_functions"] and all(f["owner"] in OWNERS for f in profile["top_functions"])


@pytest.mark.slow
def test_an_unprofiled_run_has_no_profile(trained):
    record = trained("jax-ffn").record
    assert record.config["profile"] is False and record.profile is None
