"""What every trainer is (`Trainer`) and the one skeleton every run goes through (`train_and_evaluate`).

The skeleton alone keeps the clocks: it times the build, hands the epoch timer to the trainer (which starts
and stops it around each epoch's training steps, the device synchronised at both ends), checks where the
trained state lives, times the test evaluation and the inference passes, and builds the TrainingResult from
the same figures for Keras's trainer and the native loops. It knows which phase a run is in (PHASES): a failure
is raised as PhaseFailed, with the phase and the figures timed before it, for the failed record to keep.

Import only after `backend.pin` (it imports Keras).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Protocol

import keras

from kerasmnist.child import models
from kerasmnist.child.backend import Pinned, resolved_device
from kerasmnist.child.data import Splits
from kerasmnist.child.frameworks import for_backend
from kerasmnist.child.timing import EpochObserver, EpochTimer, inference_figures, resolve_jit_compile, timing_figures
from kerasmnist.config import RunConfig
from kerasmnist.errors import UserCodeError
from kerasmnist.records import ModelIdentity, TrainingResult

INFERENCE_PASSES = 3  # timed passes over the test set; their median is the figure
# The phases of a run, in order, as a failed record names them.
PHASES = ("building", "training", "the placement check", "evaluation", "inference timing", "counting FLOPs")


class PhaseFailed(Exception):
    """A run broke in `phase` (one of PHASES); the error it raised is the __cause__. `partial` holds the figures
    timed before it (TrainingResult field names: build_seconds, epoch_seconds, history, ...)."""

    def __init__(self, phase: str, partial: dict[str, Any]) -> None:
        super().__init__(f"{phase} failed")
        self.phase, self.partial = phase, partial


@dataclass(frozen=True)
class Fitted:
    """What training left beside the epoch timer: the per-epoch curves (loss, accuracy, and val_loss and
    val_accuracy when there is validation data), and each epoch's validation pass in seconds."""

    history: dict[str, list[float]]
    validation_seconds: list[float]


@dataclass(frozen=True)
class Evaluation:
    """The test set's loss and accuracy, and every other metric the model's evaluation reported, by name."""

    loss: float
    accuracy: float
    metrics: dict[str, Any]


@dataclass(frozen=True)
class Counted:
    """The Keras model whose parameters and training FLOPs the record gives (for a native loop, the same
    network built in Keras), its identity, and the shape of one of its inputs."""

    model: keras.Model
    identity: ModelIdentity
    input_shape: tuple[int, ...]


class Trainer(Protocol):
    """One way to train a run: Keras's model.fit (keras.py) or a framework's own loop (native.py). Made from
    (config, splits, pinned, jit_compile) untimed; `train_and_evaluate` calls the rest in this order."""

    @property
    def jit_compile(self) -> bool:
        """Whether the training steps were compiled (XLA, or torch.compile), as the record says."""
        ...

    def build(self) -> None:
        """Builds the model and its optimizer: timed as build_seconds."""

    def fit(self, timer: EpochTimer) -> Fitted:
        """Trains every epoch, `timer` started and stopped around each epoch's training steps with the
        device synchronised before both; validation runs after them, timed apart."""
        ...

    def so_far(self) -> Fitted:
        """The curves and validation seconds of the epochs fit finished, also when it broke part-way."""
        ...

    def state(self) -> Sequence[object]:
        """The trained weights and the optimizer's state, as the framework's tensors: where they live is checked."""
        ...

    def evaluate(self) -> Evaluation:
        """Loss, accuracy and any other metric on the test set: timed as evaluate_seconds."""
        ...

    def inference_pass(self, batch_size: int) -> Callable[[], object] | None:
        """One prediction pass over the test set that returns only once the device is done; None for a
        trainer that times no inference."""
        ...

    def counted(self) -> Counted:
        """The Keras model the record counts, after training."""
        ...


TrainerType = Callable[[RunConfig, Splits, Pinned, bool], Trainer]


def train_and_evaluate(trainer_type: TrainerType, config: RunConfig, splits: Splits, pinned: Pinned,
                       epoch_observer: EpochObserver | None = None) -> TrainingResult:
    """Trains `config.model` on `splits` with a `trainer_type` and returns the figures for the run record.
    `epoch_observer` (a research script's hook, timing.EpochObserver) is told of each epoch's timed span.
    A failure after the trainer is made raises PhaseFailed (a user's model refused before training, UserCodeError,
    is raised as it is)."""
    jit_compile = resolve_jit_compile(config)
    trainer = trainer_type(config, splits, pinned, jit_compile)
    timer = EpochTimer(config.profile, config.epochs, epoch_observer)
    timed: dict[str, Any] = {}  # the figures timed so far, by TrainingResult field name
    phase = PHASES[0]
    try:
        build_started = time.perf_counter()
        trainer.build()
        timed["build_seconds"] = time.perf_counter() - build_started

        phase = "training"
        fitted = trainer.fit(timer)

        # Optimizer state only exists after the first step: checking it catches a backend that placed the
        # weights right but the Adam moments elsewhere.
        phase = "the placement check"
        device = resolved_device(pinned, [SimpleNamespace(value=tensor) for tensor in trainer.state()])

        phase = "evaluation"
        evaluate_started = time.perf_counter()
        evaluation = trainer.evaluate()
        timed |= {"evaluate_seconds": time.perf_counter() - evaluate_started, "test_loss": float(evaluation.loss),
                  "test_accuracy": float(evaluation.accuracy), "test_metrics": evaluation.metrics or None}

        phase = "inference timing"
        inference_batch_size = config.inference_batch_size or config.batch_size
        warmup_seconds, inference_seconds = time_inference(trainer.inference_pass(inference_batch_size))

        phase = "counting FLOPs"
        counted = trainer.counted()
        flops = models.count_training_flops(counted.model, counted.input_shape)
    except UserCodeError:
        raise
    except Exception as error:
        raise PhaseFailed(phase, timed | _epochs_so_far(timer, trainer)) from error

    return TrainingResult(
        resolved_device=device,
        device_count=pinned.device_count if config.data_parallel else 1,
        jit_compile=trainer.jit_compile,
        parameters=counted.model.count_params(),
        **timing_figures(config, timer, len(splits.y_train), flops, fitted.history.get("val_accuracy", [])),
        validation_seconds=fitted.validation_seconds,
        history=fitted.history,
        peak_device_memory_bytes=for_backend(config.backend).peak_memory_bytes(config.device),
        model_identity=counted.identity,
        **inference_figures(warmup_seconds, inference_seconds, len(splits.y_test), inference_batch_size),
        **timed,  # the build's and the evaluation's figures
    )


def _epochs_so_far(timer: EpochTimer, trainer: Trainer) -> dict[str, Any]:
    """The epochs a run that broke had timed, and their curves: a failed record keeps them."""
    if not timer.epoch_seconds:
        return {}
    try:
        fitted = trainer.so_far()
    except Exception:  # what broke the run may have left the trainer without it
        fitted = Fitted({}, [])
    epoch_seconds = list(timer.epoch_seconds)
    return {"epoch_seconds": epoch_seconds, "first_epoch_seconds": epoch_seconds[0],
            "validation_seconds": fitted.validation_seconds, "history": fitted.history or None}


def time_inference(inference_pass: Callable[[], object] | None) -> tuple[float | None, list[float]]:
    """Seconds of the warm-up pass (it traces and compiles prediction), and of each timed pass after it;
    (None, []) with no pass to time."""
    if inference_pass is None:
        return None, []
    started = time.perf_counter()
    inference_pass()
    warmup = time.perf_counter() - started
    seconds = []
    for _ in range(INFERENCE_PASSES):
        started = time.perf_counter()
        inference_pass()
        seconds.append(time.perf_counter() - started)
    return warmup, seconds
