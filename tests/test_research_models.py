"""A user's research model as users write it: its own train_step and test_step reporting an extra metric (kept in
the record beside its accuracy), a failure after training began (the run's timed epochs kept, the phase named),
and a model that fails the check before training (its real cause said, its traceback kept).

The JAX ones run in this process (keras_jax); the torch one is a `kerasmnist train` subprocess."""

import json

import pytest

from conftest import FIXTURE_DIR, records_in, run_cli
from kerasmnist import records
from kerasmnist.child import run
from kerasmnist.config import RunConfig
from kerasmnist.errors import ERROR_PREFIX, RunFailed, UserCodeError

USER = FIXTURE_DIR.parent / "user"
SMALL = {"limit_train": 400, "validation_size": 100, "epochs": 2, "batch_size": 100, "progress": "none"}


def test_a_models_own_test_step_with_an_extra_metric_is_recorded_with_its_accuracy(tmp_path, keras_jax):
    """moe.py:build's test_step reports loss, aux_loss and the compiled accuracy (nested under compile_metrics);
    build_loss_only's reports no accuracy, which is then computed from the model's predictions. Both train the
    same way, so both give the same figures."""
    written = {}
    for builder in ("build", "build_loss_only"):
        config = RunConfig(backend="jax", model=f"{USER / 'moe.py'}:{builder}",
                           dataset=f"{USER / 'data.py'}:load_synthetic", **SMALL)
        path, record = run.run_and_record(config, tmp_path / builder)
        assert record.status == "ok" and len(record.epoch_seconds) == 2
        assert set(record.test_metrics) == {"aux_loss"} and record.test_metrics["aux_loss"] > 0
        assert 0.1 < record.test_accuracy <= 1 and record.test_loss > record.test_metrics["aux_loss"]
        assert "val_aux_loss" in record.history
        assert json.loads(path.read_text())["test_metrics"] == record.test_metrics  # in the record as written
        assert records.read(path) == record
        written[builder] = record
    with_accuracy, computed = written["build"], written["build_loss_only"]
    assert computed.test_accuracy == pytest.approx(with_accuracy.test_accuracy, abs=1 / 300)  # one image at most
    assert computed.test_metrics == pytest.approx(with_accuracy.test_metrics, rel=1e-5)


def test_a_failure_in_evaluation_keeps_the_timed_epochs_and_names_the_phase(tmp_path, monkeypatch, keras_jax):
    from kerasmnist.child.trainers.keras import KerasTrainer

    def unpacking(self):
        loss, accuracy = (0.1, 0.9, 0.2)  # what Keras's evaluate gave a model with an extra metric  # noqa: F841

    monkeypatch.setattr(KerasTrainer, "evaluate", unpacking)
    config = RunConfig(backend="jax", model="ffn", data_dir=str(FIXTURE_DIR), **SMALL)
    with pytest.raises(RunFailed, match=r"^evaluation failed: too many values to unpack \(expected 2\) \(record: "):
        run.run_and_record(config, tmp_path)
    (written,) = records_in(tmp_path)
    assert written["status"] == "failed" and written["failed_phase"] == "evaluation"
    assert "ValueError: too many values to unpack" in written["error"] and "in unpacking" in written["traceback"]
    assert len(written["epoch_seconds"]) == 2 and all(seconds > 0 for seconds in written["epoch_seconds"])
    assert written["first_epoch_seconds"] == written["epoch_seconds"][0] and written["build_seconds"] > 0
    assert len(written["history"]["val_accuracy"]) == 2 and len(written["validation_seconds"]) == 2
    assert written["test_accuracy"] is None and written["steady_epoch_seconds"] is None
    (path,) = tmp_path.glob("*.json")
    record = records.read(path)
    assert record.epoch_seconds == written["epoch_seconds"] and record.test_accuracy is None
    assert record.to_json() == written  # one JSON form, both ways


def test_a_model_failing_in_call_is_refused_with_its_real_cause_and_its_traceback(keras_jax, capsys):
    """Under JAX a tensor has no .numpy(): the check names that, and the user's line, not the input shape."""
    from kerasmnist.child import models

    config = RunConfig(model=f"{USER / 'refused.py'}:build")
    with pytest.raises(UserCodeError) as raised:
        models.build(config, (28, 28, 1), 10, keras_jax.ops.convert_to_numpy(keras_jax.ops.zeros((2, 28, 28, 1))))
    message = str(raised.value)
    assert "AttributeError:" in message and "numpy" in message and "(refused.py, line 19, in call)" in message
    assert "input shape" not in message and "Exception encountered" not in message and "\n" not in message
    stderr = capsys.readouterr().err
    assert "Traceback (most recent call last)" in stderr and "hidden.numpy()" in stderr


def test_a_models_rows_that_are_not_probabilities_are_said_in_readable_numbers(keras_jax):
    from kerasmnist.child import models

    config = RunConfig(model=f"{USER / 'refused.py'}:build_negative")
    with pytest.raises(UserCodeError, match="--from-logits") as raised:
        models.build(config, (28, 28, 1), 10, keras_jax.ops.convert_to_numpy(keras_jax.ops.zeros((2, 28, 28, 1))))
    assert "(they sum to -1.881, -1.881; the lowest is -0.1881)" in str(raised.value)


@pytest.mark.slow
def test_numpy_inside_call_under_torch_is_reported_as_itself_with_its_traceback(tmp_path):
    result = run_cli("train", "--backend", "torch", "--model", f"{USER / 'refused.py'}:build",
                     "--data-dir", str(FIXTURE_DIR), "--limit-train", "500", "--validation-size", "100",
                     "--epochs", "1", "--progress", "none", "--out", str(tmp_path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(ERROR_PREFIX) and sum(line.startswith(ERROR_PREFIX) for line in lines) == 1
    assert "RuntimeError: Can't call numpy() on Tensor that requires grad" in lines[-1]
    assert "(refused.py, line 19, in call)" in lines[-1] and "input shape" not in lines[-1]
    assert "Traceback (most recent call last)" in result.stderr and "hidden.numpy()" in result.stderr
    assert not list(tmp_path.glob("*.json"))  # refused before training: no record
