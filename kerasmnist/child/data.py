"""MNIST and Fashion-MNIST: finding the files, checking them, and splitting them.

Where the data comes from, in this order:
1. `data_dir` (from --data-dir, else KERASMNIST_DATA_DIR for MNIST, KERASMNIST_FASHION_DATA_DIR for Fashion-MNIST): the four IDX .gz files, or Keras's mnist.npz.
   An explicit folder is the only place looked at, so a mistake in it is never papered over.
2. Keras's cache (KERAS_HOME or ~/.keras, folder datasets/).
3. System folders (Debian's dataset-fashion-mnist package).
4. A download through Keras into its cache (needs internet).

Every file is checked before use: against its published SHA-256; for a recompressed copy (Debian
strips the file name from the gzip header), against the SHA-256 of its decompressed content; for a
subset someone made on purpose (the test fixture), against a SHA256SUMS file beside it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kerasmnist.errors import DataError
from kerasmnist.records import DataIdentity

KERAS_DATASETS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
MANIFEST = "SHA256SUMS"


@dataclass(frozen=True)
class KnownFile:
    name: str
    sha256: str  # of the published .gz file
    content_sha256: str  # of its decompressed IDX content


@dataclass(frozen=True)
class DatasetSource:
    name: str
    title: str
    data_dir_variable: str  # environment variable naming a folder with this dataset's files
    files: tuple[KnownFile, KnownFile, KnownFile, KnownFile]  # train images, train labels, test images, test labels
    keras_cache_subdir: str
    npz: KnownFile | None = None  # Keras's single-file copy (sha256 of the file; no content hash)
    system_dirs: tuple[str, ...] = ()
    credit: str = ""


SOURCES = {
    "mnist": DatasetSource(
        name="mnist",
        title="MNIST",
        data_dir_variable="KERASMNIST_DATA_DIR",
        files=(
            KnownFile("train-images-idx3-ubyte.gz",
                      "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                      "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
            KnownFile("train-labels-idx1-ubyte.gz",
                      "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                      "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
            KnownFile("t10k-images-idx3-ubyte.gz",
                      "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                      "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
            KnownFile("t10k-labels-idx1-ubyte.gz",
                      "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                      "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
        ),
        keras_cache_subdir="datasets",
        npz=KnownFile("mnist.npz", "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1", ""),
        credit="Y. LeCun, C. Cortes, C. J. C. Burges; CC BY-SA 3.0",
    ),
    "fashion-mnist": DatasetSource(
        name="fashion-mnist",
        title="Fashion-MNIST",
        data_dir_variable="KERASMNIST_FASHION_DATA_DIR",
        files=(
            KnownFile("train-images-idx3-ubyte.gz",
                      "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                      "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
            KnownFile("train-labels-idx1-ubyte.gz",
                      "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                      "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
            KnownFile("t10k-images-idx3-ubyte.gz",
                      "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                      "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
            KnownFile("t10k-labels-idx1-ubyte.gz",
                      "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                      "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
        ),
        keras_cache_subdir=os.path.join("datasets", "fashion-mnist"),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        credit="Zalando Research; MIT license",
    ),
}


@dataclass
class Splits:
    """Images as float32, shape (N, H, W, C): (N, 28, 28, 1) in [0, 1] for MNIST; labels as int64 in
    0 .. num_classes - 1."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    provenance: DataIdentity | None = None  # set by load()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def keras_home() -> Path:
    """Keras's cache folder, found the way Keras finds it, without importing Keras."""
    if "KERAS_HOME" in os.environ:
        return Path(os.environ["KERAS_HOME"])
    base = Path.home() if os.access(Path.home(), os.W_OK) else Path("/tmp")
    return base / ".keras"


def load(dataset: str, data_dir: str | None, validation_size: int, limit_train: int | None, seed: int,
         limit_test: int | None = None) -> Splits:
    """Finds, checks and splits the dataset: a built-in one, or a user's loader (data_reference; call this
    only after backend.pin, since a loader may import Keras). Raises DataError with one line saying what to do."""
    if dataset in SOURCES:
        (x_train, y_train), (x_test, y_test), provenance = _builtin(SOURCES[dataset], data_dir)
    else:
        from kerasmnist.child import data_reference

        ((x_train, y_train), (x_test, y_test)), provenance = data_reference.load(dataset)
    if limit_test is not None:
        if limit_test > len(y_test):
            raise DataError(f"--limit-test {limit_test} is larger than the {len(y_test)} test images")
        x_test, y_test = x_test[:limit_test], y_test[:limit_test]
    splits = split(x_train, y_train, x_test, y_test, validation_size, limit_train, seed)
    splits.provenance = DataIdentity.from_json(provenance | {
        "num_classes": splits.num_classes, "train_size": len(splits.y_train), "validation_size": len(splits.y_val),
        "test_size": len(splits.y_test)})
    return splits


def _builtin(source: DatasetSource, data_dir: str | None) -> tuple[tuple[np.ndarray, np.ndarray],
                                                                  tuple[np.ndarray, np.ndarray], dict[str, Any]]:
    origin, paths = _locate(source, data_dir)
    checked = [_check(source, path) for path in paths]
    (x_train, y_train), (x_test, y_test) = _read(paths)
    return (x_train, y_train), (x_test, y_test), {"name": source.name, "origin": origin,
                                                  "directory": str(paths[0].parent), "files": checked,
                                                  "credit": source.credit}


def split(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
          validation_size: int, limit_train: int | None, seed: int) -> Splits:
    """Holds out a seeded validation set; then keeps the first `limit_train` of the rest, in file order."""
    available = len(y_train)
    if validation_size >= available:
        raise DataError(f"--validation-size {validation_size} leaves no training images: the data has {available}")
    held_out = np.random.default_rng(seed).permutation(available)
    val_index = np.sort(held_out[:validation_size])
    train_index = np.sort(held_out[validation_size:])
    if limit_train is not None:
        if limit_train > len(train_index):
            raise DataError(
                f"--limit-train {limit_train} is larger than the {len(train_index)} training images left "
                f"after holding out {validation_size} for validation"
            )
        train_index = train_index[:limit_train]
    if not len(train_index):
        raise DataError("--limit-train leaves no training images")
    return Splits(
        _scale(x_train[train_index]), y_train[train_index].astype(np.int64),
        _scale(x_train[val_index]), y_train[val_index].astype(np.int64),
        _scale(x_test), y_test.astype(np.int64),
        num_classes=int(y_train.max()) + 1,  # of every training image, not just the ones kept
    )


def _scale(images: np.ndarray) -> np.ndarray:
    """float32 (N, H, W, C): bytes scaled to [0, 1], floats taken as they are, a channel axis added to (N, H, W)."""
    scaled = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
    return scaled[..., np.newaxis] if scaled.ndim == 3 else scaled


def _how_to_provide(source: DatasetSource) -> str:
    names = ", ".join(f.name for f in source.files)
    return (
        f"put the four {source.title} files ({names}) in a folder and pass --data-dir FOLDER "
        f"or set {source.data_dir_variable}=FOLDER"
        + (f", or copy Keras's {source.npz.name} to {keras_home() / source.keras_cache_subdir}" if source.npz else "")
    )


def _complete_set(folder: Path, source: DatasetSource) -> list[Path] | None:
    idx = [folder / f.name for f in source.files]
    if all(path.is_file() for path in idx):
        return idx
    if source.npz and (folder / source.npz.name).is_file():
        return [folder / source.npz.name]
    return None


def _locate(source: DatasetSource, data_dir: str | None) -> tuple[str, list[Path]]:
    explicit = data_dir or os.environ.get(source.data_dir_variable)
    if explicit:
        folder = Path(explicit)
        named = f"data folder {folder}" + ("" if data_dir else f" (from {source.data_dir_variable})")
        if not folder.is_dir() or not os.access(folder, os.R_OK | os.X_OK):
            raise DataError(f"{named} is not a readable directory")
        found = _complete_set(folder, source)
        if found is None:
            missing = [f.name for f in source.files if not (folder / f.name).is_file()]
            lacks = (f"holds none of the {source.title} files" if len(missing) == len(source.files)
                     else f"lacks {', '.join(missing)}")
            raise DataError(f"{named} {lacks}; {_how_to_provide(source)}")
        return "data-dir", found
    cache = keras_home() / source.keras_cache_subdir
    found = _complete_set(cache, source)
    if found:
        return "keras-cache", found
    for system_dir in source.system_dirs:
        found = _complete_set(Path(system_dir), source)
        if found:
            return "system", found
    return "download", _download(source)


def _download(source: DatasetSource) -> list[Path]:
    from keras.utils import get_file  # only here: everything else works without Keras

    wanted = [source.npz] if source.npz else list(source.files)
    paths = []
    for known in wanted:
        try:
            # get_file falls back to /tmp/.keras when the cache folder does not exist yet,
            # where the next run would not look for it.
            (keras_home() / source.keras_cache_subdir).mkdir(parents=True, exist_ok=True)
            paths.append(Path(get_file(
                known.name, origin=KERAS_DATASETS_URL + known.name, file_hash=known.sha256,
                cache_dir=str(keras_home()), cache_subdir=source.keras_cache_subdir,
            )))
        except Exception as error:  # get_file raises bare Exception for network failures
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise DataError(
                f"{source.title} is not available offline and downloading {known.name} failed ({reason}); "
                f"{_how_to_provide(source)}"
            ) from None
    return paths


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest(folder: Path) -> dict[str, str]:
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return {}
    entries = {}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        digest, _, name = line.strip().partition("  ")
        if name:
            entries[name.lstrip("*")] = digest
    return entries


def _check(source: DatasetSource, path: Path) -> dict[str, Any]:
    """Checks one file's SHA-256; returns what the record says about it."""
    known = next(f for f in (*source.files, source.npz) if f and f.name == path.name)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    digest = _sha256(raw)
    entry = {"name": path.name, "bytes": len(raw), "sha256": digest}
    if digest == known.sha256:
        return {**entry, "verified_against": "published SHA-256"}
    listed = _manifest(path.parent).get(path.name)
    if listed == digest:
        return {**entry, "verified_against": f"{MANIFEST} beside it (a subset, not the published file)"}
    if known.content_sha256:
        try:
            if _sha256(gzip.decompress(raw)) == known.content_sha256:
                return {**entry, "verified_against": "published content (recompressed copy)"}
        except (OSError, EOFError, zlib.error):
            pass  # a truncated or non-gzip file: reported below like any other mismatch
    expected = f"the published {source.title} file's SHA-256 {known.sha256}"
    if listed:
        expected += f" or the {MANIFEST} entry {listed}"
    raise DataError(
        f"{path}: SHA-256 {digest} ({len(raw)} bytes) does not match {expected}; "
        "the file is corrupt, truncated or not the right one"
    )


def _read(paths: list[Path]) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    if len(paths) == 1:
        with np.load(paths[0], allow_pickle=False) as npz:
            return (npz["x_train"], npz["y_train"]), (npz["x_test"], npz["y_test"])
    train_images, train_labels, test_images, test_labels = (_read_idx(path) for path in paths)
    for images, labels, images_path in ((train_images, train_labels, paths[0]), (test_images, test_labels, paths[2])):
        if len(images) != len(labels):
            raise DataError(f"{images_path} holds {len(images)} images but its labels file {len(labels)} labels")
    return (train_images, train_labels), (test_images, test_labels)


def _read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file of unsigned bytes (magic 0x0801 labels, 0x0803 images)."""
    data = gzip.decompress(path.read_bytes())
    dims = data[3]
    if data[:3] != b"\x00\x00\x08" or dims not in (1, 3):
        raise DataError(f"{path}: not an IDX file of unsigned bytes")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    offset = 4 + 4 * dims
    if len(data) - offset != int(np.prod(shape)):
        raise DataError(f"{path}: header says shape {shape} but holds {len(data) - offset} values")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)
