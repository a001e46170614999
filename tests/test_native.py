"""The native baselines learn like the Keras runs and leave the same kind of record."""

import numpy as np
import pytest

from conftest import error_line, run_cli
from kerasmnist.config import InvalidValue, RunConfig
from test_train import ACCURACY_BAR


# Every backend and model from NumPy arrays (the default); device-resident data for a few. The
# fixture's 4,000 training images at batch 64 end in a partial batch, which must train too. Shared runs
# (conftest.SHARED_RUNS): the torch FFN's device run is test_profiling's profiled native run too.
@pytest.mark.slow
@pytest.mark.parametrize(("backend", "model", "pipeline"), [
    *[(backend, model, "numpy") for backend in ("tensorflow", "torch", "jax") for model in ("cnn", "ffn")],
    ("jax", "cnn", "device"), ("torch", "ffn", "device"), ("tensorflow", "ffn", "device"),
])
def test_native_loop_learns_and_records(trained, backend, model, pipeline):
    run = trained(f"native-{backend}-{model}-{pipeline}")
    record = run.record
    assert "Epoch " not in run.result.stdout  # --progress none (QUICK_ARGS): no line per epoch
    assert (record.backend, record.model) == (backend, model)
    assert record.status == "ok" and record.config["implementation"] == "native"
    assert record.config["input_pipeline"] == pipeline
    assert record.resolved_device == "cpu"
    assert record.parameters == {"cnn": 34_826, "ffn": 101_770}[model]
    assert record.test_accuracy >= ACCURACY_BAR[model]
    assert len(record.epoch_seconds) == 3 and record.steady_epoch_seconds > 0
    assert set(record.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}


@pytest.mark.slow
def test_jax_native_device_input_trains_the_same_batches_as_numpy_input(keras_jax):
    """Device input slices each batch out of the epoch's order inside the compiled step; it must
    train exactly the rows NumPy input gathers on the host, the last, partial batch included."""
    from kerasmnist.child.data import Splits
    from kerasmnist.child.trainers.native import train_epoch
    from kerasmnist.child.trainers.native_jax import JaxLoop

    rng = np.random.default_rng(0)
    images, labels = rng.random((10, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 10)
    splits = Splits(images, labels, images[:2], labels[:2], images[:2], labels[:2], num_classes=10)
    orders = [rng.permutation(10) for _ in range(2)]
    results = {}
    for pipeline in ("numpy", "device"):
        config = RunConfig(backend="jax", model="cnn", implementation="native", batch_size=4, input_pipeline=pipeline)
        loop = JaxLoop(config, splits, None, True)
        epochs = [train_epoch(loop, order, config.batch_size) for order in orders]
        assert int(loop.state["step"]) == 2 * 3  # batches of 4, 4 and 2 in each epoch
        results[pipeline] = epochs, [np.asarray(leaf) for leaf in loop.variables()]
    assert int(loop.state["position"]) == 10
    np.testing.assert_allclose(results["numpy"][0], results["device"][0], rtol=1e-6)
    for numpy_leaf, device_leaf in zip(results["numpy"][1], results["device"][1]):
        np.testing.assert_allclose(numpy_leaf, device_leaf, rtol=1e-6, atol=1e-7)


def test_native_initial_weights_are_glorot_uniform_with_zero_biases(keras_jax):  # native imports Keras
    from kerasmnist.child.trainers.native import initial_weights

    for (kernel, bias), fan in zip(initial_weights(RunConfig(model="cnn")), [(9, 288), (288, 576), (1600, 10)]):
        limit = np.sqrt(6 / sum(fan))
        assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.9 * limit
        assert not bias.any()


def test_native_refuses_mixed_precision(tmp_path):
    result = run_cli("train", "--implementation", "native", "--precision", "mixed_bfloat16", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "--implementation native runs float32 on one device only, a batch per step" in error_line(result.stderr)


def test_native_takes_numpy_or_device_input_but_not_a_frameworks_pipeline():
    for pipeline in ("numpy", "device"):
        RunConfig(implementation="native", input_pipeline=pipeline)
    for pipeline in ("tf.data", "torch.utils.data"):
        with pytest.raises(InvalidValue, match="a tf.data or torch.utils.data pipeline"):
            RunConfig(implementation="native", input_pipeline=pipeline)


@pytest.mark.slow
def test_torch_native_adam_follows_keras_rule(keras_jax):
    """Keras adds epsilon to sqrt(v), torch.optim.Adam to sqrt(v / (1 - beta_2^t)): with gradients
    near epsilon the updates differ many-fold. The native torch step must match Keras's own Adam."""
    import torch

    from kerasmnist.child.trainers.native import BETA_1, BETA_2, EPSILON
    from kerasmnist.child.trainers.native_torch import keras_adam_step

    rng = np.random.default_rng(0)
    start = [rng.uniform(0.5, 1.5, (3, 4)).astype(np.float32), -rng.uniform(0.5, 1.5, 5).astype(np.float32)]
    gradients = [[(rng.standard_normal(w.shape) * scale).astype(np.float32) for w in start]
                 for scale in (1e-6, 1e-8, 1e-6, 1e-8, 1e-8, 1e-6)]

    variables = [keras_jax.Variable(w) for w in start]
    optimizer = keras_jax.optimizers.Adam(learning_rate=1e-3)  # Keras's defaults, as the native loops claim
    for grads in gradients:
        optimizer.apply_gradients(zip([keras_jax.ops.convert_to_tensor(g) for g in grads], variables))
    expected = [np.asarray(v.value) for v in variables]

    params = [torch.tensor(w) for w in start]
    m, v = [torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params]
    for step, grads in enumerate(gradients, start=1):
        keras_adam_step(params, [torch.from_numpy(g) for g in grads], m, v, step, 1e-3)
    for param, want in zip(params, expected):
        np.testing.assert_allclose(param.numpy(), want, rtol=1e-6)

    # torch.optim.Adam, which the torch loop used before, is off by far more than that tolerance.
    params = [torch.tensor(w, requires_grad=True) for w in start]
    adam = torch.optim.Adam(params, lr=1e-3, betas=(BETA_1, BETA_2), eps=EPSILON)
    for grads in gradients:
        for param, g in zip(params, grads):
            param.grad = torch.from_numpy(g)
        adam.step()
    for param, want in zip(params, expected):
        assert np.abs(param.detach().numpy() - want).max() > 100 * 1e-6 * np.abs(want).max()
