"""Keras's own training: model.compile, model.fit, model.evaluate and model.predict, timed like a benchmark harness.

Import only after `backend.pin` (it imports Keras).

Timing rules (the clocks themselves are base.py's):
- `time.perf_counter()` around each epoch's training steps, read at epoch boundaries only: a
  per-batch callback would turn off Keras's asynchronous dispatch and slow every backend down.
- The device is synchronised at every boundary by copying a weight to the host: the copy cannot
  finish before the step that wrote it, whatever the backend or device.
- Validation runs inside `fit` but is timed apart (Keras calls `on_test_begin` when it starts), and
  the final test evaluation is timed apart too, so neither counts as training time.
- The first epoch, which includes tracing and XLA compilation, is reported apart from the steady
  state (the median of the later epochs).
- With --profile, cProfile runs over the steady epochs' training steps (see profiling.py).

Evaluation reads the metrics by name: a model's own test_step may report more than loss and accuracy (an
auxiliary loss it tracks), each kept in the record.

What differs between backends is each framework's (child/frameworks/): which generator `set_random_seed` seeds
besides Keras's, Python's and NumPy's, and how --data-parallel replicates the model.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from kerasmnist.child import models
from kerasmnist.child.backend import Pinned, import_tensorflow
from kerasmnist.child.data import Splits
from kerasmnist.child.frameworks import for_backend
from kerasmnist.child.timing import EpochTimer
from kerasmnist.child.trainers.base import Counted, Evaluation, Fitted
from kerasmnist.config import HOST_PIPELINES, RunConfig
from kerasmnist.records import ModelIdentity

_VERBOSITY = {"bar": 1, "epoch": 2, "none": 0}


class EpochClock(keras.callbacks.Callback):
    """Drives an EpochTimer from fit's callbacks, times fit's own validation pass apart, and keeps each finished
    epoch's logs (its curves), so that a fit that breaks part-way still has them."""

    def __init__(self, timer: EpochTimer) -> None:
        super().__init__()
        self.timer = timer
        self.validation_seconds: list[float] = []
        self.history: dict[str, list[float]] = {}
        self._validation_started: float | None = None

    def synchronize(self) -> None:
        keras.ops.convert_to_numpy(self.model.trainable_variables[-1])

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.synchronize()
        self._validation_started = None
        self.timer.start(epoch)

    def on_test_begin(self, logs: dict[str, float] | None = None) -> None:
        # Only fit's own validation pass reaches this callback: it ends the training steps.
        self._end_training_steps()
        self._validation_started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        if self._validation_started is None:  # no validation data
            self._end_training_steps()
        else:
            self.synchronize()
            self.validation_seconds.append(time.perf_counter() - self._validation_started)
        for name, value in metric_values(logs or {}).items():
            self.history.setdefault(name, []).append(value)

    def _end_training_steps(self) -> None:
        self.synchronize()
        self.timer.stop()


class KerasTrainer:
    """The run's model compiled and trained by Keras (base.Trainer)."""

    model: keras.Model  # built by build()
    identity: ModelIdentity

    def __init__(self, config: RunConfig, splits: Splits, pinned: Pinned, jit_compile: bool) -> None:
        set_random_seed(config.seed, config.backend, HOST_PIPELINES.get(config.input_pipeline) == "tensorflow")
        self.config, self.splits, self.jit_compile = config, splits, jit_compile
        self.clock: EpochClock | None = None  # made by fit()
        layout = config.data_format if config.model == "cnn" else "channels_last"  # only the CNN has a layout option
        self.x_train, self.x_val, self.x_test = (models.images_in(x, layout)
                                                 for x in (splits.x_train, splits.x_val, splits.x_test))

    def build(self) -> None:
        self.model, self.identity = build_and_compile(self.config, self.jit_compile, self.splits)

    def fit(self, timer: EpochTimer) -> Fitted:
        config, splits = self.config, self.splits
        validation = None
        if len(splits.y_val):
            inputs = fit_inputs(config, self.x_val, splits.y_val)
            validation = (inputs["x"], inputs["y"]) if "y" in inputs else inputs["x"]
        self.clock = EpochClock(timer)
        self.model.fit(
            **fit_inputs(config, self.x_train, splits.y_train, shuffle_seed=config.seed, repeat=True),
            epochs=config.epochs,
            steps_per_epoch=steps_per_epoch(config, len(splits.y_train)),
            validation_data=validation,
            callbacks=[self.clock],
            verbose=_VERBOSITY[config.progress],
        )
        return self.so_far()

    def so_far(self) -> Fitted:
        if self.clock is None:
            return Fitted({}, [])
        return Fitted({name: list(values) for name, values in self.clock.history.items()},
                      list(self.clock.validation_seconds))

    def state(self) -> Sequence[object]:
        return [variable.value for variable in [*self.model.weights, *self.model.optimizer.variables]]

    def evaluate(self) -> Evaluation:
        reported = metric_values(self.model.evaluate(**fit_inputs(self.config, self.x_test, self.splits.y_test),
                                                     verbose=0, return_dict=True))
        loss, accuracy = reported.pop("loss", None), reported.pop("accuracy", None)
        if loss is None or accuracy is None:
            # The model's own test_step does not report them (compile's "accuracy" metric, its loss): computed
            # here from its predictions on the test set, the loss as compile's cross-entropy alone.
            probabilities = self.model.predict(self.x_test, batch_size=self.config.batch_size, verbose=0)
            if accuracy is None:
                accuracy = float(np.mean(np.argmax(probabilities, axis=-1) == self.splits.y_test))
            if loss is None:
                loss = float(keras.ops.convert_to_numpy(keras.ops.mean(keras.losses.sparse_categorical_crossentropy(
                    self.splits.y_test, probabilities, from_logits=self.config.from_logits))))
        return Evaluation(loss, accuracy, reported)

    def inference_pass(self, batch_size: int) -> Callable[[], object]:
        # predict returns NumPy arrays, so each pass has waited for the device
        return lambda: self.model.predict(self.x_test, batch_size=batch_size, verbose=0)

    def counted(self) -> Counted:
        return Counted(self.model, self.identity, self.x_train.shape[1:])


def metric_values(logs: dict[str, Any], values: dict[str, Any] | None = None) -> dict[str, Any]:
    """Metrics by name as numbers (a list of them for a metric that is not one number), nested dicts flattened
    as Keras flattens its own (a custom step may return {"compile_metrics": {"accuracy": ...}})."""
    values = {} if values is None else values
    for name, value in logs.items():
        if isinstance(value, dict):
            metric_values(value, values)
        else:
            array = np.asarray(keras.ops.convert_to_numpy(value), dtype=float)
            values[name] = float(array) if array.ndim == 0 else array.tolist()
    return values


def build_and_compile(config: RunConfig, jit_compile: bool, splits: Splits) -> tuple[keras.Model, ModelIdentity]:
    """The model and its identity, under the run's dtype policy and, with --data-parallel, replicated over every
    device."""
    keras.config.set_dtype_policy(config.precision)
    framework = for_backend(config.backend)
    with framework.data_parallel_scope(config.device) if config.data_parallel else contextlib.nullcontext():
        model, identity = models.build(config, splits.input_shape, splits.num_classes, splits.x_train[:2])
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=config.from_logits),
            metrics=["accuracy"],
            jit_compile=jit_compile,
            steps_per_execution=config.steps_per_execution,
        )
    return model, identity


def steps_per_epoch(config: RunConfig, train_size: int) -> int | None:
    """fit's steps_per_epoch: one pass over the training images, the last batch partial as fit(x, y) makes it,
    where the run tells fit (--fit-steps-per-epoch) or the data never ends (tf.data-repeat); else None, and fit
    counts the batches itself."""
    if config.fit_steps_per_epoch or config.input_pipeline == "tf.data-repeat":
        return config.batches_per_epoch(train_size)
    return None


def fit_inputs(config: RunConfig, x: np.ndarray, y: np.ndarray, shuffle_seed: int | None = None,
               repeat: bool = False) -> dict[str, Any]:
    """fit's or evaluate's data arguments for --input-pipeline. NumPy arrays are sliced and copied to
    the device batch by batch; `device` converts them once, up front (Keras shuffles either, every
    epoch); tf.data and torch's DataLoader shuffle with `shuffle_seed`, under any backend: tf.data
    prefetches, the DataLoader gathers each batch sample by sample and stacks it, as its users write it.
    tf.data-repeat (given `repeat`, fit's training data) batches each reshuffled pass and repeats the passes
    without end, so that fit, told the steps per epoch, keeps one iterator for the whole fit and each epoch is
    one pass; its validation and test data are plain tf.data."""
    if config.input_pipeline == "numpy":
        return {"x": x, "y": y, "batch_size": config.batch_size}
    if config.input_pipeline == "device":
        return {"x": keras.ops.convert_to_tensor(x), "y": keras.ops.convert_to_tensor(y), "batch_size": config.batch_size}
    if config.input_pipeline == "torch.utils.data":
        import torch

        dataset = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
        generator = None if shuffle_seed is None else torch.Generator().manual_seed(shuffle_seed)
        return {"x": torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, shuffle=generator is not None,
                                                 generator=generator)}
    tf = import_tensorflow()
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(y), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(config.batch_size)
    if repeat and config.input_pipeline == "tf.data-repeat":
        dataset = dataset.repeat()  # after shuffle and batch: each pass reshuffled, batched apart from the next
    return {"x": dataset.prefetch(tf.data.AUTOTUNE)}


def set_random_seed(seed: int, backend: str, seed_tensorflow: bool) -> None:
    """What `keras.utils.set_random_seed` does (keras/src/utils/rng_utils.py, lines 57-70), except that it
    seeds TensorFlow only when the run uses it: Keras imports TensorFlow whenever it is installed, which
    costs a torch or JAX run over a second and starts TensorFlow beside the training framework."""
    if seed_tensorflow:
        keras.utils.set_random_seed(seed)
        return
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils import rng_utils

    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)  # recreated from the seed
    random.seed(seed)
    np.random.seed(seed)
    for_backend(backend).seed(seed)
