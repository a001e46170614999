"""Native training loops: the baseline that shows what Keras itself costs.

The same two models, data and preprocessing, batch size, shuffling, epochs, Adam settings
(Keras's defaults: beta_1 0.9, beta_2 0.999, epsilon 1e-7), initial-weight scheme (Glorot-uniform
kernels, zero biases, as Keras's Conv2D and Dense) and timing rules as the Keras runs, written the
way each framework's own examples write them: torch.nn and torch.optim under PyTorch, a jitted
train step under JAX, tf.GradientTape under tf.function under TensorFlow. Import only after
`backend.pin`.
"""

from __future__ import annotations

import math
import time
from types import SimpleNamespace
from typing import Any

import numpy as np

from kerasmnist import models
from kerasmnist.backend import Pinned, resolved_device
from kerasmnist.config import RunConfig
from kerasmnist.data import Splits
from kerasmnist.profiling import StepProfiler
from kerasmnist.timing import resolve_jit_compile, timing_figures

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


def batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [order[start: start + batch_size] for start in range(0, len(order), batch_size)]


def train_epoch(loop: Any, order: np.ndarray, batch_size: int) -> tuple[float, float]:
    """Mean loss and accuracy over one pass; the sums stay on the device until the end."""
    loss_sum, correct = 0, 0
    for batch in batches(loop.indices(order), batch_size):
        batch_loss, batch_correct = loop.train_step(batch)
        loss_sum, correct = loss_sum + batch_loss, correct + batch_correct
    return float(loss_sum) / len(order), int(correct) / len(order)


def evaluate(loop: Any, split: str, batch_size: int) -> tuple[float, float]:
    size = loop.size(split)
    loss_sum, correct = 0, 0
    for start in range(0, size, batch_size):
        batch_loss, batch_correct = loop.evaluate_step(split, start, min(start + batch_size, size))
        loss_sum, correct = loss_sum + batch_loss, correct + batch_correct
    return float(loss_sum) / size, int(correct) / size


def train_and_evaluate(config: RunConfig, splits: Splits, pinned: Pinned) -> dict[str, Any]:
    """The native counterpart of training.train_and_evaluate: same figures, same timing rules."""
    jit_compile = resolve_jit_compile(config)
    build_started = time.perf_counter()
    loop = {"torch": TorchLoop, "jax": JaxLoop, "tensorflow": TensorFlowLoop}[config.backend](config, splits, pinned,
                                                                                               jit_compile)
    build_seconds = time.perf_counter() - build_started
    reference = models.build_model(config.model, config.hidden)  # the same architecture, for its counts
    if loop.parameter_count() != reference.count_params():
        raise RuntimeError(f"native {config.model} has {loop.parameter_count()} parameters, Keras's {reference.count_params()}")

    shuffle = np.random.default_rng(config.seed)
    history: dict[str, list[float]] = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
    epoch_seconds, validation_seconds = [], []
    profiler = StepProfiler(config.profile, config.epochs)
    for epoch in range(config.epochs):
        order = shuffle.permutation(len(splits.y_train))
        loop.synchronize()
        profiler.start(epoch)
        started = time.perf_counter()
        loss, accuracy = train_epoch(loop, order, config.batch_size)  # reading the sums waits for the device
        epoch_seconds.append(time.perf_counter() - started)
        profiler.stop()
        history["loss"].append(loss)
        history["accuracy"].append(accuracy)
        if len(splits.y_val):
            started = time.perf_counter()
            val_loss, val_accuracy = evaluate(loop, "val", config.batch_size)
            validation_seconds.append(time.perf_counter() - started)
            history["val_loss"].append(val_loss)
            history["val_accuracy"].append(val_accuracy)
        print(f"Epoch {epoch + 1}/{config.epochs} - {epoch_seconds[-1]:.2f}s - loss: {loss:.4f} - accuracy: {accuracy:.4f}"
              + (f" - val_accuracy: {history['val_accuracy'][-1]:.4f}" if len(splits.y_val) else ""), flush=True)
    device = resolved_device(pinned, [SimpleNamespace(value=v) for v in loop.variables()])
    evaluate_started = time.perf_counter()
    test_loss, test_accuracy = evaluate(loop, "test", config.batch_size)
    evaluate_seconds = time.perf_counter() - evaluate_started

    return {
        "resolved_device": device,
        "device_count": 1,
        "jit_compile": loop.jit_compile,
        "parameters": reference.count_params(),
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        **timing_figures(config, epoch_seconds, len(splits.y_train), models.training_flops_per_sample(reference),
                         history["val_accuracy"]),
        "validation_seconds": validation_seconds,
        "build_seconds": build_seconds,
        "evaluate_seconds": evaluate_seconds,
        "history": {key: values for key, values in history.items() if values},
        "profile": profiler.summary(),
    }


class TorchLoop:
    """torch.nn.Sequential, torch.optim.Adam, F.cross_entropy on logits; torch.compile when jit_compile."""

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
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate, betas=(BETA_1, BETA_2),
                                          eps=EPSILON)
        self.data = {name: (self._images(x), torch.from_numpy(y).to(self.device))
                     for name, x, y in (("train", splits.x_train, splits.y_train), ("val", splits.x_val, splits.y_val),
                                        ("test", splits.x_test, splits.y_test))}

    def _images(self, x: np.ndarray):
        return self.torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(self.device)  # NHWC -> NCHW

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def variables(self) -> list[Any]:
        state = [t for s in self.optimizer.state.values() for t in s.values() if self.torch.is_tensor(t) and t.dim()]
        return [*self.model.parameters(), *state]

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def size(self, split: str) -> int:
        return len(self.data[split][1])

    def indices(self, order: np.ndarray):
        return self.torch.from_numpy(order).to(self.device)

    def train_step(self, batch):
        x_all, y_all = self.data["train"]
        x, y = x_all[batch], y_all[batch]
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.forward(x)
        loss = self.torch.nn.functional.cross_entropy(logits, y)
        loss.backward()
        self.optimizer.step()
        return loss.detach() * len(y), (logits.argmax(1) == y).sum()

    def evaluate_step(self, split: str, start: int, end: int):
        x_all, y_all = self.data[split]
        self.model.eval()
        with self.torch.no_grad():
            logits = self.forward(x_all[start:end])
            return (self.torch.nn.functional.cross_entropy(logits, y_all[start:end], reduction="sum"),
                    (logits.argmax(1) == y_all[start:end]).sum())


class JaxLoop:
    """Parameters as arrays, a jax.jit train step with Adam written out (Keras's update rule)."""

    def __init__(self, config: RunConfig, splits: Splits, pinned: Pinned, jit_compile: bool):
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp, self.config = jax, jnp, config
        self.jit_compile = True  # an un-jitted JAX loop is not how JAX is used
        params = [(jnp.asarray(kernel), jnp.asarray(bias)) for kernel, bias in initial_weights(config)]
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        self.state = {"params": params, "m": zeros, "v": zeros, "step": jnp.zeros((), jnp.int32)}
        self.key = jax.random.PRNGKey(config.seed)
        self.data = {name: (jnp.asarray(x), jnp.asarray(y.astype(np.int32)))
                     for name, x, y in (("train", splits.x_train, splits.y_train), ("val", splits.x_val, splits.y_val),
                                        ("test", splits.x_test, splits.y_test))}
        self._train_step = jax.jit(self._step)
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

    def _step(self, state, x_all, y_all, batch, key):
        jax, jnp = self.jax, self.jnp
        x, y = x_all[batch], y_all[batch]
        (loss, logits), grads = jax.value_and_grad(self._loss, has_aux=True)(state["params"], x, y, key)
        step = state["step"] + 1
        m = jax.tree_util.tree_map(lambda m, g: m + (g - m) * (1 - BETA_1), state["m"], grads)
        v = jax.tree_util.tree_map(lambda v, g: v + (g * g - v) * (1 - BETA_2), state["v"], grads)
        alpha = self.config.learning_rate * jnp.sqrt(1 - BETA_2 ** step) / (1 - BETA_1 ** step)
        params = jax.tree_util.tree_map(lambda p, m, v: p - alpha * m / (jnp.sqrt(v) + EPSILON), state["params"], m, v)
        return {"params": params, "m": m, "v": v, "step": step}, loss * len(batch), (logits.argmax(1) == y).sum()

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

    def indices(self, order: np.ndarray) -> np.ndarray:
        return order.astype(np.int32)

    def train_step(self, batch: np.ndarray):
        x_all, y_all = self.data["train"]
        self.key, dropout_key = self.jax.random.split(self.key)
        self.state, batch_loss, batch_correct = self._train_step(self.state, x_all, y_all, batch, dropout_key)
        return batch_loss, batch_correct

    def evaluate_step(self, split: str, start: int, end: int):
        x_all, y_all = self.data[split]
        return self._eval_step(self.state["params"], x_all[start:end], y_all[start:end])


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
        self.rng = tf.random.Generator.from_seed(config.seed)
        self.data = {name: (tf.constant(x), tf.constant(y))
                     for name, x, y in (("train", splits.x_train, splits.y_train), ("val", splits.x_val, splits.y_val),
                                        ("test", splits.x_test, splits.y_test))}
        indices = tf.TensorSpec([None], tf.int32)
        self._train_step = tf.function(self._step, input_signature=[indices], jit_compile=jit_compile)
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

    def _step(self, batch):
        tf = self.tf
        x_all, y_all = self.data["train"]
        x, y = tf.gather(x_all, batch), tf.gather(y_all, batch)
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
        batch_size = tf.cast(tf.shape(batch)[0], tf.float32)
        correct = tf.reduce_sum(tf.cast(tf.argmax(logits, 1) == y, tf.int32))
        return loss * batch_size, correct

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
        return int(self.data[split][1].shape[0])

    def indices(self, order: np.ndarray):
        return self.tf.constant(order.astype(np.int32))

    def train_step(self, batch):
        return self._train_step(batch)

    def evaluate_step(self, split: str, start: int, end: int):
        x_all, y_all = self.data[split]
        return self._eval_step(x_all[start:end], y_all[start:end])
