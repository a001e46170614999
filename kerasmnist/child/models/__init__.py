"""The models: one entry point from a model spec (a built-in name, or a user's PATH.py:FUNCTION or
MODULE:FUNCTION) to an uncompiled keras.Model and its identity.

    builtin.py   cnn and ffn, the seed models
    zoo.py       resnet, lstm, vit: the layer families where backends differ (BatchNorm, LSTM, attention)
    flops.py     training FLOPs per sample per layer family, or unknown

Import this package only after `backend.pin`: it imports Keras, which fixes the backend for the process.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

import keras
import numpy as np

from kerasmnist.config import RunConfig
from kerasmnist.errors import UserCodeError
from kerasmnist.records import ModelIdentity
from kerasmnist.child.models import builtin, zoo
from kerasmnist.child.models.builtin import images_in
from kerasmnist.child.models.flops import count_training_flops
from kerasmnist.references import Reference

__all__ = ["build", "count_training_flops", "images_in"]

BUILDERS = {"cnn": builtin.build_cnn, "ffn": builtin.build_ffn, **zoo.BUILDERS}


def build(config: RunConfig, input_shape: tuple[int, ...], num_classes: int,
          sample: np.ndarray | None = None) -> tuple[keras.Model, ModelIdentity]:
    """The run's model for data of `input_shape` (H, W, C) in `num_classes` classes, and its identity.

    A user's model is called once on `sample` (two images) first: a model that does not take the data, or
    gives what the loss cannot use, is refused with one line before any training.
    """
    arguments = {"input_shape": tuple(input_shape), "num_classes": num_classes, **config.model_args}
    if config.model in BUILDERS:
        extra = {"cnn": {"data_format": config.data_format}, "ffn": {"hidden": config.hidden}}.get(config.model, {})
        model = BUILDERS[config.model](**arguments, **extra)
        identity = {"reference": config.model, "kind": "builtin", "function": BUILDERS[config.model].__name__}
    else:
        reference = Reference(config.model, "model")
        loaded_before = set(sys.modules)
        model = reference.call(**arguments)
        identity = reference.identity()
        _check(model, reference, config, num_classes, sample)
        identity["helpers"] = reference.helpers(loaded_before)  # the user's modules it ran: an edit is a new model
    return model, ModelIdentity.from_json(identity | {"arguments": dict(sorted(config.model_args.items())),
                                                      "parameters": model.count_params(), "layers": layer_counts(model)})


def layer_counts(model: keras.Model) -> dict[str, int]:
    """How many of each layer class the model is made of (its own layers, not theirs)."""
    return dict(sorted(Counter(type(layer).__name__ for layer in model.layers).items()))


def _check(model: Any, reference: Reference, config: RunConfig, num_classes: int, sample: np.ndarray) -> None:
    where = f"--model {reference.text}"
    if not isinstance(model, keras.Model):
        raise UserCodeError(f"{where}: {reference.function} returned {type(model).__name__}, not a keras.Model")
    try:
        output = keras.ops.convert_to_numpy(model(sample, training=False))
    except Exception as error:
        raise UserCodeError(f"{where}: the model does not accept the data's input shape {sample.shape[1:]}: "
                            f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from None
    if output.shape != (len(sample), num_classes):
        raise UserCodeError(f"{where}: the model's output has shape {output.shape} for {len(sample)} images; "
                            f"expected ({len(sample)}, {num_classes}), one score per class")
    if not config.from_logits and not (np.all(output >= -1e-6) and np.allclose(output.sum(axis=1), 1, atol=1e-3)):
        raise UserCodeError(f"{where}: the model's output rows are not probability distributions (they sum to "
                            f"{np.round(output.sum(axis=1), 3).tolist()}); end it with a softmax, or pass "
                            "--from-logits if its last layer gives logits")
