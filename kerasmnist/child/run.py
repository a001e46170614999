"""One run from start to finish: pin, load the data, train, and write the record."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from kerasmnist import environment, records
from kerasmnist.child import backend, data
from kerasmnist.child.frameworks import for_backend
from kerasmnist.child.timing import EpochObserver
from kerasmnist.config import BUSY_SHARE, HOST_PIPELINES, RunConfig
from kerasmnist.errors import BackendUnavailable, ConfigError, RunFailed, UserCodeError


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _check_batches_split(config: RunConfig, devices: int, splits: data.Splits) -> None:
    """Keras's JAX DataParallel shards every batch evenly over the devices, the last, partial batch
    included, and fails on one that does not split (IndivisibleError) only when it gets there: after a
    whole training epoch, or at validation or test time. Refused before training instead."""
    for name, size in (("training", len(splits.y_train)), ("validation", len(splits.y_val)),
                       ("test", len(splits.y_test))):
        last = size % config.batch_size
        if last % devices:
            raise ConfigError(
                f"--data-parallel splits every batch over {devices} devices, but the last {name} batch has "
                f"{last} images ({size:,} images in batches of {config.batch_size}); choose --batch-size, "
                "--limit-train or --validation-size so that each split's last batch divides evenly")


def peak_host_memory_bytes() -> int | None:
    """This process's peak resident memory so far: ru_maxrss is in kibibytes on Linux, bytes on macOS;
    None on Windows, which has no resource module."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def run_and_record(config: RunConfig, out_dir: Path, spawned_at: float | None = None,
                   epoch_observer: EpochObserver | None = None) -> tuple[Path, records.RunRecord]:
    """Runs `config` in this process and writes its record to `out_dir`.

    Bad input (an unusable output folder, a missing framework or device, missing or corrupt
    data) raises before training and writes nothing. A failure during training writes a
    record with status `failed`, the phase that broke and the epochs already timed, and raises RunFailed
    naming the phase; Ctrl-C writes one and re-raises. `spawned_at`
    (time.time()) is when a parent started this process, where the record's timeline begins.
    `epoch_observer` is a research script's hook (timing.EpochObserver, reports/tf-two-speeds/measure.py): told
    just before and just after each epoch's timed span, outside it; `kerasmnist train` passes none.
    """
    # Wall-clock stamps (time.time(), comparable across processes) where each phase ends: with the parent's
    # spawn and exit times they split a cell's wall time (rounds.cell_phases).
    timeline = {"spawned": spawned_at, "started": time.time()}
    records.ensure_writable(out_dir)
    started_at = _now()
    pinned = backend.pin(config.backend, config.device, config.cpu_devices, config.cpu_threads,
                         config.data_parallel, config.float32_matmul_precision, config.xla_flags)
    if config.data_parallel and pinned.device_count < 2:
        raise BackendUnavailable(
            f"--data-parallel needs 2 or more {config.device} devices but {config.backend} sees "
            f"{pinned.device_count}" + (" (--cpu-devices N splits the CPU into N virtual devices)"
                                        if config.device == "cpu" else "")
        )
    if config.data_parallel and config.batch_size % pinned.device_count:
        raise ConfigError(f"--batch-size {config.batch_size} does not split evenly over {pinned.device_count} devices")

    package = HOST_PIPELINES.get(config.input_pipeline)
    if package and importlib.util.find_spec(package) is None:
        raise BackendUnavailable(f"--input-pipeline {config.input_pipeline} needs {package}, which is not installed "
                                 "here; install it, or use --input-pipeline numpy or device")

    timeline["pinned"] = time.time()
    load_started = time.perf_counter()
    splits = data.load(config.dataset, config.data_dir, config.validation_size, config.limit_train, config.seed,
                       config.limit_test)
    load_data_seconds = time.perf_counter() - load_started
    if config.data_parallel and for_backend(config.backend).data_parallel_splits_every_batch:
        _check_batches_split(config, pinned.device_count, splits)
    steps = config.batches_per_epoch(len(splits.y_train))
    if config.input_pipeline == "tf.data-repeat" and steps % config.steps_per_execution:
        # Keras takes steps_per_execution batches per call from the endless data: the epoch would run past its pass
        raise ConfigError(f"--input-pipeline tf.data-repeat needs each epoch's {steps} batches to be whole calls of "
                          f"--steps-per-execution {config.steps_per_execution}, so that an epoch is one pass over "
                          f"the data; choose a count that divides {steps}, or --input-pipeline tf.data")
    timeline["data_loaded"] = time.time()

    # These import Keras and the framework, which is safe only now that the backend is pinned.
    from kerasmnist.child import trainers

    trainer = trainers.pick(config)

    facts = environment.collect() | {"backend": for_backend(config.backend).facts()}
    record = records.RunRecord.start(config.to_dict(), facts, started_at, splits.provenance, load_data_seconds)
    if config.implementation == "native" and (splits.input_shape, splits.num_classes) != ((28, 28, 1), 10):
        raise ConfigError(f"--implementation native is written for 28x28 greyscale images in 10 classes (got "
                          f"{splits.input_shape} in {splits.num_classes} classes); use --implementation keras")
    timeline["described"] = time.time()
    try:
        result = trainers.train_and_evaluate(trainer, config, splits, pinned, epoch_observer)
    except UserCodeError:  # a user's model refused before its first step: nothing was run, nothing is written
        raise
    except KeyboardInterrupt as stop:
        records.write(record.failed(f"interrupted ({stop or 'KeyboardInterrupt'})", _now()), out_dir)
        raise
    except Exception as error:
        # The skeleton says which phase broke (trainers.PhaseFailed, the error itself its cause), and what it had
        # timed before; anything else broke in training.
        failed = error if isinstance(error, trainers.PhaseFailed) else None
        cause = error.__cause__ if failed and error.__cause__ else error
        phase = failed.phase if failed else "training"
        path = records.write(record.failed("".join(traceback.format_exception_only(cause)).strip(), _now(),
                                           "".join(traceback.format_exception(cause)), phase,
                                           failed.partial if failed else None), out_dir)
        raise RunFailed(f"{phase} failed: {str(cause).splitlines()[0] if str(cause) else type(cause).__name__} "
                        f"(record: {path})") from cause
    timeline["trained"] = time.time()
    record = record.finished(dataclasses.replace(result, peak_host_memory_bytes=peak_host_memory_bytes(),
                                                 timeline=records.Timeline(**timeline)), _now())
    return records.write(record, out_dir), record


def summary(record: records.RunRecord, path: Path) -> str:
    """What `kerasmnist train` prints when its run is recorded."""
    def seconds(value: float | None) -> str:
        return "n/a (needs 2 or more epochs)" if value is None else f"{value:.2f} s"

    rate, reached = record.samples_per_second, record.time_to_accuracy
    target_epochs = reached.epochs
    return "\n".join([
        f"backend {record.backend}, device {record.device} -> ran on {record.resolved_device}",
        f"model {record.model} ({record.parameters:,} parameters), dataset {record.dataset}, "
        f"{record.data.train_size:,} training images",
        f"test accuracy {record.test_accuracy:.4f}, test loss {record.test_loss:.4f}",
        f"first epoch {seconds(record.first_epoch_seconds)}, steady epoch {seconds(record.steady_epoch_seconds)}, "
        f"{'n/a' if rate is None else f'{rate:,.0f}'} samples/s",
        "inference " + (f"{record.inference_samples_per_second:,.0f} samples/s (model.predict, batch "
                         f"{record.inference_batch_size})" if record.inference_samples_per_second else "not timed"),
        f"time to {reached.target:.0%} validation accuracy: "
        + (f"{reached.seconds:.1f} s ({target_epochs} epoch{'s' if target_epochs != 1 else ''}, "
           "checked at epoch ends)"
           if reached.seconds is not None else "not reached"),
        *_contention_note(record.contention),
        f"record: {path}",
    ])


def _contention_note(contention: dict | None) -> list[str]:
    """A line when other processes took more than BUSY_SHARE of the CPU time while the epochs ran (the report
    calls such a row unstable); none otherwise, or where it was not measured."""
    if not contention or contention.get("other_cpu_seconds") is None or not contention.get("wall_seconds"):
        return []
    share = contention["other_cpu_seconds"] / (contention["wall_seconds"] * (contention.get("logical_cores") or 1))
    if share <= BUSY_SHARE:
        return []
    return [f"note: other processes took {share:.0%} of the CPU time while it trained (more than {BUSY_SHARE:.0%}: "
            "its times may be slowed by them; the report marks such a row unstable)"]
