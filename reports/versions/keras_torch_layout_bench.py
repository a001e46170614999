"""Keras's torch CNN step on the CPU, and the pooling and convolution ops alone (forward and backward), in the
environment whose python runs it; with --view-only, Keras 3.15.1's `_transpose_spatial_inputs` replaced by 3.14.1's,
which returns the permuted view instead of a contiguous copy (reports/versions/README.md, "Why Keras 3.15.1 slows the
torch CNN"). Plain Keras and torch: nothing of kerasmnist. Run by keras_torch_layout_bench.sh."""

import argparse
import os
import time

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--view-only", action="store_true", help="patch back Keras 3.14.1's view-only transpose")
arguments = parser.parse_args()
os.environ.setdefault("KERAS_BACKEND", "torch")
import numpy as np  # noqa: E402  (after the backend is chosen)
import torch  # noqa: E402
import keras  # noqa: E402

patch = arguments.view_only
if patch:  # 3.15.1 with the 3.14.1 (view-only) _transpose_spatial_inputs
    from keras.src.backend.torch import nn as knn

    def _tsi(inputs):
        nd = inputs.ndim - 2
        perm = {1: (0, 2, 1), 2: (0, 3, 1, 2), 3: (0, 4, 1, 2, 3)}[nd]
        return torch.permute(inputs, perm)
    knn._transpose_spatial_inputs = _tsi
torch.manual_seed(0); np.random.seed(0)
L = keras.layers
m = keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
    L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2), L.Flatten(), L.Dropout(0.5), L.Dense(10, activation="softmax")])
m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
x = np.random.rand(2560, 28, 28, 1).astype("float32"); y = np.random.randint(0, 10, 2560)
m.fit(x[:384], y[:384], batch_size=128, epochs=1, verbose=0, shuffle=False)  # 3 warm-up steps
t = time.perf_counter(); m.fit(x, y, batch_size=128, epochs=1, verbose=0, shuffle=False); fit_s = time.perf_counter() - t

def fb(fn, *ts, n=20):
    for _ in range(3):
        out = fn(*ts); out.sum().backward()
    t = time.perf_counter()
    for _ in range(n):
        out = fn(*ts); out.sum().backward()
    return (time.perf_counter() - t) / n * 1e3
from keras import ops
x1 = torch.rand(128, 28, 28, 1, requires_grad=True); k1 = torch.rand(3, 3, 1, 32, requires_grad=True)
x2 = torch.rand(128, 13, 13, 32, requires_grad=True); k2 = torch.rand(3, 3, 32, 64, requires_grad=True)
xp = torch.rand(128, 26, 26, 32, requires_grad=True)
c1 = fb(lambda a, b: ops.conv(a, b), x1, k1)
c2 = fb(lambda a, b: ops.conv(a, b), x2, k2)
mp = fb(lambda a: ops.max_pool(a, 2), xp)
print(f"keras={keras.__version__}{'+patch' if patch else ''} torch={torch.__version__} threads={torch.get_num_threads()} "
      f"fit20steps={fit_s:.3f}s ({fit_s/20*1e3:.1f} ms/step) conv1_fb={c1:.2f}ms conv2_fb={c2:.2f}ms maxpool_fb={mp:.2f}ms", flush=True)
