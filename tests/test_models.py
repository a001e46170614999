import pytest


@pytest.fixture
def models(keras_jax):
    from kerasmnist.models import builtin

    return builtin


@pytest.fixture
def flops(keras_jax):
    from kerasmnist.models import flops

    return flops


def test_cnn_is_the_keras_io_convnet(models):
    model = models.build_cnn()
    assert model.output_shape == (None, 10)
    assert model.count_params() == 34_826
    assert [layer.__class__.__name__ for layer in model.layers] == [
        "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dropout", "Dense"]


@pytest.mark.slow
@pytest.mark.parametrize("hidden, parameters", [
    ((128,), 784 * 128 + 128 + 128 * 10 + 10),
    ((32,), 25_450),
    ((256, 128), 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10),
])
def test_ffn_has_one_dense_layer_per_hidden_size(models, hidden, parameters):
    model = models.build_ffn(hidden=hidden)
    assert model.output_shape == (None, 10)
    assert model.count_params() == parameters
    assert [layer.units for layer in model.layers[1:]] == [*hidden, 10]


def test_builders_return_uncompiled_models(models):
    for model in (models.build_cnn(), models.build_ffn()):
        assert not model.compiled
        assert getattr(model, "optimizer", None) is None


def test_training_flops_per_sample_counts_conv_and_dense_multiply_adds(models, flops):
    # The first weighted layer needs no input gradient (2x forward); every later one does (3x).
    conv1, conv2 = 2 * (3 * 3 * 1 * 32) * 26 * 26, 2 * (3 * 3 * 32 * 64) * 11 * 11
    assert flops.training_flops_per_sample(models.build_cnn()) == 2 * conv1 + 3 * (conv2 + 2 * 1600 * 10)
    assert flops.training_flops_per_sample(models.build_cnn()) == 14_256_384
    assert flops.training_flops_per_sample(models.build_ffn(hidden=(128,))) == 2 * 2 * 784 * 128 + 3 * 2 * 128 * 10


def _xla_training_flops_per_sample(model, batch: int = 128) -> float:
    """XLA's own count for a jitted train step taking gradients w.r.t. the parameters only."""
    import jax
    import jax.numpy as jnp
    import keras

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def loss(trainable, non_trainable, x, y):
        # Inference-mode forward: dropout only adds random-number work that varies across JAX versions.
        probs, _ = model.stateless_call(trainable, non_trainable, x, training=False)
        return keras.losses.sparse_categorical_crossentropy(y, probs).mean()

    x, y = jnp.zeros((batch, *model.input_shape[1:])), jnp.zeros((batch,), "int32")
    cost = jax.jit(jax.value_and_grad(loss)).lower(trainable, non_trainable, x, y).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost  # a list of dicts in some JAX versions
    return cost["flops"] / batch


@pytest.mark.slow
def test_training_flops_per_sample_agrees_with_xla(models, flops):
    # The remainder is elementwise work (activations, pooling, biases, softmax) the count leaves out.
    for model in (models.build_cnn(), models.build_ffn(hidden=(128,))):
        xla = _xla_training_flops_per_sample(model)
        assert flops.training_flops_per_sample(model) == pytest.approx(xla, rel=0.05)
    # 3x forward for every layer (counting an input gradient nobody computes) is far off for the FFN.
    ffn_forward = 2 * (784 * 128 + 128 * 10)
    assert 3 * ffn_forward > 1.4 * _xla_training_flops_per_sample(models.build_ffn(hidden=(128,)))


def test_channels_first_cnn_is_the_same_network_in_torchs_layout(models, flops):
    import numpy as np

    model = models.build_cnn(data_format="channels_first")
    assert model.input_shape == (None, 1, 28, 28) and model.output_shape == (None, 10)
    assert model.count_params() == 34_826
    assert flops.training_flops_per_sample(model) == flops.training_flops_per_sample(models.build_cnn())
    images = np.arange(2 * 28 * 28, dtype="float32").reshape(2, 28, 28, 1)
    moved = models.images_in(images, "channels_first")
    assert moved.shape == (2, 1, 28, 28) and moved.flags["C_CONTIGUOUS"]
    assert (moved[:, 0] == images[..., 0]).all() and models.images_in(images, "channels_last") is images
