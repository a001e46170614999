"""The two models, as pure functions returning an uncompiled keras.Sequential.

Import this module only after `backend.pin`: importing Keras fixes the backend for the process.
"""

from __future__ import annotations

import keras
import numpy as np

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


def build_cnn(data_format: str = "channels_last") -> keras.Sequential:
    """The keras-io MNIST convnet (34,826 parameters); about 99% test accuracy on full MNIST.

    channels_first takes (1, 28, 28) images: the same network in the memory layout torch's
    convolutions use natively, which spares Keras's torch backend a transpose around each of them.
    """
    return keras.Sequential(
        [
            keras.Input(shape=image_shape(data_format)),
            keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu", data_format=data_format),
            keras.layers.MaxPooling2D(pool_size=(2, 2), data_format=data_format),
            keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu", data_format=data_format),
            keras.layers.MaxPooling2D(pool_size=(2, 2), data_format=data_format),
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


def build_model(name: str, hidden: tuple[int, ...], data_format: str = "channels_last") -> keras.Sequential:
    return build_cnn(data_format) if name == "cnn" else build_ffn(hidden)


def image_shape(data_format: str) -> tuple[int, ...]:
    return INPUT_SHAPE if data_format == "channels_last" else (INPUT_SHAPE[-1], *INPUT_SHAPE[:-1])


def images_in(x: np.ndarray, data_format: str) -> np.ndarray:
    """Images as the data module gives them (N, 28, 28, 1), in `data_format`'s layout."""
    return x if data_format == "channels_last" else np.ascontiguousarray(np.moveaxis(x, -1, 1))


def training_flops_per_sample(model: keras.Sequential) -> int:
    """Floating-point operations to train on one image: forward plus backward.

    Counts the multiply-adds (2 FLOPs each) of the Conv2D and Dense layers, which dominate. Backward,
    each such layer computes its weight gradient (as much work as its forward pass) and, except for
    the first, the gradient w.r.t. its input (as much again): nothing needs the gradient w.r.t. the
    images, so the first weighted layer costs 2x forward and every later one 3x.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            kernel_size = int(np.prod(layer.kernel.shape))
            spatial = layer.output.shape[2:] if getattr(layer, "data_format", None) == "channels_first" \
                else layer.output.shape[1:-1]
            output_positions = int(np.prod(spatial)) if isinstance(layer, keras.layers.Conv2D) else 1
            total += (3 if total else 2) * 2 * kernel_size * output_positions
    return total
