"""Native training loops: the baseline that shows what Keras itself costs.

The same two models, data and preprocessing, batch size, shuffling, epochs, Adam update rule and
settings (Keras's, with its defaults: beta_1 0.9, beta_2 0.999, epsilon 1e-7), initial-weight scheme
(Glorot-uniform kernels, zero biases, as Keras's Conv2D and Dense), input path (--input-pipeline
numpy: batches gathered from NumPy arrays and copied to the device every step, as Keras does;
device: the data put on the device once) and timing rules as the Keras runs, written the way each
framework's own examples write them: torch.nn with Adam in torch's foreach ops under PyTorch, a
jitted train step under JAX, tf.GradientTape under tf.function under TensorFlow. Import only after
`backend.pin`.
"""

from __future__ import annotations

import math
import time
from types import SimpleNamespace
from typing import Any

import numpy as np

from kerasmnist.child import models
from kerasmnist.child.backend import Pinned, peak_memory_bytes, resolved_device
from kerasmnist.config import RunConfig
from kerasmnist.child.data import Splits
from kerasmnist.records import TrainingResult
from kerasmnist.child.timing import EpochTimer, inference_figures, resolve_jit_compile, timing_figures

BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7
DROPOUT = 0.5


def layer_shapes(config: RunConfig) -> list[tuple[str, tuple[int, ...]]]:
    """Each weighted layer's kind and kernel shape, in Keras's layout (HWIO, and (in, out))."""
    if config.model == "cnn":
        return [("conv", (3, 3, 1, 32)), ("conv", (3, 3, 32, 64)), ("dense", (5 * 5 * 64, 10))]
    sizes = [28 * 28, *config.hidden, 10]
    return [("dense", (n_in, n_out)) for n_in, n_out in zip(sizes, sizes[1:])]


def initial_weights(config: RunConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """Glorot-uniform kernels and zero biases, drawn from the run's seed."""
    rng = np.random.default_rng(config.seed)
    weights = []
    for _, shape in layer_shapes(config):
        receptive = math.prod(shape[:-2])
        limit = math.sqrt(6 / (receptive * shape[-2] + receptive * shape[-1]))
        weights.append((rng.uniform(-limit, limit, shape).astype(np.float32), np.zeros(shape[-1], np.float32)))
    return weights


def split_arrays(splits: Splits) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {"train": (splits.x_train, splits.y_train), "val": (splits.x_val, splits.y_val),
            "test": (splits.x_test, splits.y_test)}


def train_epoch(loop: Any, order: np.ndarray, batch_size: int) -> tuple[float, float]:
    """Mean loss and accuracy over one pass. The loop keeps the running sums where its steps run
    (on the device), so only reading them at the end waits for the device."""
    loop.start_epoch(order)
    for start in range(0, len(order), batch_size):
        loop.train_step(start, min(start + batch_size, len(order)))  # the last, partial batch too
    loss_sum, correct = loop.epoch_sums()
    return float(loss_sum) / len(order), int(correct) / len(order)


def evaluate(loop: Any, split: str, batch_size: int) -> tuple[float, float]:
    size = loop.size(split)
    loss_sum, correct = 0, 0
    for start in range(0, size, batch_size):
        batch_loss, batch_correct = loop.evaluate_step(split, start, min(start + batch_size, size))
        loss_sum, correct = loss_sum + batch_loss, correct + batch_correct
    return float(loss_sum) / size, int(correct) / size


def train_and_evaluate(config: RunConfig, splits: Splits, pinned: Pinned) -> TrainingResult:
    """The native counterpart of training.train_and_evaluate: same figures, same timing rules."""
    jit_compile = resolve_jit_compile(config)
    build_started = time.perf_counter()
    loop = {"torch": TorchLoop, "jax": JaxLoop, "tensorflow": TensorFlowLoop}[config.backend](config, splits, pinned,
                                                                                               jit_compile)
    build_seconds = time.perf_counter() - build_started
    reference, identity = models.build(config, splits.input_shape, splits.num_classes)  # the same network, counted
    if loop.parameter_count() != reference.count_params():
        raise RuntimeError(f"native {config.model} has {loop.parameter_count()} parameters, Keras's {reference.count_params()}")

    shuffle = np.random.default_rng(config.seed)
    history: dict[str, list[float]] = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
    validation_seconds = []
    timer = EpochTimer(config.profile, config.epochs)
    for epoch in range(config.epochs):
        order = shuffle.permutation(len(splits.y_train))
        loop.synchronize()
        timer.start(epoch)
        loss, accuracy = train_epoch(loop, order, config.batch_size)  # reading the sums waits for the device
        timer.stop()
        history["loss"].append(loss)
        history["accuracy"].append(accuracy)
        if len(splits.y_val):
            started = time.perf_counter()
            val_loss, val_accuracy = evaluate(loop, "val", config.batch_size)
            validation_seconds.append(time.perf_counter() - started)
            history["val_loss"].append(val_loss)
            history["val_accuracy"].append(val_accuracy)
        print(f"Epoch {epoch + 1}/{config.epochs} - {timer.epoch_seconds[-1]:.2f}s - loss: {loss:.4f} - accuracy: {accuracy:.4f}"
              + (f" - val_accuracy: {history['val_accuracy'][-1]:.4f}" if len(splits.y_val) else ""), flush=True)
    device = resolved_device(pinned, [SimpleNamespace(value=v) for v in loop.variables()])
    evaluate_started = time.perf_counter()
    test_loss, test_accuracy = evaluate(loop, "test", config.batch_size)
    evaluate_seconds = time.perf_counter() - evaluate_started

    return TrainingResult(
        resolved_device=device,
        device_count=1,
        jit_compile=loop.jit_compile,
        parameters=reference.count_params(),
        test_accuracy=test_accuracy,
        test_loss=test_loss,
        **timing_figures(config, timer, len(splits.y_train), models.count_training_flops(reference, splits.input_shape),
                         history["val_accuracy"]),
        validation_seconds=validation_seconds,
        build_seconds=build_seconds,
        evaluate_seconds=evaluate_seconds,
        history={key: values for key, values in history.items() if values},
        peak_device_memory_bytes=peak_memory_bytes(config.backend, config.device),
        model_identity=identity,
        **inference_figures(None, [], len(splits.y_test), config.batch_size),  # the native loops time no inference
    )


def keras_adam_step(params: list, grads: list, m: list, v: list, step: int, learning_rate: float) -> None:
    """One Adam update of torch tensors, in place, by Keras's rule rather than torch.optim.Adam's.

    Keras 3.15.1, keras/src/optimizers/adam.py, Adam.update_step (lines 117-137, each
    statement joined onto one line):
        117  alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        119  self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        122  self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        132  self.assign_sub(variable, ops.divide(ops.multiply(m, alpha), ops.add(ops.sqrt(v), self.epsilon)))
    with beta_k_power = beta_k ** (iterations + 1) (lines 106-112). torch.optim.Adam instead divides by
    sqrt(v / (1 - beta_2 ** t)) + eps, i.e. adds eps to the bias-corrected sqrt(v_hat): the two differ
    wherever sqrt(v) is not far above eps, i.e. for gradients of about 1e-6 and below.
    `step` counts from 1, as Keras's iterations + 1.
    """
    import torch

    alpha = learning_rate * math.sqrt(1 - BETA_2 ** step) / (1 - BETA_1 ** step)
    with torch.no_grad():
        torch._foreach_lerp_(m, grads, 1 - BETA_1)  # lerp with a weight below 0.5 is m + (g - m) * weight
        torch._foreach_lerp_(v, torch._foreach_mul(grads, grads), 1 - BETA_2)
        denominators = torch._foreach_sqrt(v)
        torch._foreach_add_(denominators, EPSILON)
        torch._foreach_addcdiv_(params, m, denominators, value=-alpha)


class TorchLoop:
    """torch.nn.Sequential, F.cross_entropy on logits, Keras's Adam rule; torch.compile when jit_compile."""

    def __init__(self, config: RunConfig, splits: Splits, pinned: Pinned, jit_compile: bool):
        import torch
        from torch import nn

        self.torch, self.config = torch, config
        self.device = torch.device("cuda" if pinned.device == "gpu" else "cpu")
        torch.manual_seed(config.seed)  # dropout masks
        if config.model == "cnn":
            layers = [nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Dropout(DROPOUT), nn.Linear(5 * 5 * 64, 10)]
        else:
            sizes = [28 * 28, *config.hidden]
            layers = [nn.Flatten()]
            for n_in, n_out in zip(sizes, sizes[1:]):
                layers += [nn.Linear(n_in, n_out), nn.ReLU()]
            layers.append(nn.Linear(sizes[-1], 10))
        self.model = nn.Sequential(*layers)
        weighted = [layer for layer in layers if isinstance(layer, (nn.Conv2d, nn.Linear))]
        with torch.no_grad():
            for layer, (kernel, bias) in zip(weighted, initial_weights(config)):
                # Keras layout to torch's: HWIO -> OIHW, (in, out) -> (out, in)
                layer.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T))
                layer.bias.copy_(torch.from_numpy(bias))
        self.model.to(self.device)
        self.jit_compile = jit_compile
        self.forward = torch.compile(self.model) if jit_compile else self.model
        self.params = list(self.model.parameters())
        self.m, self.v = ([torch.zeros_like(p) for p in self.params] for _ in range(2))
        self.step = 0
        self.on_device = config.input_pipeline == "device"
        # NHWC -> NCHW once, on the host: torch's own layout, whichever side the batches are gathered on
        arrays = {name: (np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y) for name, (x, y) in split_arrays(splits).items()}
        self.data = {name: (self._to_device(x), self._to_device(y)) for name, (x, y) in arrays.items()} \
            if self.on_device else arrays

    def _to_device(self, array: np.ndarray):
        return self.torch.from_numpy(array).to(self.device)

    def _batch(self, split: str, index):
        """The rows `index` of a split: gathered on the device, or on the host and then copied (as Keras
        does with NumPy input)."""
        x, y = self.data[split]
        return (x[index], y[index]) if self.on_device else (self._to_device(x[index]), self._to_device(y[index]))

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.params)

    def variables(self) -> list[Any]:
        return [*self.params, *self.m, *self.v]

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def size(self, split: str) -> int:
        return len(self.data[split][1])

    def start_epoch(self, order: np.ndarray) -> None:
        self.order = self._to_device(order) if self.on_device else order
        self.loss_sum = self.torch.zeros((), device=self.device)
        self.correct = self.torch.zeros((), dtype=self.torch.int64, device=self.device)

    def train_step(self, start: int, end: int) -> None:
        x, y = self._batch("train", self.order[start:end])
        self.model.train()
        for p in self.params:
            p.grad = None
        logits = self.forward(x)
        loss = self.torch.nn.functional.cross_entropy(logits, y)
        loss.backward()
        self.step += 1
        keras_adam_step(self.params, [p.grad for p in self.params], self.m, self.v, self.step, self.config.learning_rate)
        self.loss_sum += loss.detach() * len(y)
        self.correct += (logits.argmax(1) == y).sum()

    def epoch_sums(self):
        return self.loss_sum, self.correct

    def evaluate_step(self, split: str, start: int, end: int):
        x, y = self._batch(split, slice(start, end))
        self.model.eval()
        with self.torch.no_grad():
            logits = self.forward(x)
            return self.torch.nn.functional.cross_entropy(logits, y, reduction="sum"), (logits.argmax(1) == y).sum()


class JaxLoop:
    """Parameters as arrays, a jax.jit train step with Adam written out (Keras's update rule).

    Everything a step changes lives in one state pytree that the compiled step takes and returns
    (donated, as Keras's JAX trainer donates its own): weights, Adam moments, the dropout key (split
    inside the step, CNN only), the epoch's running loss and correct-count sums and, for device
    input, the position in the epoch's order, which is put on the device once per epoch and sliced
    there. A step then sends nothing from the host but, for NumPy input, the batch itself.
    """

    def __init__(self, config: RunConfig, splits: Splits, pinned: Pinned, jit_compile: bool):
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp, self.config = jax, jnp, config
        self.jit_compile = True  # an un-jitted JAX loop is not how JAX is used
        params = [(jnp.asarray(kernel), jnp.asarray(bias)) for kernel, bias in initial_weights(config)]
        m, v = (jax.tree_util.tree_map(jnp.zeros_like, params) for _ in range(2))  # apart: a buffer is donated once
        self.state = {"params": params, "m": m, "v": v, "step": jnp.zeros((), jnp.int32)}
        if config.model == "cnn":  # only the CNN has dropout
            self.state["key"] = jax.random.PRNGKey(config.seed)
        self.on_device = config.input_pipeline == "device"
        arrays = {name: (x, y.astype(np.int32)) for name, (x, y) in split_arrays(splits).items()}
        self.data = jax.device_put(arrays) if self.on_device else arrays
        if self.on_device:  # the batch size is static: the last, partial batch compiles once more
            self._train_step = jax.jit(self._train_from_order, static_argnames="size", donate_argnums=0)
        else:
            self._train_step = jax.jit(self._train, donate_argnums=0)
        self._eval_step = jax.jit(self._evaluate_batch)

    def _forward(self, params, x, dropout_key=None):
        jax, jnp = self.jax, self.jnp
        if self.config.model == "cnn":
            for kernel, bias in params[:2]:
                x = jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
                x = jax.nn.relu(x + bias)
                x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
            x = x.reshape(x.shape[0], -1)
            if dropout_key is not None:
                keep = jax.random.bernoulli(dropout_key, 1 - DROPOUT, x.shape)
                x = jnp.where(keep, x / (1 - DROPOUT), 0.0)
            kernel, bias = params[2]
            return x @ kernel + bias
        x = x.reshape(x.shape[0], -1)
        for kernel, bias in params[:-1]:
            x = jax.nn.relu(x @ kernel + bias)
        kernel, bias = params[-1]
        return x @ kernel + bias

    def _loss(self, params, x, y, dropout_key):
        logits = self._forward(params, x, dropout_key)
        log_probabilities = self.jax.nn.log_softmax(logits)
        return -self.jnp.take_along_axis(log_probabilities, y[:, None], axis=1).mean(), logits

    def _train(self, state, x, y):
        jax, jnp = self.jax, self.jnp
        state = dict(state)
        dropout_key = None
        if "key" in state:
            state["key"], dropout_key = jax.random.split(state["key"])
        (loss, logits), grads = jax.value_and_grad(self._loss, has_aux=True)(state["params"], x, y, dropout_key)
        step = state["step"] + 1
        m = jax.tree_util.tree_map(lambda m, g: m + (g - m) * (1 - BETA_1), state["m"], grads)
        v = jax.tree_util.tree_map(lambda v, g: v + (g * g - v) * (1 - BETA_2), state["v"], grads)
        alpha = self.config.learning_rate * jnp.sqrt(1 - BETA_2 ** step) / (1 - BETA_1 ** step)
        params = jax.tree_util.tree_map(lambda p, m, v: p - alpha * m / (jnp.sqrt(v) + EPSILON), state["params"], m, v)
        state.update(params=params, m=m, v=v, step=step, loss_sum=state["loss_sum"] + loss * len(y),
                     correct=state["correct"] + (logits.argmax(1) == y).sum())
        return state

    def _train_from_order(self, state, x_all, y_all, order, size: int):
        batch = self.jax.lax.dynamic_slice(order, (state["position"],), (size,))
        state = self._train(state, x_all[batch], y_all[batch])
        return {**state, "position": state["position"] + size}

    def _evaluate_batch(self, params, x, y):
        logits = self._forward(params, x)
        log_probabilities = self.jax.nn.log_softmax(logits)
        return -self.jnp.take_along_axis(log_probabilities, y[:, None], axis=1).sum(), (logits.argmax(1) == y).sum()

    def parameter_count(self) -> int:
        return sum(int(leaf.size) for leaf in self.jax.tree_util.tree_leaves(self.state["params"]))

    def variables(self) -> list[Any]:
        return self.jax.tree_util.tree_leaves([self.state["params"], self.state["m"], self.state["v"]])

    def synchronize(self) -> None:
        self.jax.block_until_ready(self.state)

    def size(self, split: str) -> int:
        return len(self.data[split][1])

    def start_epoch(self, order: np.ndarray) -> None:
        jnp = self.jnp
        order = order.astype(np.int32)
        self.order = self.jax.device_put(order) if self.on_device else order
        self.state = {**self.state, "loss_sum": jnp.zeros(()), "correct": jnp.zeros((), jnp.int32),
                      "position": jnp.zeros((), jnp.int32)}

    def train_step(self, start: int, end: int) -> None:
        x, y = self.data["train"]
        if self.on_device:  # the state knows where the batch starts
            self.state = self._train_step(self.state, x, y, self.order, size=end - start)
        else:
            batch = self.order[start:end]
            self.state = self._train_step(self.state, x[batch], y[batch])

    def epoch_sums(self):
        return self.state["loss_sum"], self.state["correct"]

    def evaluate_step(self, split: str, start: int, end: int):
        x, y = self.data[split]  # NumPy slices are copied to the device by the call
        return self._eval_step(self.state["params"], x[start:end], y[start:end])


class TensorFlowLoop:
    """tf.Variables, tf.GradientTape under tf.function (XLA when jit_compile), Adam written out."""

    def __init__(self, config: RunConfig, splits: Splits, pinned: Pinned, jit_compile: bool):
        import tensorflow as tf

        self.tf, self.config, self.jit_compile = tf, config, jit_compile
        self.params = [(tf.Variable(kernel), tf.Variable(bias)) for kernel, bias in initial_weights(config)]
        self.flat = [variable for pair in self.params for variable in pair]
        self.m = [tf.Variable(tf.zeros_like(v)) for v in self.flat]
        self.v = [tf.Variable(tf.zeros_like(v)) for v in self.flat]
        self.step = tf.Variable(0.0)
        self.loss_sum, self.correct = tf.Variable(0.0), tf.Variable(0)  # the epoch's, updated inside the step
        self.rng = tf.random.Generator.from_seed(config.seed)
        self.on_device = config.input_pipeline == "device"
        arrays = split_arrays(splits)
        self.data = {name: (tf.constant(x), tf.constant(y)) for name, (x, y) in arrays.items()} \
            if self.on_device else arrays
        if self.on_device:
            self._train_step = tf.function(self._train_from_order, input_signature=[tf.TensorSpec([None], tf.int32)],
                                           jit_compile=jit_compile)
        else:
            signature = [tf.TensorSpec([None, 28, 28, 1], tf.float32), tf.TensorSpec([None], tf.int64)]
            self._train_step = tf.function(self._train, input_signature=signature, jit_compile=jit_compile)
        self._eval_step = tf.function(self._evaluate_batch, jit_compile=jit_compile, reduce_retracing=True)

    def _forward(self, x, training: bool):
        tf = self.tf
        if self.config.model == "cnn":
            for kernel, bias in self.params[:2]:
                x = tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "VALID") + bias)
                x = tf.nn.max_pool2d(x, 2, 2, "VALID")
            x = tf.reshape(x, [tf.shape(x)[0], -1])
            if training:
                keep = self.rng.uniform(tf.shape(x)) >= DROPOUT
                x = tf.where(keep, x / (1 - DROPOUT), 0.0)
            kernel, bias = self.params[2]
            return tf.matmul(x, kernel) + bias
        x = tf.reshape(x, [tf.shape(x)[0], -1])
        for kernel, bias in self.params[:-1]:
            x = tf.nn.relu(tf.matmul(x, kernel) + bias)
        kernel, bias = self.params[-1]
        return tf.matmul(x, kernel) + bias

    def _train(self, x, y):
        tf = self.tf
        with tf.GradientTape() as tape:
            logits = self._forward(x, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        grads = tape.gradient(loss, self.flat)
        self.step.assign_add(1.0)
        alpha = self.config.learning_rate * tf.sqrt(1 - BETA_2 ** self.step) / (1 - BETA_1 ** self.step)
        for variable, grad, m, v in zip(self.flat, grads, self.m, self.v):
            m.assign_add((grad - m) * (1 - BETA_1))
            v.assign_add((grad * grad - v) * (1 - BETA_2))
            variable.assign_sub(alpha * m / (tf.sqrt(v) + EPSILON))
        self.loss_sum.assign_add(loss * tf.cast(tf.shape(y)[0], tf.float32))
        self.correct.assign_add(tf.reduce_sum(tf.cast(tf.argmax(logits, 1) == y, tf.int32)))

    def _train_from_order(self, batch):
        x_all, y_all = self.data["train"]
        self._train(self.tf.gather(x_all, batch), self.tf.gather(y_all, batch))

    def _evaluate_batch(self, x, y):
        tf = self.tf
        logits = self._forward(x, training=False)
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        return loss, tf.reduce_sum(tf.cast(tf.argmax(logits, 1) == y, tf.int32))

    def parameter_count(self) -> int:
        return sum(int(np.prod(v.shape)) for v in self.flat)

    def variables(self) -> list[Any]:
        return [*self.flat, *self.m, *self.v]

    def synchronize(self) -> None:
        self.flat[-1].numpy()  # a copy to the host waits for the step that wrote it

    def size(self, split: str) -> int:
        return len(self.data[split][1])

    def start_epoch(self, order: np.ndarray) -> None:
        self.order = self.tf.constant(order.astype(np.int32)) if self.on_device else order
        self.loss_sum.assign(0.0)
        self.correct.assign(0)

    def train_step(self, start: int, end: int) -> None:
        if self.on_device:
            self._train_step(self.order[start:end])
        else:
            x, y = self.data["train"]
            batch = self.order[start:end]
            self._train_step(x[batch], y[batch])

    def epoch_sums(self):
        return self.loss_sum.numpy(), self.correct.numpy()

    def evaluate_step(self, split: str, start: int, end: int):
        x, y = self.data[split]  # NumPy slices are copied to the device by the call
        return self._eval_step(x[start:end], y[start:end])
