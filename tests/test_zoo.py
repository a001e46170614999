"""The zoo's models: what they are built of, and that each trains under every backend."""

import math

import pytest

from conftest import FIXTURE_DIR, records_in, run_cli

PARAMETERS = {"resnet": (100_000, 300_000), "lstm": (50_000, 150_000), "vit": (50_000, 150_000)}
# After 2 epochs on 1,024 fixture images (32 steps): chance is 0.10, full MNIST does far better. Measured
# (2026-12-04, tensorflow/torch/jax): resnet 0.862/0.806/0.780, lstm 0.437/0.452/0.381, vit 0.421/0.367/0.517.
ACCURACY_BAR = {"resnet": 0.6, "lstm": 0.25, "vit": 0.2}


@pytest.fixture
def zoo(keras_jax):
    from kerasmnist.child.models import zoo

    return zoo


def layer_classes(model) -> set[str]:
    return {layer.__class__.__name__ for layer in model.layers}


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_each_builds_an_uncompiled_model_with_a_float32_softmax(zoo, name):
    model = zoo.BUILDERS[name]((28, 28, 1), 10)
    low, high = PARAMETERS[name]
    assert low <= model.count_params() <= high
    assert model.output_shape == (None, 10) and not model.compiled
    output = model.layers[-1]
    assert output.activation.__name__ == "softmax" and output.dtype_policy.compute_dtype == "float32"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_each_takes_its_shape_from_the_data(zoo, name):
    import numpy as np

    model = zoo.BUILDERS[name]((32, 32, 3), 7)
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 7)
    probabilities = np.asarray(model(np.zeros((2, 32, 32, 3), "float32")))
    assert probabilities.shape == (2, 7) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_resnet_is_residual_with_batch_normalization(zoo):
    model = zoo.build_resnet((28, 28, 1), 10)
    assert {"BatchNormalization", "Add", "Conv2D"} <= layer_classes(model)


def test_lstm_reads_rows_as_steps_with_the_cudnn_settings(zoo, keras_jax):
    model = zoo.build_lstm((28, 28, 1), 10)
    (lstm,) = [layer for layer in model.layers if isinstance(layer, keras_jax.layers.LSTM)]
    assert lstm.input.shape == (None, 28, 28)
    # The settings Keras's backends check before taking cuDNN (see build_lstm's docstring).
    assert lstm.use_cudnn == "auto" and not lstm.unroll and lstm.use_bias and lstm.recurrent_dropout == 0
    assert lstm.activation is keras_jax.activations.tanh
    assert lstm.recurrent_activation is keras_jax.activations.sigmoid
    assert zoo.build_lstm((28, 28, 1), 10, unroll=True).count_params() == model.count_params()


def test_vit_embeds_patches_with_positions_into_two_encoder_blocks(zoo):
    model = zoo.build_vit((28, 28, 1), 10)
    patches = model.get_layer("patch_embedding")
    assert patches.strides == patches.kernel_size == (4, 4) and patches.output.shape == (None, 7, 7, 64)
    assert model.get_layer("position_embedding").embedding.shape == (49, 64)
    assert sum(layer.__class__.__name__ == "MultiHeadAttention" for layer in model.layers) == 2
    assert "LayerNormalization" in layer_classes(model)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "torch", "jax"])
@pytest.mark.parametrize("model", sorted(PARAMETERS))
def test_each_trains_under_each_backend(tmp_path, model, backend):
    result = run_cli("train", "--backend", backend, "--device", "cpu", "--model", model, "--data-dir", str(FIXTURE_DIR),
                     "--validation-size", "1000", "--limit-train", "1024", "--epochs", "2", "--batch-size", "64",
                     "--progress", "none", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (record,) = records_in(tmp_path)
    assert record["test_accuracy"] >= ACCURACY_BAR[model] and math.isfinite(record["test_loss"])
    low, high = PARAMETERS[model]
    assert low <= record["parameters"] <= high
