"""A/B: does jax_default_matmul_precision="float32" change JAX's CPU training speed? (unset vs float32)

Run as 4 pairs in alternating order, one process each, from the checkout:
    for i in 1 2 3 4; do for mode in $([ $((i % 2)) = 1 ] && echo unset float32 || echo float32 unset); do
        python reports/performance/float32-precision-ab.py $mode cnn; done; done > reports/performance/float32-precision-ab.log
"""
import json, sys, time
from kerasmnist.child import backend, data
backend.pin("jax", "cpu", float32_matmul_precision="float32")
import jax
if sys.argv[1] == "unset":
    jax.config.update("jax_default_matmul_precision", None)
import keras
from kerasmnist.child import models
splits = data.load("mnist", sys.argv[3] if len(sys.argv) > 3 else "../shared/data/mnist", 10000, 12800, 0)
x = models.images_in(splits.x_train, "channels_last")
keras.utils.set_random_seed(0)
model = models.build_model(sys.argv[2], (128,), "channels_last")
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
times = []
class T(keras.callbacks.Callback):
    def on_epoch_begin(self, e, logs=None): self.t = time.perf_counter()
    def on_epoch_end(self, e, logs=None): times.append(time.perf_counter() - self.t)
model.fit(x, splits.y_train, batch_size=128, epochs=3, verbose=0, callbacks=[T()])
print(json.dumps({"mode": sys.argv[1], "model": sys.argv[2], "steady": min(times[1:]), "precision": str(jax.config.jax_default_matmul_precision)}))
