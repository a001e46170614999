"""The models: one entry point from a model spec (a built-in name, or a user's PATH.py:FUNCTION or
MODULE:FUNCTION) to an uncompiled keras.Model and its identity.

    builtin.py   cnn and ffn, the seed models
    flops.py     training FLOPs per sample per layer family, or unknown

Import the submodules only after `backend.pin`: they import Keras, which fixes the backend for the process.
"""

from __future__ import annotations

import keras

from kerasmnist.models import builtin
from kerasmnist.models.builtin import images_in
from kerasmnist.models.flops import training_flops_per_sample

__all__ = ["build_model", "images_in", "training_flops_per_sample"]


def build_model(name: str, hidden: tuple[int, ...], data_format: str = "channels_last",
                input_shape: tuple[int, ...] = builtin.MNIST_SHAPE,
                num_classes: int = builtin.MNIST_CLASSES) -> keras.Model:
    if name == "cnn":
        return builtin.build_cnn(input_shape, num_classes, data_format)
    return builtin.build_ffn(input_shape, num_classes, hidden)
