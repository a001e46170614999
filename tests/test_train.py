"""Real training on real MNIST images (the fixture), under every backend, pinned to the CPU.

The slow tests read shared runs (conftest.SHARED_RUNS): each backend and model trained once, carrying the
settings (input pipeline, data format, fit's steps per epoch) whose effects the tests here assert."""

import dataclasses

import numpy as np
import pytest

from conftest import FIXTURE_DIR, error_line, records_in, run_cli
from kerasmnist import records
from kerasmnist.child import run
from kerasmnist.config import RunConfig
from kerasmnist.errors import RunFailed

# After 3 epochs on 4,000 images; full MNIST does far better. Measured on the shared runs (2026-12-04): the CNN
# 0.933-0.936 under Keras, 0.922-0.931 native; the FFN 0.882-0.893, with bfloat16, float16 or data-parallel too.
ACCURACY_BAR = {"cnn": 0.90, "ffn": 0.85}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["cnn", "ffn"])
@pytest.mark.parametrize("backend", ["tensorflow", "torch", "jax"])
def test_train_writes_a_complete_record(trained, backend, model):
    shared = trained(f"{backend}-{model}")
    record = shared.record
    # the record's own fields, its result's figures flat among them
    # (less the keys written only where there is something to say: a failed run's, a model's extra metrics)
    assert ({field.name for field in dataclasses.fields(records.RunRecord)} - {"result", "partial", "failed_phase"}
            | {field.name for field in dataclasses.fields(records.TrainingResult)} - {"test_metrics"}) == set(shared.json)
    assert records.RunRecord.from_json(shared.json).to_json() == shared.json  # one JSON form, both ways
    contention = record.contention
    assert 0 < contention["own_cpu_seconds"] <= contention["wall_seconds"] * contention["logical_cores"] + 0.1
    assert contention["other_cpu_seconds"] >= 0 and contention["steal_seconds"] >= 0
    assert record.status == "ok" and record.error is None
    assert (record.backend, record.device, record.model) == (backend, "cpu", model)
    assert record.resolved_device == "cpu"
    assert record.test_accuracy >= ACCURACY_BAR[model]
    assert len(record.epoch_seconds) == 3 and all(seconds > 0 for seconds in record.epoch_seconds)
    assert record.first_epoch_seconds == record.epoch_seconds[0]
    assert record.steady_epoch_seconds > 0
    assert record.samples_per_second == pytest.approx(4000 / record.steady_epoch_seconds)
    assert set(record.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(values) == 3 for values in record.history.values())
    assert record.config["backend"] == backend and record.config["epochs"] == 3
    assert record.data.train_size == 4000 and record.data.directory == str(FIXTURE_DIR)
    assert record.environment["packages"]["keras"]
    assert record.environment["host"]["logical_cores"] >= 1
    assert "ran on cpu" in shared.result.stdout and "record: " in shared.result.stdout


@pytest.mark.slow
def test_same_seed_same_split_and_similar_learning(trained):
    first, second = trained("jax-ffn").record, trained("jax-ffn-again").record
    assert first.config == second.config
    assert first.history["val_accuracy"] == pytest.approx(second.history["val_accuracy"], abs=0.01)


def test_a_failure_during_training_leaves_a_failed_record(tmp_path, monkeypatch, keras_jax):
    from kerasmnist.child import trainers

    def broken(*args, **kwargs):
        raise MemoryError("out of memory in epoch 2")

    monkeypatch.setattr(trainers, "train_and_evaluate", broken)
    config = RunConfig(backend="jax", data_dir=str(FIXTURE_DIR), validation_size=1000)
    with pytest.raises(RunFailed, match="training failed: out of memory in epoch 2"):
        run.run_and_record(config, tmp_path)
    (record,) = records_in(tmp_path)
    assert record["status"] == "failed" and record["failed_phase"] == "training"
    assert "MemoryError: out of memory in epoch 2" in record["error"]
    assert record["test_accuracy"] is None and record["environment"]["packages"]["jax"]


def test_record_reader_refuses_other_schema_versions(tmp_path):
    path = tmp_path / "old.json"
    path.write_text('{"kind": "kerasmnist.run", "schema_version": 0}')
    with pytest.raises(Exception, match=f"schema version 0 is not the supported version {records.SCHEMA_VERSION}"):
        records.read(path)


@pytest.mark.full_data
def test_full_mnist_ffn_learns(tmp_path, full_data_dir):
    result = run_cli("train", "--backend", "jax", "--model", "ffn", "--epochs", "2", "--progress", "none",
                     "--data-dir", str(full_data_dir), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (record,) = records_in(tmp_path)
    assert record["data"]["train_size"] == 50_000
    assert record["test_accuracy"] >= 0.94


def test_time_to_accuracy_counts_training_seconds_until_the_target(keras_jax):
    from kerasmnist.child.timing import time_to_accuracy

    assert time_to_accuracy([0.95, 0.975, 0.99], [3.0, 1.0, 1.0], 0.97).to_json() == {
        "target": 0.97, "epochs": 2, "seconds": 4.0, "resolution": "epoch ends"}
    assert time_to_accuracy([0.95, 0.96], [3.0, 1.0], 0.97).to_json() == {
        "target": 0.97, "epochs": None, "seconds": None, "resolution": "epoch ends"}


@pytest.mark.slow
def test_channels_first_cnn_learns_under_torch(trained):
    record = trained("torch-cnn").record
    assert record.config["data_format"] == "channels_first" and record.parameters == 34_826
    assert record.test_accuracy >= ACCURACY_BAR["cnn"]


def test_native_runs_refuse_another_data_format(tmp_path):
    result = run_cli("train", "--implementation", "native", "--data-format", "channels_first", "--out", str(tmp_path))
    assert result.returncode == 2 and "--data-format" in error_line(result.stderr)


@pytest.mark.slow
@pytest.mark.parametrize("backend, pipeline, name", [
    ("jax", "tf.data", "jax-ffn-tf.data"), ("torch", "device", "torch-ffn-device"),
    ("tensorflow", "tf.data", "tensorflow-ffn"), ("torch", "torch.utils.data", "torch-ffn"),
])
def test_every_input_pipeline_trains_and_is_recorded(trained, backend, pipeline, name):
    record = trained(name).record
    assert (record.backend, record.model) == (backend, "ffn")
    assert record.config["input_pipeline"] == pipeline and record.resolved_device == "cpu"
    assert record.test_accuracy >= ACCURACY_BAR["ffn"] and len(record.history["val_accuracy"]) == 3


@pytest.mark.slow
def test_a_repeated_tf_data_pipeline_trains_and_learns_as_well(trained):
    """tf.data-repeat under Keras's TensorFlow trainer: 3 epochs of the fixture's 4,000 images (62 batches of 64
    and one of 32 each, the epoch sizes fit_inputs' test checks), fit never told it ran out of data."""
    shared = trained("tensorflow-cnn")
    record = shared.record
    assert record.config["input_pipeline"] == "tf.data-repeat" and record.data.train_size % record.config["batch_size"]
    assert len(record.epoch_seconds) == 3 and len(record.history["val_accuracy"]) == 3
    assert record.test_accuracy >= ACCURACY_BAR["cnn"] and "ran out of data" not in shared.result.stderr


def test_a_repeated_tf_data_pipeline_is_one_reshuffled_pass_per_epoch(keras_jax):
    """fit's training data under tf.data-repeat: endless, each run of steps_per_epoch batches one pass over the
    images (the last batch partial, as fit(x, y) makes it), each pass in a new order; its validation data ends."""
    from kerasmnist.child.trainers import keras as keras_trainer

    config = RunConfig(backend="jax", input_pipeline="tf.data-repeat", batch_size=4)
    images, labels = np.zeros((10, 1), "float32"), np.arange(10)
    steps = keras_trainer.steps_per_epoch(config, len(labels))
    training = keras_trainer.fit_inputs(config, images, labels, shuffle_seed=1, repeat=True)["x"]
    assert steps == 3 and training.cardinality() < 0  # endless (tf.data.INFINITE_CARDINALITY)
    batches = [y.numpy().tolist() for _, y in training.take(4 * steps)]
    passes = [sum(batches[i:i + steps], []) for i in range(0, len(batches), steps)]
    assert [len(batch) for batch in batches] == [4, 4, 2] * 4
    assert all(sorted(order) == list(range(10)) for order in passes) and len({tuple(p) for p in passes}) == 4
    validation = keras_trainer.fit_inputs(config, images, labels)["x"]
    assert [len(y) for _, y in validation] == [4, 4, 2]
    assert keras_trainer.steps_per_epoch(RunConfig(backend="jax"), 10) is None  # fit counts the batches itself


def test_a_repeated_tf_data_pipeline_refuses_calls_that_would_run_past_an_epoch(tmp_path, keras_jax):
    """With several steps per call, Keras takes whole calls from endless data: refused unless they fill the
    epoch exactly (the fixture's 4,000 images at batch 64: 63 batches), before anything trains."""
    from kerasmnist.errors import ConfigError

    config = RunConfig(backend="jax", input_pipeline="tf.data-repeat", steps_per_execution=2, batch_size=64,
                       validation_size=1000, data_dir=str(FIXTURE_DIR))
    with pytest.raises(ConfigError, match="each epoch's 63 batches to be whole calls of --steps-per-execution 2"):
        run.run_and_record(config, tmp_path)
    assert records_in(tmp_path) == []


def test_tf_data_input_without_tensorflow_is_refused_before_anything_runs(tmp_path, monkeypatch, keras_jax):
    import importlib.util

    from kerasmnist.errors import BackendUnavailable

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else find_spec(name, *a))
    config = RunConfig(backend="jax", input_pipeline="tf.data", data_dir=str(FIXTURE_DIR))
    with pytest.raises(BackendUnavailable, match="--input-pipeline tf.data needs tensorflow, which is not installed"):
        run.run_and_record(config, tmp_path)
    assert records_in(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("backend, name", [("tensorflow", "tensorflow-ffn"), ("torch", "torch-ffn-device")])
def test_telling_fit_the_steps_per_epoch_trains_the_same_epochs(trained, backend, name):
    """--fit-steps-per-epoch changes how many data iterators Keras makes, not what an epoch is: every epoch
    still sees every training image once (the last, partial batch included: 4,000 images at batch 64 end in
    one of 32) and the model learns as well."""
    shared = trained(name)
    record = shared.record
    assert record.backend == backend and record.data.train_size % record.config["batch_size"]
    assert record.config["fit_steps_per_epoch"] and len(record.epoch_seconds) == 3
    assert record.test_accuracy >= 0.75 and "ran out of data" not in shared.result.stderr
