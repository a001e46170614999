"""Native training loops: the baseline that shows what Keras itself costs. What they share is here; each
framework's own loop is in a file of its own (native_torch.py, native_jax.py, native_tensorflow.py).

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
from collections.abc import Callable, Sequence
from typing import Protocol, SupportsFloat, SupportsInt

import numpy as np

from kerasmnist.child import models
from kerasmnist.child.backend import Pinned
from kerasmnist.child.data import Splits
from kerasmnist.child.timing import EpochTimer
from kerasmnist.child.trainers.base import Counted, Evaluation, Fitted
from kerasmnist.config import RunConfig

BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7
DROPOUT = 0.5

class NativeLoop(Protocol):
    """One framework's model, Adam and steps; made with (config, splits, pinned, jit_compile), which builds them.
    Its sums are 0-d tensors of its framework (or NumPy scalars), kept where its steps run: reading one with
    float() or int() waits for the device."""

    jit_compile: bool  # whether its steps are compiled

    def parameter_count(self) -> int: ...

    def variables(self) -> Sequence[object]:
        """The weights and Adam's moments, as the framework's tensors."""
        ...

    def synchronize(self) -> None:
        """Waits until every step dispatched so far has run."""

    def size(self, split: str) -> int: ...

    def start_epoch(self, order: np.ndarray) -> None:
        """Takes the epoch's shuffled order of the training rows, and zeroes the epoch's running sums."""

    def train_step(self, start: int, end: int) -> None:
        """One step on the rows order[start:end]."""

    def epoch_sums(self) -> tuple[SupportsFloat, SupportsInt]:
        """The epoch's summed loss and count of correct predictions."""
        ...

    def evaluate_step(self, split: str, start: int, end: int) -> tuple[SupportsFloat, SupportsInt]:
        """Summed loss and correct predictions over the rows start:end of a split ("train", "val" or "test")."""
        ...


LoopType = Callable[[RunConfig, Splits, Pinned, bool], NativeLoop]


class NativeTrainer:
    """A NativeLoop trained epoch by epoch as Keras's fit does (base.Trainer), counted against the same network
    built in Keras. The loop times no inference."""

    loop: NativeLoop  # made by build()
    reference: Counted  # set by fit(), before the first step

    def __init__(self, loop_type: LoopType, config: RunConfig, splits: Splits, pinned: Pinned,
                 jit_compile: bool) -> None:
        self.loop_type, self.config, self.splits, self.pinned = loop_type, config, splits, pinned
        self._jit_compile = jit_compile
        self.history: dict[str, list[float]] = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
        self.validation_seconds: list[float] = []

    @property
    def jit_compile(self) -> bool:
        return self.loop.jit_compile

    def build(self) -> None:
        self.loop = self.loop_type(self.config, self.splits, self.pinned, self._jit_compile)

    def fit(self, timer: EpochTimer) -> Fitted:
        config, splits, loop = self.config, self.splits, self.loop
        reference, identity = models.build(config, splits.input_shape, splits.num_classes)  # the same network, counted
        if loop.parameter_count() != reference.count_params():
            raise RuntimeError(f"native {config.model} has {loop.parameter_count()} parameters, Keras's {reference.count_params()}")
        self.reference = Counted(reference, identity, splits.input_shape)

        shuffle = np.random.default_rng(config.seed)
        history, validation_seconds = self.history, self.validation_seconds
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
            if config.progress != "none":  # one line per epoch, as Keras's "epoch" progress: a bar has no steps here
                print(f"Epoch {epoch + 1}/{config.epochs} - {timer.epoch_seconds[-1]:.2f}s - loss: {loss:.4f} - "
                      f"accuracy: {accuracy:.4f}"
                      + (f" - val_accuracy: {history['val_accuracy'][-1]:.4f}" if len(splits.y_val) else ""), flush=True)
        return self.so_far()

    def so_far(self) -> Fitted:
        return Fitted({key: list(values) for key, values in self.history.items() if values},
                      list(self.validation_seconds))

    def state(self) -> Sequence[object]:
        return self.loop.variables()

    def evaluate(self) -> Evaluation:
        return Evaluation(*evaluate(self.loop, "test", self.config.batch_size), metrics={})

    def inference_pass(self, batch_size: int) -> None:
        return None

    def counted(self) -> Counted:
        return self.reference


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


def train_epoch(loop: NativeLoop, order: np.ndarray, batch_size: int) -> tuple[float, float]:
    """Mean loss and accuracy over one pass. The loop keeps the running sums where its steps run
    (on the device), so only reading them at the end waits for the device."""
    loop.start_epoch(order)
    for start in range(0, len(order), batch_size):
        loop.train_step(start, min(start + batch_size, len(order)))  # the last, partial batch too
    loss_sum, correct = loop.epoch_sums()
    return float(loss_sum) / len(order), int(correct) / len(order)


def evaluate(loop: NativeLoop, split: str, batch_size: int) -> tuple[float, float]:
    size = loop.size(split)
    loss_sum, correct = 0, 0
    for start in range(0, size, batch_size):
        batch_loss, batch_correct = loop.evaluate_step(split, start, min(start + batch_size, size))
        loss_sum, correct = loss_sum + batch_loss, correct + batch_correct
    return float(loss_sum) / size, int(correct) / size
