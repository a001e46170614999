"""A user's model and data by reference: each bad case refused with one line before training, and identities."""

import shutil
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import FIXTURE_DIR, error_line
from kerasmnist.cli import cli
from kerasmnist.child import data, data_reference
from kerasmnist.config import RunConfig
from kerasmnist.errors import DataError, UserCodeError
from kerasmnist.references import Reference, is_reference

USER = FIXTURE_DIR.parent / "user"
MODELS = f"{USER / 'models.py'}"
DATA = f"{USER / 'data.py'}"


def test_a_reference_is_told_from_a_builtin_name():
    assert is_reference("my_models.py:build") and is_reference("pkg.models:build_unet")
    assert not is_reference("cnn") and not is_reference("my_models.py:") and not is_reference(":build")


def test_a_modules_source_is_found_without_importing_it(monkeypatch, tmp_path):
    package = tmp_path / "userpkg"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (package / "models.py").write_text("def build(input_shape, num_classes):\n    pass\n")
    monkeypatch.chdir(tmp_path)
    identity = Reference("userpkg.models:build", "model").identity()
    assert identity["path"] == str(package / "models.py") and identity["kind"] == "module"
    assert len(identity["source_sha256"]) == 64


@pytest.mark.parametrize("reference, message", [
    ("no_such_file.py:build", "no such file no_such_file.py"),
    ("no_such_package.models:build", "no module named no_such_package.models"),
    (f"{MODELS}:build_missing", "models.py has no function build_missing (it defines build_bn_convnet"),
    (f"{USER / 'broken.py'}:build", "broken.py, line 1: SyntaxError"),
    (f"{MODELS}:build_raising", "build_raising raised ValueError: no such width (models.py, line 60)"),
])
def test_a_reference_that_cannot_be_called_is_one_line(keras_jax, reference, message):
    with pytest.raises(UserCodeError) as raised:
        Reference(reference, "model").call(input_shape=(28, 28, 1), num_classes=10)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def synthetic():
    return data_reference.checked(Reference(f"{DATA}:load_synthetic", "dataset").call(), "synthetic")


def test_a_loaders_arrays_are_split_scaled_and_identified():
    splits = data.load(f"{DATA}:load_synthetic", None, validation_size=200, limit_train=None, seed=0)
    assert splits.x_train.shape == (1000, 16, 16, 3) and splits.x_train.dtype == np.float32
    assert splits.x_train.max() <= 1.0 and splits.num_classes == 10 and splits.y_train.ndim == 1
    arrays = splits.provenance.arrays
    assert arrays["x_train"].shape == [1200, 16, 16, 3] and arrays["y_train"].shape == [1200]  # (N, 1) flattened
    assert len(arrays["x_test"].sha256) == 64 and splits.provenance.loader.function == "load_synthetic"


@pytest.mark.parametrize("loader, message", [
    ("load_not_pairs", "must return ((x_train, y_train), (x_test, y_test))"),
    ("load_ragged", "the training split has 1200 images but 1199 labels"),
    ("load_float_labels", "y_train must be whole class numbers"),
    ("load_negative_label", "y_train holds a negative label (-1)"),
    ("load_unseen_test_label", "test label 9 is beyond the 9 classes seen in training"),
    ("load_with_nan", "the training images hold NaN or infinity"),
    ("load_empty_test", "y_test is empty"),
    ("load_flat", "training images must have shape (N, H, W) or (N, H, W, C)"),
])
def test_bad_data_is_refused_with_one_line(loader, message):
    with pytest.raises(DataError) as raised:
        data.load(f"{DATA}:{loader}", None, validation_size=100, limit_train=None, seed=0)
    assert message in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("builder, from_logits, message", [
    ("build_not_a_model", False, "build_not_a_model returned str, not a keras.Model"),
    ("build_wrong_classes", False, "the model's output has shape (2, 11) for 2 images; expected (2, 10)"),
    ("build_fixed_shape", False, "the model does not accept the data's input shape (16, 16, 3)"),
    ("build_subclassed_logits", False, "are not probability distributions"),
])
def test_a_model_that_cannot_train_on_the_data_is_refused(keras_jax, builder, from_logits, message):
    from kerasmnist.child import models

    (x_train, _), _ = synthetic()
    config = RunConfig(model=f"{MODELS}:{builder}", from_logits=from_logits)
    with pytest.raises(UserCodeError, match="--from-logits" if "probability" in message else None) as raised:
        models.build(config, (16, 16, 3), 10, x_train[:2].astype("float32"))
    assert message in str(raised.value)


def test_a_user_models_identity_names_its_file_hash_arguments_and_layers(keras_jax):
    from kerasmnist.child import models

    config = RunConfig(model=f"{MODELS}:build_bn_convnet", model_args={"width": 8})
    model, identity = models.build(config, (16, 16, 3), 10, np.zeros((2, 16, 16, 3), "float32"))
    assert identity.path == MODELS and identity.function == "build_bn_convnet"
    assert identity.arguments == {"width": 8} and identity.parameters == model.count_params()
    assert identity.layers["BatchNormalization"] == 1 and identity.layers["Conv2D"] == 1


def test_bad_model_and_data_stop_the_cli_with_exit_2_and_no_record(tmp_path, keras_jax):
    """Found once the backend is pinned: under JAX on the CPU, as this process is (keras_jax), so in this one."""
    for args in (["--model", f"{MODELS}:build_wrong_classes", "--dataset", f"{DATA}:load_synthetic"],
                 ["--dataset", f"{DATA}:load_ragged"]):
        result = CliRunner().invoke(cli, ["train", "--backend", "jax", "--validation-size", "100",
                                          "--out", str(tmp_path), *args])
        assert result.exit_code == 2, result.stderr
        error_line(result.stderr)
        assert not list(tmp_path.glob("*.json"))
