"""The figures both trainers (Keras's and the native loops) derive from their epoch clocks.

Kept apart from the trainers (trainers/) so that nothing here imports Keras or a framework.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Protocol

from kerasmnist.config import RunConfig
from kerasmnist.child.contention import ContentionMeter
from kerasmnist.child.frameworks import for_backend
from kerasmnist.child.profiling import StepProfiler
from kerasmnist.records import TimeToAccuracy


class EpochObserver(Protocol):
    """A hook for research scripts (reports/tf-two-speeds/measure.py): told when each epoch's timed span is about
    to start and has just stopped, for the Keras trainer and the native loops alike. Both calls fall outside the
    span, so what an observer does is not counted in the epoch's time. kerasmnist itself passes none."""

    def before_epoch(self, epoch: int) -> None:
        """Just before epoch `epoch` (from 0) starts its clock, the device already synchronised."""

    def after_epoch(self, epoch_seconds: float) -> None:
        """Just after the epoch's clock stopped, with the seconds it recorded."""


class EpochTimer:
    """Wall time of each epoch's training steps, with the profiler and the contention meter running
    over exactly the same spans. The caller synchronises the device before start() and stop().
    `observer` (None in every kerasmnist run) is called outside each span: see EpochObserver."""

    def __init__(self, profile: bool, epochs: int, observer: EpochObserver | None = None) -> None:
        self.profiler = StepProfiler(profile, epochs)
        self.contention = ContentionMeter()
        self.observer = observer
        self.epoch_seconds: list[float] = []
        self._started = 0.0

    def start(self, epoch: int) -> None:
        if self.observer is not None:
            self.observer.before_epoch(epoch)
        self.contention.start()
        self.profiler.start(epoch)
        self._started = time.perf_counter()

    def stop(self) -> None:
        self.epoch_seconds.append(time.perf_counter() - self._started)
        self.profiler.stop()
        self.contention.stop()
        if self.observer is not None:
            self.observer.after_epoch(self.epoch_seconds[-1])


def resolve_jit_compile(config: RunConfig) -> bool:
    """--jit-compile, where "auto" is what Keras's "auto" would choose if the pinned device were the only one
    (`Framework.jit_compile_default`)."""
    if config.jit_compile != "auto":
        return config.jit_compile == "true"
    return for_backend(config.backend).jit_compile_default(config.device, config.data_parallel)


def time_to_accuracy(val_accuracy: list[float], epoch_seconds: list[float], target: float) -> TimeToAccuracy:
    """Training seconds (first epoch included, validation excluded) until validation accuracy first
    reaches `target`. Checked at epoch ends only, as MLPerf does for small data sets: the figure's
    resolution is one epoch, which `resolution` says; None when it never did."""
    for epoch, accuracy in enumerate(val_accuracy, start=1):
        if accuracy >= target:
            return TimeToAccuracy(target, epoch, sum(epoch_seconds[:epoch]), "epoch ends")
    return TimeToAccuracy(target, None, None, "epoch ends")


def epoch_cv(epoch_seconds: list[float]) -> float | None:
    """Coefficient of variation of the steady epochs (epochs 2 on): how steady the run itself was."""
    steady = epoch_seconds[1:]
    if len(steady) < 2:
        return None
    return statistics.stdev(steady) / statistics.fmean(steady)


def inference_figures(warmup_seconds: float | None, seconds: list[float], images: int, batch_size: int
                      ) -> dict[str, Any]:
    """model.predict's figures from its timed passes over the test set; none for a loop that does not time them."""
    median = statistics.median(seconds) if seconds else None
    return {"inference_seconds": seconds or None, "inference_warmup_seconds": warmup_seconds,
            "inference_batch_size": batch_size if seconds else None,
            "inference_samples_per_second": images / median if median else None}


def timing_figures(config: RunConfig, timer: EpochTimer, train_size: int, flops: Any,
                   val_accuracy: list[float]) -> dict[str, Any]:
    """The figures derived from the epoch clock, the same for Keras and native runs. `flops` is the model's
    models.flops.FlopCount: no GFLOP/s where it is unknown."""
    epoch_seconds = timer.epoch_seconds
    steady = statistics.median(epoch_seconds[1:]) if len(epoch_seconds) > 1 else None
    samples_per_second = train_size / steady if steady else None
    return {
        "epoch_seconds": epoch_seconds,
        "first_epoch_seconds": epoch_seconds[0],
        "steady_epoch_seconds": steady,
        "samples_per_second": samples_per_second,
        "training_flops_per_sample": flops.per_sample,
        "flops_unknown_layers": list(flops.unknown_layers),
        "achieved_gflops_per_second": flops.per_sample * samples_per_second / 1e9
        if samples_per_second and flops.per_sample else None,
        "time_to_accuracy": time_to_accuracy(val_accuracy, epoch_seconds, config.resolved_target_accuracy),
        "contention": timer.contention.summary(epoch_cv(epoch_seconds)),
        "profile": timer.profiler.summary(),
    }
