"""A user's data set, from a loader named by reference that follows keras.datasets' convention:
`load() -> ((x_train, y_train), (x_test, y_test))`, NumPy arrays; checked before any training, with its identity.

Call it only after `backend.pin`: a loader such as keras.datasets.cifar10:load_data imports Keras.
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any

import numpy as np

from kerasmnist.errors import DataError
from kerasmnist.references import Reference

Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
_NAMES = ("x_train", "y_train", "x_test", "y_test")


def load(text: str) -> tuple[Arrays, dict[str, Any]]:
    """The loader's arrays, checked (labels flattened to one dimension), and what the record says of them."""
    reference = Reference(text, "dataset")
    loaded_before = set(sys.modules)
    returned = reference.call()
    arrays = checked(returned, text)
    identity = reference.identity() | {"helpers": reference.helpers(loaded_before)}
    described = {name: describe(array) for name, array in zip(_NAMES, (*arrays[0], *arrays[1]))}
    return arrays, {"name": text, "origin": "loader", "loader": identity, "arrays": described,
                    "directory": None, "files": [], "credit": ""}


def describe(array: np.ndarray) -> dict[str, Any]:
    return {"shape": list(array.shape), "dtype": str(array.dtype),
            "sha256": hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()}


def checked(returned: Any, text: str) -> Arrays:
    """The loader's return value as ((x_train, y_train), (x_test, y_test)); DataError with one line otherwise."""
    where = f"--dataset {text}"
    if not (_pair(returned) and all(_pair(part) for part in returned)
            and all(isinstance(a, np.ndarray) for part in returned for a in part)):
        raise DataError(f"{where}: the loader must return ((x_train, y_train), (x_test, y_test)), NumPy arrays "
                        f"(got {_shape_of(returned)})")
    (x_train, y_train), (x_test, y_test) = returned
    y_train, y_test = _labels(y_train, "y_train", where), _labels(y_test, "y_test", where)
    for images, labels, split in ((x_train, y_train, "training"), (x_test, y_test, "test")):
        _check_images(images, split, where)
        if len(images) != len(labels):
            raise DataError(f"{where}: the {split} split has {len(images)} images but {len(labels)} labels")
    classes = int(y_train.max()) + 1
    if y_test.max() >= classes:
        raise DataError(f"{where}: test label {int(y_test.max())} is beyond the {classes} classes seen in training "
                        f"(0 to {classes - 1})")
    return (x_train, y_train), (x_test, y_test)


def _pair(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2


def _shape_of(value: Any) -> str:
    if _pair(value):
        return f"({', '.join(_shape_of(part) for part in value)})"
    return f"array {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__


def _labels(labels: np.ndarray, name: str, where: str) -> np.ndarray:
    if labels.ndim == 2 and labels.shape[1] == 1:  # keras.datasets.cifar10 gives (N, 1)
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"{where}: {name} must hold one class per image, shape (N,) or (N, 1) (got {labels.shape})")
    if labels.size == 0:
        raise DataError(f"{where}: {name} is empty")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.issubdtype(labels.dtype, np.floating) or not np.all(np.isfinite(labels)) \
                or not np.all(labels == np.round(labels)):
            raise DataError(f"{where}: {name} must be whole class numbers 0, 1, 2... (got dtype {labels.dtype})")
    if labels.min() < 0:
        raise DataError(f"{where}: {name} holds a negative label ({labels.min()}); classes are 0, 1, 2...")
    return labels.astype(np.int64)


def _check_images(images: np.ndarray, split: str, where: str) -> None:
    if images.ndim not in (3, 4):
        raise DataError(f"{where}: {split} images must have shape (N, H, W) or (N, H, W, C) (got {images.shape})")
    if len(images) == 0:
        raise DataError(f"{where}: the {split} split is empty")
    if np.issubdtype(images.dtype, np.floating) and not np.all(np.isfinite(images)):
        raise DataError(f"{where}: the {split} images hold NaN or infinity")
    if not (np.issubdtype(images.dtype, np.floating) or np.issubdtype(images.dtype, np.integer)):
        raise DataError(f"{where}: {split} images must be numbers (got dtype {images.dtype})")
