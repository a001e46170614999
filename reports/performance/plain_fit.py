"""A plain keras-io style training script, the baseline `harness_overhead.py` sets `kerasmnist train` against.

Same data (the first N MNIST training images, scaled to [0, 1]), the same models, Adam, the same batch size
and epochs; no kerasmnist: Keras is imported after KERAS_BACKEND is set, as a user's script would, and an
epoch is timed from on_epoch_begin to on_epoch_end with time.perf_counter(), no validation.

    KERAS_BACKEND=torch python reports/performance/plain_fit.py --model cnn --data-dir ../shared/data/mnist
"""

import argparse
import gzip
import json
import statistics
import time
from pathlib import Path

import numpy as np

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--model", choices=["cnn", "ffn"], default="cnn")
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--batch-size", type=int, default=128)
parser.add_argument("--limit-train", type=int, default=8192)
parser.add_argument("--data-dir", required=True)
args = parser.parse_args()

import keras  # noqa: E402  (after the arguments: --help needs no framework)


def idx_images(path: Path) -> np.ndarray:
    with gzip.open(path) as handle:
        data = handle.read()
    return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 28, 28, 1)


def idx_labels(path: Path) -> np.ndarray:
    with gzip.open(path) as handle:
        return np.frombuffer(handle.read(), np.uint8, offset=8)


folder = Path(args.data_dir)
x = idx_images(folder / "train-images-idx3-ubyte.gz")[: args.limit_train].astype("float32") / 255
y = idx_labels(folder / "train-labels-idx1-ubyte.gz")[: args.limit_train].astype("int64")

keras.utils.set_random_seed(0)
if args.model == "cnn":  # https://keras.io/examples/vision/mnist_convnet/
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(10, activation="softmax"),
    ])
else:
    model = keras.Sequential([keras.Input(shape=(28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10, activation="softmax")])
model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])


class EpochTimes(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)


times = EpochTimes()
model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, verbose=0, callbacks=[times])
print(json.dumps({"epoch_seconds": times.seconds, "steady_epoch_seconds": statistics.median(times.seconds[1:])}))
