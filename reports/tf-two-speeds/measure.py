"""Per-thread CPU time in every epoch of one kerasmnist training run (issue 19: two CPU speeds).

Runs `kerasmnist train` in this process (kerasmnist.child.run.run_and_record: the same pinning, data, model,
trainer and record as the command) with an epoch observer (run_and_record's `epoch_observer` hook,
kerasmnist.child.timing.EpochObserver) that, just before each epoch's timed span starts and just after it
stops, reads every thread of this process: /proc/self/task/TID/stat (utime + stime, minor
faults, the CPU it last ran on), /proc/self/task/TID/status (voluntary and involuntary context
switches) and /proc/self/task/TID/comm (its name), and the machine's busy CPU time from /proc/stat.
The hook is called where the record's epoch times are taken (the epoch timer's start and stop, for the
Keras trainer and the native loop alike), so the per-thread figures cover exactly the timed spans; the reads
themselves fall outside them.

Variants (each a command-line option), to see what the slow speed follows:
  --implementation native     the project's own tf.GradientTape loop, which showed one speed
  --autotune off              tf.data autotuning off for every dataset Keras's trainer builds
  --inter-op N / --intra-op N tf.config.threading before TensorFlow's runtime starts
  --sleep S                   S seconds of sleep after every epoch (outside the timed span): if the
                              toggling follows wall time, it shifts against the epochs
  --feed graph|python-tf.data|python-numpy
                              how Keras's train function gets its batch: graph (Keras's own way: the tf.data
                              iterator read inside the compiled function, whose result comes back as a
                              tf.experimental.Optional); python-tf.data (the same tf.data pipeline read in
                              Python, each batch passed to the compiled step); python-numpy (no tf.data: the
                              adapter's NumPy batches passed to the compiled step)
  --keep-iterators             every tf.data iterator Keras makes kept alive: none is destroyed while training
  --gc off                     Python's cyclic garbage collector disabled for the run
  --input-pipeline, --validation-size, --jit-compile, --steps-per-execution as for kerasmnist train

--autotune off, --feed, --keep-iterators and the step clock below are experiments on Keras, not on kerasmnist:
they replace methods of Keras's own classes (marked "Experiment on Keras" below), as Keras offers no hook for
them; kerasmnist's code is not patched.

Every call of Keras's train function (one batch each with steps_per_execution=1) is timed too, so that
each epoch's line says whether a slow epoch has uniformly slower steps, a few long ones, or time before its first
step or after its last; when an epoch's first step has not begun 0.25 s into it, every Python thread's stack is
taken then (OUT/stalls.json).

Writes OUT/epochs.jsonl (one line per epoch: wall seconds, process and machine CPU seconds, each
thread's deltas, and the step times' summary), OUT/threads.md (a table per thread name: CPU seconds per epoch, and, when
kerasmnist.report.speeds finds two speeds among the steady epochs, the mean in fast and in slow epochs)
and the run record under OUT/runs/. Example (from the checkout, kerasmnist installed; about 20 s on 2 idle cores):

  python reports/tf-two-speeds/measure.py --epochs 10 --limit-train 10000 \\
      --data-dir ../shared/data/mnist --out /tmp/tf-speeds/default
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# /proc/PID/task/TID/stat fields (man 5 proc), numbered from 1; the split below starts at field 3.
MINFLT, UTIME, STIME, PROCESSOR = 10, 14, 15, 39


@dataclass(frozen=True)
class ThreadSample:
    name: str
    cpu_seconds: float  # utime + stime
    minor_faults: int
    voluntary_switches: int
    involuntary_switches: int
    last_cpu: int


def read_threads() -> dict[int, ThreadSample]:
    """Every live thread of this process; a thread that ends while it is read is left out."""
    threads = {}
    for tid in os.listdir("/proc/self/task"):
        folder = Path("/proc/self/task") / tid
        try:
            stat, comm, status = ((folder / name).read_text() for name in ("stat", "comm", "status"))
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # the name may hold spaces: split after it
        field = lambda number: int(fields[number - 3])  # noqa: E731
        counters = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        threads[int(tid)] = ThreadSample(comm.strip(), (field(UTIME) + field(STIME)) / CLOCK_TICKS, field(MINFLT),
                                         int(counters["voluntary_ctxt_switches"]),
                                         int(counters["nonvoluntary_ctxt_switches"]), field(PROCESSOR))
    return threads


def machine_busy_seconds() -> float:
    """All CPUs' non-idle time since boot (the first line of /proc/stat, less idle and iowait)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLOCK_TICKS  # user..steal; guest is counted in user


@dataclass
class Snapshot:
    wall: float
    process_cpu: float
    machine_busy: float
    threads: dict[int, ThreadSample]

    @classmethod
    def now(cls) -> Snapshot:
        times = os.times()
        return cls(time.perf_counter(), times.user + times.system, machine_busy_seconds(), read_threads())


class EpochSampler:
    """Snapshots at each epoch's start and stop, and the difference as one line per epoch: a
    kerasmnist.child.timing.EpochObserver, handed to run_and_record."""

    def __init__(self, sleep_after: float, step_clock: StepClock) -> None:
        self.sleep_after = sleep_after
        self.step_clock = step_clock
        self.epochs: list[dict] = []
        self._before: Snapshot | None = None

    def before_epoch(self, epoch: int) -> None:
        self.step_clock.take()  # validation and anything else since the last epoch
        self._before = Snapshot.now()
        self.step_clock.arm(self._before.wall)

    def after_epoch(self, epoch_seconds: float) -> None:
        before, after = self._before, Snapshot.now()
        threads = {}
        for tid, now in after.threads.items():
            then = before.threads.get(tid)  # None: the thread started during the epoch
            threads[tid] = {
                "name": "main thread" if tid == os.getpid() else now.name, "new": then is None,
                "last_cpu": now.last_cpu,
                "cpu_seconds": round(now.cpu_seconds - (then.cpu_seconds if then else 0.0), 3),
                "minor_faults": now.minor_faults - (then.minor_faults if then else 0),
                "voluntary_switches": now.voluntary_switches - (then.voluntary_switches if then else 0),
                "involuntary_switches": now.involuntary_switches - (then.involuntary_switches if then else 0),
            }
        own = after.process_cpu - before.process_cpu
        in_threads = sum(t["cpu_seconds"] for t in threads.values())
        self.epochs.append({
            "epoch": len(self.epochs) + 1, "epoch_seconds": epoch_seconds,
            "sampled_wall_seconds": after.wall - before.wall, "process_cpu_seconds": round(own, 3),
            "other_cpu_seconds": round(after.machine_busy - before.machine_busy - own, 3),
            # Threads that ended before the epoch's end took their last CPU time with them: the process total keeps it.
            "ended_threads_cpu_seconds": round(max(own - in_threads, 0.0), 3),
            "threads_started": sorted(tid for tid, t in threads.items() if t["new"]),
            "threads_ended": sorted(set(before.threads) - set(after.threads)), "threads": threads,
            "step_times": self.step_clock.take(before.wall, after.wall),
        })
        if self.sleep_after:
            time.sleep(self.sleep_after)


class StepClock:
    """The wall time of every call of Keras's train function, taken per epoch; and, when an epoch's first call
    has not begun `probe_after` seconds into the epoch, every Python thread's stack at that moment."""

    def __init__(self, probe_after: float = 0.25) -> None:
        self.calls: list[tuple[float, float]] = []
        self.probe_after = probe_after
        self.stacks: list[dict] = []
        self._probe: threading.Timer | None = None

    def arm(self, epoch_began: float) -> None:
        """Called at the epoch's start: schedules the stack probe."""
        def probe() -> None:
            if not self.calls:  # the epoch's first step has not begun
                names = {thread.ident: thread.name for thread in threading.enumerate()}
                self.stacks.append({"after_seconds": round(time.perf_counter() - epoch_began, 3), "threads": {
                    names.get(ident, str(ident)): traceback.format_stack(frame)
                    for ident, frame in sys._current_frames().items()}})

        self._probe = threading.Timer(self.probe_after, probe)
        self._probe.start()

    def wrap(self, function):
        def timed(iterator):
            start = time.perf_counter()
            try:
                return function(iterator)
            finally:
                self.calls.append((start, time.perf_counter()))

        timed.timed = True
        return timed

    def take(self, began: float = 0.0, ended: float = 0.0) -> dict | None:
        """The summary of the calls since the last take (None without any: the native loop), in ms; with the
        epoch's bounds (perf_counter), also the seconds before its first call and after its last."""
        if self._probe:
            self._probe.cancel()
        calls, self.calls = self.calls, []
        if not calls:
            return None
        bounds = {"before_first_step_seconds": round(calls[0][0] - began, 3),
                  "after_last_step_seconds": round(ended - calls[-1][1], 3)} if began else {}
        steps = sorted(end - start for start, end in calls)
        median = statistics.median(steps)
        long_steps = [step for step in steps if step > 2 * median]
        quantile = lambda q: steps[min(int(q * len(steps)), len(steps) - 1)] * 1e3  # noqa: E731
        return {"steps": len(steps), "median_ms": round(median * 1e3, 3), "p10_ms": round(quantile(0.1), 3),
                "p90_ms": round(quantile(0.9), 3), "max_ms": round(steps[-1] * 1e3, 3),
                "in_steps_seconds": round(sum(steps), 3),
                "between_steps_seconds": round(sum(b[0] - a[1] for a, b in zip(calls, calls[1:])), 3),
                "steps_over_twice_the_median": len(long_steps),
                "their_excess_seconds": round(sum(step - median for step in long_steps), 3), **bounds}


# Experiments on Keras (not on kerasmnist): each function below replaces a method of one of Keras's own classes
# for the rest of this process; Keras offers no hook for any of them. Written against Keras 3.15
# (keras/src/backend/tensorflow/trainer.py, keras/src/trainers/data_adapters/).


def install_step_clock(clock: StepClock) -> None:
    """Experiment on Keras: wraps the train function Keras's TensorFlow trainer makes (backend/tensorflow/trainer.py,
    make_train_function), which fit calls once per batch."""
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    make = TensorFlowTrainer.make_train_function

    def make_timed(self, force=False):
        make(self, force)
        if not getattr(self.train_function, "timed", False):
            self.train_function = clock.wrap(self.train_function)
        return self.train_function

    TensorFlowTrainer.make_train_function = make_timed


def feed_from_python(source: str) -> None:
    """Experiment on Keras (its private TFEpochIterator._get_iterator replaced): makes Keras's TensorFlow epoch
    iterator hand its train function a Python iterator instead of a tf.data one: the function then calls the
    compiled step on each batch (trainer.py, `function`'s else branch) instead of reading the iterator inside a
    second compiled function that returns an Optional."""
    from keras.src.backend.tensorflow import trainer

    class PythonIterable:
        def __init__(self, epoch_iterator) -> None:
            self.epoch_iterator = epoch_iterator

        def __iter__(self):
            if source == "tf.data":
                return (batch for batch in self.epoch_iterator._distributed_dataset)
            return self.epoch_iterator.data_adapter.get_numpy_iterator()

    trainer.TFEpochIterator._get_iterator = lambda self: PythonIterable(self)


def keep_iterators_alive() -> None:
    """Experiment on Keras (its private TFEpochIterator._get_iterator replaced): keeps every tf.data iterator
    Keras's TensorFlow epoch iterator makes referenced until the process ends, so that none is destroyed (its
    background threads cancelled and joined) during training."""
    from keras.src.backend.tensorflow import trainer

    made = []

    class KeptIterable:
        def __init__(self, dataset) -> None:
            self.dataset = dataset

        def __iter__(self):
            made.append(iter(self.dataset))
            return made[-1]

    trainer.TFEpochIterator._get_iterator = lambda self: KeptIterable(self._distributed_dataset)


def turn_autotune_off() -> None:
    """Experiment on Keras (its data adapters' get_tf_dataset wrapped): tf.data autotuning off on every dataset
    that Keras's TensorFlow trainer iterates: the arrays' adapter (array_data_adapter.py get_tf_dataset,
    num_parallel_calls and prefetch at AUTOTUNE) and the tf.data adapter (--input-pipeline tf.data)."""
    import tensorflow as tf
    from keras.src.trainers.data_adapters import array_data_adapter, tf_dataset_adapter

    options = tf.data.Options()
    options.autotune.enabled = False
    for adapter in (array_data_adapter.ArrayDataAdapter, tf_dataset_adapter.TFDatasetAdapter):
        original = adapter.get_tf_dataset
        adapter.get_tf_dataset = lambda self, original=original: original(self).with_options(options)


# The rest uses kerasmnist's public functions and TensorFlow's public API only.


def set_threading(inter_op: int | None, intra_op: int | None) -> None:
    import tensorflow as tf

    if inter_op is not None:
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    if intra_op is not None:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)


def threads_table(epochs: list[dict]) -> str:
    """Per epoch: wall time, CPU time of the machine's other processes and of this one, thread turnover, and
    CPU seconds by thread name (a pool's threads share one), busiest first; with two speeds among the steady
    epochs, each figure's mean over the fast and over the slow steady epochs beside them."""
    from kerasmnist.report.speeds import detect

    figures = {
        "wall s": [e["epoch_seconds"] for e in epochs],
        "other processes' CPU s": [e["other_cpu_seconds"] for e in epochs],
        "this process's CPU s": [e["process_cpu_seconds"] for e in epochs],
        "CPU s of threads that ended in the epoch": [e["ended_threads_cpu_seconds"] for e in epochs],
        "threads started": [len(e["threads_started"]) for e in epochs],
        "threads ended": [len(e["threads_ended"]) for e in epochs],
    }
    if all(e["step_times"] for e in epochs):
        figures |= {f"steps: {what.replace('_', ' ')}": [e["step_times"][what] for e in epochs]
                    for what in epochs[0]["step_times"]}
    names = {t["name"] for e in epochs for t in e["threads"].values()}
    per_name = {name: [sum(t["cpu_seconds"] for t in e["threads"].values() if t["name"] == name) for e in epochs]
                for name in names}
    figures |= {f"CPU s: {name}": per_name[name] for name in sorted(names, key=lambda n: -sum(per_name[n]))}

    found = detect([e["epoch_seconds"] for e in epochs[1:]])
    groups = []
    if len(found.speeds) == 2:
        cut = (found.speeds[0].median * found.speeds[1].median) ** 0.5  # the geometric midpoint of the two
        groups = [[i for i in range(1, len(epochs)) if (epochs[i]["epoch_seconds"] < cut) == fast] for fast in (1, 0)]
    header = ["", *(f"epoch {e['epoch']}" for e in epochs), *(["fast steady epochs", "slow steady epochs"] * bool(groups))]
    lines = [f"Steady epochs: {found.text()}.", "", "| " + " | ".join(header) + " |",
             "| " + " | ".join("---" for _ in header) + " |"]
    for what, values in figures.items():
        cells = [*values, *(statistics.fmean(values[i] for i in group) for group in groups)]
        lines.append(f"| {what} | " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for epochs.jsonl, threads.md and runs/")
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--limit-train", type=int, default=10_000)
    parser.add_argument("--validation-size", type=int, default=10_000)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--implementation", default="keras", choices=["keras", "native"])
    parser.add_argument("--input-pipeline", default="numpy")
    parser.add_argument("--jit-compile", default="auto")
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--fit-steps-per-epoch", action="store_true",
                        help="tell fit the epoch's step count (one data iterator per epoch instead of two)")
    parser.add_argument("--autotune", default="on", choices=["on", "off"])
    parser.add_argument("--inter-op", type=int, default=None, help="tf.config.threading inter-op threads")
    parser.add_argument("--intra-op", type=int, default=None, help="tf.config.threading intra-op threads")
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds to sleep after each epoch")
    parser.add_argument("--keep-iterators", action="store_true",
                        help="keep every tf.data iterator Keras makes alive: none is destroyed during training")
    parser.add_argument("--gc", default="on", choices=["on", "off"],
                        help="off: Python's cyclic garbage collector disabled for the run (gc.disable)")
    parser.add_argument("--feed", default="graph", choices=["graph", "python-tf.data", "python-numpy"],
                        help="how Keras's train function gets its batches (see above)")
    args = parser.parse_args()
    if args.keep_iterators and args.feed != "graph":  # each replaces the epoch iterator's _get_iterator
        parser.error("--keep-iterators keeps tf.data iterators, which only --feed graph makes")

    from kerasmnist.child import backend, run
    from kerasmnist.config import RunConfig

    config = RunConfig(backend="tensorflow", device="cpu", model=args.model, epochs=args.epochs,
                       limit_train=args.limit_train, validation_size=args.validation_size, data_dir=args.data_dir,
                       implementation=args.implementation, input_pipeline=args.input_pipeline,
                       jit_compile=args.jit_compile, steps_per_execution=args.steps_per_execution,
                       fit_steps_per_epoch=args.fit_steps_per_epoch, progress="none")
    # Pinned here first, as run_and_record pins (a second pin of the same backend changes nothing), so that the
    # threading settings come before TensorFlow's runtime starts and Keras is imported for the experiments on it.
    backend.pin(config.backend, config.device)
    set_threading(args.inter_op, args.intra_op)
    if args.autotune == "off":
        turn_autotune_off()
    if args.feed != "graph":
        feed_from_python(args.feed.removeprefix("python-"))
    if args.keep_iterators:
        keep_iterators_alive()
    if args.gc == "off":
        gc.disable()
    step_clock = StepClock()
    install_step_clock(step_clock)
    sampler = EpochSampler(args.sleep, step_clock)
    path, record = run.run_and_record(config, args.out / "runs", epoch_observer=sampler)

    args.out.mkdir(parents=True, exist_ok=True)
    settings = {key: value for key, value in vars(args).items() if key != "out"}
    with open(args.out / "epochs.jsonl", "w", encoding="utf-8") as lines:
        for epoch in sampler.epochs:
            lines.write(json.dumps({"settings": settings, "record": path.name, **epoch}) + "\n")
    with open(args.out / "stalls.json", "w", encoding="utf-8") as stalls:
        json.dump(step_clock.stacks, stalls, indent=1)
    table = threads_table(sampler.epochs)
    (args.out / "threads.md").write_text(f"Settings: {json.dumps(settings)}; record {path.name}.\n\n{table}",
                                         encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
