"""The native loop under JAX: parameters as arrays, one jax.jit train step with Adam written out by Keras's rule
(native.py says what every native loop shares). Import only after `backend.pin`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from kerasmnist.child.backend import Pinned
from kerasmnist.child.data import Splits
from kerasmnist.child.trainers.native import BETA_1, BETA_2, DROPOUT, EPSILON, initial_weights, split_arrays
from kerasmnist.config import RunConfig


class JaxLoop:
    """Parameters as arrays, a jax.jit train step with Adam written out (Keras's update rule).

    Everything a step changes lives in one state pytree that the compiled step takes and returns
    (donated, as Keras's JAX trainer donates its own): weights, Adam moments, the dropout key (split
    inside the step, CNN only), the epoch's running loss and correct-count sums and, for device
    input, the position in the epoch's order, which is put on the device once per epoch and sliced
    there. A step then sends nothing from the host but, for NumPy input, the batch itself.
    """

    def __init__(self, config: RunConfig, splits: Splits, pinned: Pinned, jit_compile: bool):
        self.config = config
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
        log_probabilities = jax.nn.log_softmax(logits)
        return -jnp.take_along_axis(log_probabilities, y[:, None], axis=1).mean(), logits

    def _train(self, state, x, y):
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
        batch = jax.lax.dynamic_slice(order, (state["position"],), (size,))
        state = self._train(state, x_all[batch], y_all[batch])
        return {**state, "position": state["position"] + size}

    def _evaluate_batch(self, params, x, y):
        logits = self._forward(params, x)
        log_probabilities = jax.nn.log_softmax(logits)
        return -jnp.take_along_axis(log_probabilities, y[:, None], axis=1).sum(), (logits.argmax(1) == y).sum()

    def parameter_count(self) -> int:
        return sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(self.state["params"]))

    def variables(self) -> list[jax.Array]:
        return jax.tree_util.tree_leaves([self.state["params"], self.state["m"], self.state["v"]])

    def synchronize(self) -> None:
        jax.block_until_ready(self.state)

    def size(self, split: str) -> int:
        return len(self.data[split][1])

    def start_epoch(self, order: np.ndarray) -> None:
        order = order.astype(np.int32)
        self.order = jax.device_put(order) if self.on_device else order
        self.state = {**self.state, "loss_sum": jnp.zeros(()), "correct": jnp.zeros((), jnp.int32),
                      "position": jnp.zeros((), jnp.int32)}

    def train_step(self, start: int, end: int) -> None:
        x, y = self.data["train"]
        if self.on_device:  # the state knows where the batch starts
            self.state = self._train_step(self.state, x, y, self.order, size=end - start)
        else:
            batch = self.order[start:end]
            self.state = self._train_step(self.state, x[batch], y[batch])

    def epoch_sums(self) -> tuple[jax.Array, jax.Array]:
        return self.state["loss_sum"], self.state["correct"]

    def evaluate_step(self, split: str, start: int, end: int) -> tuple[jax.Array, jax.Array]:
        x, y = self.data[split]  # NumPy slices are copied to the device by the call
        return self._eval_step(self.state["params"], x[start:end], y[start:end])
