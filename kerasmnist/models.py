"""The two models, as pure functions returning an uncompiled keras.Sequential.

Import this module only after `backend.pin`: importing Keras fixes the backend for the process.
"""

from __future__ import annotations

import keras
import numpy as np

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


def build_cnn() -> keras.Sequential:
    """The keras-io MNIST convnet (34,826 parameters); about 99% test accuracy on full MNIST."""
    return keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE),
            keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            _output_layer(),
        ],
        name="cnn",
    )


def build_ffn(hidden: tuple[int, ...] = (128,)) -> keras.Sequential:
    """Flatten, one ReLU Dense layer per hidden size, then a softmax over the ten classes."""
    return keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE),
            keras.layers.Flatten(),
            *(keras.layers.Dense(units, activation="relu") for units in hidden),
            _output_layer(),
        ],
        name="ffn",
    )


def _output_layer() -> keras.layers.Layer:
    # float32 even under a mixed-precision policy: a float16 softmax can round probabilities to 0.
    return keras.layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32")


def build_model(name: str, hidden: tuple[int, ...]) -> keras.Sequential:
    return build_cnn() if name == "cnn" else build_ffn(hidden)


def training_flops_per_sample(model: keras.Sequential) -> int:
    """Floating-point operations to train on one image: forward, plus about twice that backward.

    Counts the multiply-adds (2 FLOPs each) of the Conv2D and Dense layers, which dominate; the
    backward pass computes gradients for both inputs and weights, about twice the forward work.
    """
    forward = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            kernel_size = int(np.prod(layer.kernel.shape))
            output_positions = int(np.prod(layer.output.shape[1:-1])) if isinstance(layer, keras.layers.Conv2D) else 1
            forward += 2 * kernel_size * output_positions
    return 3 * forward
