"""The two models, as pure functions returning an uncompiled keras.Sequential.

Import this module only after `backend.pin`: importing Keras fixes the backend for the process.
"""

from __future__ import annotations

import keras

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
            keras.layers.Dense(NUM_CLASSES, activation="softmax"),
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
            keras.layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="ffn",
    )


def build_model(name: str, hidden: tuple[int, ...]) -> keras.Sequential:
    return build_cnn() if name == "cnn" else build_ffn(hidden)
