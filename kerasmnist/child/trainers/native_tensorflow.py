"""The native loop under TensorFlow: tf.Variables, tf.GradientTape under tf.function (XLA when jit_compile), Adam
written out by Keras's rule (native.py says what every native loop shares). Import only after `backend.pin`."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from kerasmnist.child.backend import Pinned
from kerasmnist.child.data import Splits
from kerasmnist.child.trainers.native import BETA_1, BETA_2, DROPOUT, EPSILON, initial_weights, split_arrays
from kerasmnist.config import RunConfig


class TensorFlowLoop:
    """tf.Variables, tf.GradientTape under tf.function (XLA when jit_compile), Adam written out."""

    def __init__(self, config: RunConfig, splits: Splits, pinned: Pinned, jit_compile: bool):
        self.config, self.jit_compile = config, jit_compile
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
        self._train(tf.gather(x_all, batch), tf.gather(y_all, batch))

    def _evaluate_batch(self, x, y):
        logits = self._forward(x, training=False)
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        return loss, tf.reduce_sum(tf.cast(tf.argmax(logits, 1) == y, tf.int32))

    def parameter_count(self) -> int:
        return sum(int(np.prod(v.shape)) for v in self.flat)

    def variables(self) -> list[tf.Variable]:
        return [*self.flat, *self.m, *self.v]

    def synchronize(self) -> None:
        self.flat[-1].numpy()  # a copy to the host waits for the step that wrote it

    def size(self, split: str) -> int:
        return len(self.data[split][1])

    def start_epoch(self, order: np.ndarray) -> None:
        self.order = tf.constant(order.astype(np.int32)) if self.on_device else order
        self.loss_sum.assign(0.0)
        self.correct.assign(0)

    def train_step(self, start: int, end: int) -> None:
        if self.on_device:
            self._train_step(self.order[start:end])
        else:
            x, y = self.data["train"]
            batch = self.order[start:end]
            self._train_step(x[batch], y[batch])

    def epoch_sums(self) -> tuple[np.floating, np.integer]:
        return self.loss_sum.numpy(), self.correct.numpy()

    def evaluate_step(self, split: str, start: int, end: int) -> tuple[tf.Tensor, tf.Tensor]:
        x, y = self.data[split]  # NumPy slices are copied to the device by the call
        return self._eval_step(x[start:end], y[start:end])
