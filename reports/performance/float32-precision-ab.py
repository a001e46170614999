"""A/B: does jax_default_matmul_precision="float32" change JAX's CPU training speed? (unset vs float32)

Run as 4 pairs in alternating order, one process each, from the checkout (kerasmnist installed):
    for i in 1 2 3 4; do for mode in $([ $((i % 2)) = 1 ] && echo unset float32 || echo float32 unset); do
        python reports/performance/float32-precision-ab.py $mode cnn; done; done > reports/performance/float32-precision-ab.log
"""
import argparse
import json
import time

from kerasmnist.child import backend, data
from kerasmnist.config import RunConfig

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("mode", choices=["unset", "float32"], help="unset: jax_default_matmul_precision left at None")
parser.add_argument("model", choices=["cnn", "ffn"])
parser.add_argument("data_dir", nargs="?", default="../shared/data/mnist", help="the MNIST files (default %(default)s)")
args = parser.parse_args()

backend.pin("jax", "cpu", float32_matmul_precision="float32")
import jax  # noqa: E402  (after pinning)
if args.mode == "unset":
    jax.config.update("jax_default_matmul_precision", None)
import keras  # noqa: E402
from kerasmnist.child import models  # noqa: E402  (imports Keras)
splits = data.load("mnist", args.data_dir, 10000, 12800, 0)
x = models.images_in(splits.x_train, "channels_last")
keras.utils.set_random_seed(0)
model, _ = models.build(RunConfig(backend="jax", model=args.model), splits.input_shape, splits.num_classes)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
times = []
class T(keras.callbacks.Callback):
    def on_epoch_begin(self, e, logs=None): self.t = time.perf_counter()
    def on_epoch_end(self, e, logs=None): times.append(time.perf_counter() - self.t)
model.fit(x, splits.y_train, batch_size=128, epochs=3, verbose=0, callbacks=[T()])
print(json.dumps({"mode": args.mode, "model": args.model, "steady": min(times[1:]), "precision": str(jax.config.jax_default_matmul_precision)}))
