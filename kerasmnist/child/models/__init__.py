"""The models: one entry point from a model spec (a built-in name, or a user's PATH.py:FUNCTION or
MODULE:FUNCTION) to an uncompiled keras.Model and its identity.

    builtin.py   cnn and ffn, the seed models
    zoo.py       resnet, lstm, vit: the layer families where backends differ (BatchNorm, LSTM, attention)
    flops.py     training FLOPs per sample per layer family, or unknown

Import this package only after `backend.pin`: it imports Keras, which fixes the backend for the process.
"""

from __future__ import annotations

import os
import re
import sys
import sysconfig
import traceback
from collections import Counter
from pathlib import Path
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
        # The whole traceback on stderr (a cell keeps it in its stderr.log), the cause in the one-line error after it.
        print("kerasmnist: the model failed on two of the data's images; its traceback:", file=sys.stderr)
        traceback.print_exception(error, file=sys.stderr)
        expected = _declared_input_shape(model)
        if expected is not None and not _shape_fits(expected, sample.shape[1:]):  # the shape is the cause
            raise UserCodeError(f"{where}: the model does not accept the data's input shape {sample.shape[1:]}: "
                                f"its input is {expected}") from None
        raise UserCodeError(f"{where}: calling the model on two of the data's images (shape {sample.shape[1:]}) "
                            f"raised {innermost_cause(error)}") from None
    if output.shape != (len(sample), num_classes):
        raise UserCodeError(f"{where}: the model's output has shape {output.shape} for {len(sample)} images; "
                            f"expected ({len(sample)}, {num_classes}), one score per class")
    if not config.from_logits and not (np.all(output >= -1e-6) and np.allclose(output.sum(axis=1), 1, atol=1e-3)):
        sums = ", ".join(f"{value:.4g}" for value in output.sum(axis=1))
        negative = f"; the lowest is {output.min():.4g}" if output.min() < -1e-6 else ""
        raise UserCodeError(f"{where}: the model's output rows are not probability distributions (they sum to "
                            f"{sums}{negative}); end it with a softmax, or pass --from-logits if its last layer "
                            "gives logits")


def _declared_input_shape(model: keras.Model) -> tuple[int | None, ...] | None:
    """The image shape a functional or Sequential model declares (its one Input's, less the batch); None for a
    model that declares none (a subclassed one) or several inputs."""
    try:
        inputs = model.inputs
    except Exception:  # a subclassed model has none to give
        return None
    if not inputs or len(inputs) != 1 or inputs[0].shape is None:
        return None
    return tuple(inputs[0].shape[1:])


def _shape_fits(expected: tuple[int | None, ...], shape: tuple[int, ...]) -> bool:
    return len(expected) == len(shape) and all(want is None or want == got for want, got in zip(expected, shape))


_KERAS_WRAPPED = re.compile(r"Exception encountered when calling .*?\.\n\n\x1b\[1m(.*?)\x1b\[0m\n\nArguments received",
                            re.DOTALL)
_INSTALLED = tuple(path for path in {sysconfig.get_path(name) for name in ("stdlib", "platstdlib", "purelib", "platlib")}
                   if path)
_KERASMNIST = os.path.join(str(Path(__file__).resolve().parents[2]), "")


def innermost_cause(error: BaseException) -> str:
    """'RuntimeError: Can't call numpy() on ... (my_model.py, line 14)': the innermost exception of `error`'s
    chain (its __cause__, or the __context__ it was raised in), its message freed of the wrapper Keras puts round
    an exception in a layer's call(), and the deepest line of the user's own code in the chain."""
    chain = [error]
    while (underlying := chain[-1].__cause__ or (None if chain[-1].__suppress_context__ else chain[-1].__context__)) \
            is not None and underlying not in chain:
        chain.append(underlying)
    inner = chain[-1]
    text = str(inner)
    wrapped = _KERAS_WRAPPED.search(text)
    lines = [line.strip() for line in (wrapped.group(1) if wrapped else text).splitlines() if line.strip()]
    frame = next((frame for failure in reversed(chain) for frame in reversed(traceback.extract_tb(failure.__traceback__))
                  if _is_users(frame.filename)), None)
    return (f"{type(inner).__name__}{': ' + lines[0] if lines else ''}"
            + (f" ({Path(frame.filename).name}, line {frame.lineno}, in {frame.name})" if frame else ""))


def _is_users(filename: str) -> bool:
    """Whether a traceback's file is the user's: not Python's, not an installed package's, not kerasmnist's."""
    return not (filename.startswith(("<", _KERASMNIST, *_INSTALLED))
                or any(f"{os.sep}{folder}{os.sep}" in filename for folder in ("site-packages", "dist-packages")))
