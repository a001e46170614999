"""The two seed models, cnn and ffn, as pure functions returning an uncompiled keras.Sequential.

Both take their input shape and class count from the data (MNIST's by default), so they train on
CIFAR-shaped data too. Import this module only after `backend.pin`: importing Keras fixes the backend.
"""

from __future__ import annotations

import keras
import numpy as np

MNIST_SHAPE = (28, 28, 1)
MNIST_CLASSES = 10


def build_cnn(input_shape: tuple[int, ...] = MNIST_SHAPE, num_classes: int = MNIST_CLASSES,
              data_format: str = "channels_last") -> keras.Sequential:
    """The keras-io MNIST convnet (34,826 parameters on MNIST); about 99% test accuracy on full MNIST.

    channels_first takes (C, H, W) images: the same network in the memory layout torch's
    convolutions use natively, which spares Keras's torch backend a transpose around each of them.
    """
    return keras.Sequential(
        [
            keras.Input(shape=image_shape(input_shape, data_format)),
            keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu", data_format=data_format),
            keras.layers.MaxPooling2D(pool_size=(2, 2), data_format=data_format),
            keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu", data_format=data_format),
            keras.layers.MaxPooling2D(pool_size=(2, 2), data_format=data_format),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            output_layer(num_classes),
        ],
        name="cnn",
    )


def build_ffn(input_shape: tuple[int, ...] = MNIST_SHAPE, num_classes: int = MNIST_CLASSES,
              hidden: tuple[int, ...] = (128,)) -> keras.Sequential:
    """Flatten, one ReLU Dense layer per hidden size, then a softmax over the classes."""
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            keras.layers.Flatten(),
            *(keras.layers.Dense(units, activation="relu") for units in hidden),
            output_layer(num_classes),
        ],
        name="ffn",
    )


def output_layer(num_classes: int) -> keras.layers.Layer:
    # float32 even under a mixed-precision policy: a float16 softmax can round probabilities to 0.
    return keras.layers.Dense(num_classes, activation="softmax", dtype="float32")


def image_shape(input_shape: tuple[int, ...], data_format: str) -> tuple[int, ...]:
    """An (H, W, C) shape in `data_format`'s layout."""
    return tuple(input_shape) if data_format == "channels_last" else (input_shape[-1], *input_shape[:-1])


def images_in(x: np.ndarray, data_format: str) -> np.ndarray:
    """Images as the data module gives them (N, H, W, C), in `data_format`'s layout."""
    return x if data_format == "channels_last" else np.ascontiguousarray(np.moveaxis(x, -1, 1))
