"""Per-thread CPU time in every epoch of one kerasmnist training run (issue 19: two CPU speeds).

Runs `kerasmnist train` in this process (kerasmnist.run.run_and_record: the same pinning, data, model,
trainer and record as the command) with the epoch timer wrapped so that, at each epoch's start and
stop, it also reads every thread of this process: /proc/self/task/TID/stat (utime + stime, minor
faults, the CPU it last ran on), /proc/self/task/TID/status (voluntary and involuntary context
switches) and /proc/self/task/TID/comm (its name), and the machine's busy CPU time from /proc/stat.
The wrapper sits where the record's epoch times are taken (EpochTimer.start/stop, which Keras's
trainer calls from the EpochClock callback's on_epoch_begin and at the end of the training steps, and
the native loops call around their own epochs), so the per-thread figures cover exactly the timed spans,
for the Keras trainer and the native loop alike; the reads themselves fall outside the timed span.

Variants (each a command-line option), to see what the slow speed follows:
  --implementation native     the project's own tf.GradientTape loop, which showed one speed
  --autotune off              tf.data autotuning off for every dataset Keras's trainer builds
  --inter-op N / --intra-op N tf.config.threading before TensorFlow's runtime starts
  --sleep S                   S seconds of sleep after every epoch (outside the timed span): if the
                              toggling follows wall time, it shifts against the epochs
  --input-pipeline, --validation-size, --jit-compile, --steps-per-execution as for kerasmnist train

Writes OUT/epochs.jsonl (one line per epoch: wall seconds, process and machine CPU seconds, and each
thread's deltas), OUT/threads.md (a table per thread name: CPU seconds per epoch, and, when
kerasmnist.report.speeds finds two speeds among the steady epochs, the mean in fast and in slow epochs)
and the run record under OUT/runs/. Example (from the checkout; about 20 s on 2 idle cores):

  PYTHONPATH=$PWD python reports/tf-two-speeds/measure.py --epochs 10 --limit-train 10000 \\
      --data-dir ../shared/data/mnist --out /tmp/tf-speeds/default
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
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
    """Snapshots at each epoch's start and stop, and the difference as one line per epoch."""

    def __init__(self, sleep_after: float) -> None:
        self.sleep_after = sleep_after
        self.epochs: list[dict] = []
        self._before: Snapshot | None = None

    def begin(self) -> None:
        self._before = Snapshot.now()

    def end(self, epoch_seconds: float) -> None:
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
        })
        if self.sleep_after:
            time.sleep(self.sleep_after)


def install_sampler(sampler: EpochSampler) -> None:
    """Wraps the epoch timer both trainers use (import only after pinning: training imports Keras)."""
    from kerasmnist import native, timing, training

    class SampledEpochTimer(timing.EpochTimer):
        def start(self, epoch: int) -> None:
            sampler.begin()
            super().start(epoch)

        def stop(self) -> None:
            super().stop()
            sampler.end(self.epoch_seconds[-1])

    training.EpochTimer = native.EpochTimer = SampledEpochTimer


def turn_autotune_off() -> None:
    """tf.data autotuning off on every dataset that Keras's TensorFlow trainer iterates: the arrays'
    adapter (array_data_adapter.py get_tf_dataset, num_parallel_calls and prefetch at AUTOTUNE) and the
    tf.data adapter (--input-pipeline tf.data)."""
    import tensorflow as tf
    from keras.src.trainers.data_adapters import array_data_adapter, tf_dataset_adapter

    options = tf.data.Options()
    options.autotune.enabled = False
    for adapter in (array_data_adapter.ArrayDataAdapter, tf_dataset_adapter.TFDatasetAdapter):
        original = adapter.get_tf_dataset
        adapter.get_tf_dataset = lambda self, original=original: original(self).with_options(options)


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
    args = parser.parse_args()

    from kerasmnist import backend, run
    from kerasmnist.config import RunConfig

    config = RunConfig(backend="tensorflow", device="cpu", model=args.model, epochs=args.epochs,
                       limit_train=args.limit_train, validation_size=args.validation_size, data_dir=args.data_dir,
                       implementation=args.implementation, input_pipeline=args.input_pipeline,
                       jit_compile=args.jit_compile, steps_per_execution=args.steps_per_execution,
                       fit_steps_per_epoch=args.fit_steps_per_epoch, progress="none")
    # Pinned here first, as run_and_record pins (a second pin of the same backend changes nothing), so that the
    # threading settings come before TensorFlow's runtime starts and the sampler can wrap the trainers.
    backend.pin(config.backend, config.device)
    set_threading(args.inter_op, args.intra_op)
    if args.autotune == "off":
        turn_autotune_off()
    sampler = EpochSampler(args.sleep)
    install_sampler(sampler)
    path, record = run.run_and_record(config, args.out / "runs")

    args.out.mkdir(parents=True, exist_ok=True)
    settings = {key: value for key, value in vars(args).items() if key != "out"}
    with open(args.out / "epochs.jsonl", "w", encoding="utf-8") as lines:
        for epoch in sampler.epochs:
            lines.write(json.dumps({"settings": settings, "record": path.name, **epoch}) + "\n")
    table = threads_table(sampler.epochs)
    (args.out / "threads.md").write_text(f"Settings: {json.dumps(settings)}; record {path.name}.\n\n{table}",
                                         encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
