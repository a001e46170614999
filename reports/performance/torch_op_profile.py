"""Where a torch training step goes, Keras's model.fit against the native loop: the aten ops each issues per step.

Both train the same CNN or FFN on the same images, batch 128, tensors on the device once (`--input-pipeline
device`), the CNN in torch's own layout (channels_first) for Keras too: Keras's best plain torch setting.
After a warm-up epoch, torch.profiler records one epoch of each. Per step: how many aten ops each issues,
their self CPU time by op, and the wall time of the profiled epoch (the profiler's own cost included, so
it is larger than an unprofiled epoch; the op counts are exact). Writes torch-op-profile-MODEL.md beside
this file. From the checkout, kerasmnist installed:

    python reports/performance/torch_op_profile.py --model cnn --data-dir ../shared/data/mnist
"""

import argparse
import time
from collections import Counter
from pathlib import Path

from kerasmnist.child import backend, data
from kerasmnist.config import RunConfig

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--model", default="cnn", choices=["cnn", "ffn"])
parser.add_argument("--limit-train", type=int, default=8192)
parser.add_argument("--data-dir", required=True)
parser.add_argument("--top", type=int, default=15)
args = parser.parse_args()

pinned = backend.pin("torch", "cpu")

import numpy as np  # noqa: E402  (after pinning: Keras is imported once, by pin)
import torch  # noqa: E402

from kerasmnist.child import models  # noqa: E402  (these import Keras)
from kerasmnist.child.trainers import keras as keras_trainer, native  # noqa: E402
from kerasmnist.child.trainers.native_torch import TorchLoop  # noqa: E402

shared = dict(backend="torch", model=args.model, input_pipeline="device", limit_train=args.limit_train,
              validation_size=0, epochs=1, progress="none")
keras_config = RunConfig(**shared, data_format="channels_first" if args.model == "cnn" else "channels_last")
native_config = RunConfig(**shared, implementation="native")
splits = data.load("mnist", args.data_dir, 0, args.limit_train, 0)
steps = -(-len(splits.y_train) // keras_config.batch_size)


def keras_epoch():
    model, _ = keras_trainer.build_and_compile(keras_config, False, splits)
    x = models.images_in(splits.x_train, keras_config.data_format)
    inputs = keras_trainer.fit_inputs(keras_config, x, splits.y_train)
    model.fit(**inputs, epochs=1, verbose=0)  # warm-up: builds the train function and the optimizer's state
    return lambda: model.fit(**inputs, epochs=1, verbose=0)


def native_epoch():
    loop = TorchLoop(native_config, splits, pinned, jit_compile=False)
    order = np.random.default_rng(0).permutation(len(splits.y_train))
    native.train_epoch(loop, order, native_config.batch_size)  # warm-up
    return lambda: native.train_epoch(loop, order, native_config.batch_size)


def profiled(run_epoch):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        started = time.perf_counter()
        run_epoch()
        wall = time.perf_counter() - started
    averages = profile.key_averages()
    aten = [event for event in averages if event.key.startswith("aten::")]
    return {"wall_ms": wall / steps * 1e3,
            "ops": sum(event.count for event in aten) / steps,
            "self_us": Counter({event.key: event.self_cpu_time_total / steps for event in aten}),
            "count": Counter({event.key: event.count / steps for event in aten})}


results = {"Keras model.fit": profiled(keras_epoch()), "native loop": profiled(native_epoch())}
lines = [f"# torch ops per training step: Keras against the native loop ({args.model}, CPU)", "",
         f"`python reports/performance/torch_op_profile.py --model {args.model} --limit-train {args.limit_train} "
         f"--data-dir ...`: batch 128, {len(splits.y_train):,} images, device input"
         + (", Keras in channels_first" if args.model == "cnn" else "") + f", one profiled epoch ({steps} steps) after "
         f"a warm-up epoch; torch {torch.__version__}, on {pinned.device}. Wall times include the profiler's cost.", "",
         "| program | aten ops per step | aten self CPU per step | profiled wall per step |", "| --- | --- | --- | --- |"]
for name, result in results.items():
    lines.append(f"| {name} | {result['ops']:.0f} | {sum(result['self_us'].values()) / 1e3:.2f} ms "
                 f"| {result['wall_ms']:.2f} ms |")
keras_ops, native_ops = results["Keras model.fit"], results["native loop"]
lines += ["", f"The {args.top} ops with the largest self CPU time per step in either program (µs per step, calls per step):",
          "", "| op | Keras µs | Keras calls | native µs | native calls |", "| --- | --- | --- | --- | --- |"]
for op, _ in (keras_ops["self_us"] + native_ops["self_us"]).most_common(args.top):
    lines.append(f"| `{op}` | {keras_ops['self_us'][op]:,.0f} | {keras_ops['count'][op]:.0f} "
                 f"| {native_ops['self_us'][op]:,.0f} | {native_ops['count'][op]:.0f} |")
out = Path(__file__).parent / f"torch-op-profile-{args.model}.md"
out.write_text("\n".join(lines) + "\n")
print("\n".join(lines))
