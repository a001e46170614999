"""A user's model (or loader) that imports helper modules of their own (`from my_blocks import MixerBlock`): the
identity lists every helper it ran with its source's hash, so an edited helper makes the cell not done (it trains
again, and compare says why) and its new record a new row, beside the old one (issue 27, item 5)."""

import dataclasses
import hashlib
import sys
import textwrap

import numpy as np
import pytest

from conftest import FIXTURE_DIR, fake_entry, run_cli
from kerasmnist import records
from kerasmnist.config import RunConfig
from kerasmnist.launch import compare, rounds
from kerasmnist.launch.matrix import cells, matrix_from
from kerasmnist.report import load

MODEL = '''\
import keras
from mixer_blocks import MixerBlock


def build(input_shape, num_classes):
    """An MLP-Mixer in small: the image's rows as tokens, one mixer block."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Reshape((input_shape[0], input_shape[1] * input_shape[2]))(inputs)
    x = keras.layers.Dense(16)(x)
    x = MixerBlock(16)(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))
'''

BLOCKS = '''\
import keras
from mixer_activations import ACTIVATION


class MixerBlock(keras.layers.Layer):
    def __init__(self, width, **kwargs):
        super().__init__(**kwargs)
        self.norm = keras.layers.LayerNormalization()
        self.mlp = keras.layers.Dense(width, activation=ACTIVATION)

    def call(self, x):
        return x + self.mlp(self.norm(x))
'''

ACTIVATIONS = 'ACTIVATION = "gelu"\n'

LOADER = '''\
import numpy as np
from loader_noise import noisy


def load():
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 10
    return (noisy(rng, 40), labels), (noisy(rng, 20), labels[:20])
'''

NOISE = '''\
def noisy(rng, count):
    return rng.integers(0, 255, (count, 8, 8)).astype("uint8")
'''

HELPER_MODULES = ("mixer_blocks", "mixer_activations", "loader_noise")


@pytest.fixture
def user_files(tmp_path):
    """The model file and its helpers, written as a user keeps them: side by side in one folder. The helpers'
    names leave sys.modules after the test, so no other test's import finds them there."""
    for name, text in (("models.py", MODEL), ("mixer_blocks.py", BLOCKS), ("mixer_activations.py", ACTIVATIONS),
                       ("data.py", LOADER), ("loader_noise.py", NOISE)):
        (tmp_path / name).write_text(text)
    yield tmp_path
    for name in HELPER_MODULES:
        sys.modules.pop(name, None)


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_model_files_identity_lists_the_helper_modules_it_imports_with_their_hashes(keras_jax, user_files):
    from kerasmnist.child import models

    config = RunConfig(model=f"{user_files / 'models.py'}:build")
    _, identity = models.build(config, (28, 28, 1), 10, np.zeros((2, 28, 28, 1), "float32"))
    assert [(helper.module, helper.path, helper.source_sha256) for helper in identity.helpers] == [
        ("mixer_activations", str(user_files / "mixer_activations.py"), sha256(user_files / "mixer_activations.py")),
        ("mixer_blocks", str(user_files / "mixer_blocks.py"), sha256(user_files / "mixer_blocks.py"))]
    assert identity.source_sha256 == sha256(user_files / "models.py")  # the model file itself, as before
    assert records.ModelIdentity.from_json(identity.to_json()) == identity


def test_a_loaders_identity_lists_its_helper_modules(user_files):
    from kerasmnist.child import data_reference

    _, identity = data_reference.load(f"{user_files / 'data.py'}:load")
    assert identity["loader"]["helpers"] == [{"module": "loader_noise", "path": str(user_files / "loader_noise.py"),
                                              "source_sha256": sha256(user_files / "loader_noise.py")}]


def with_helpers(entry, model_file, *helper_files):
    """The fake entry as a run of the user's model file would record it: its identity lists the helpers."""
    identity = records.ModelIdentity(
        reference=entry.model, kind="file", path=str(model_file), function="build", source_sha256=sha256(model_file),
        arguments={}, parameters=1000,
        helpers=[records.HelperFile(path.stem, str(path), sha256(path)) for path in helper_files])
    result = dataclasses.replace(entry.record.result, model_identity=identity)
    return dataclasses.replace(entry, record=dataclasses.replace(entry.record, result=result))


def user_matrix(model_file):
    return matrix_from({"matrix": {"models": [f"{model_file}:build"], "peak_matmul_size": 0, "rounds": 1},
                        "run": {"data_dir": str(FIXTURE_DIR)}}, {}, "t")


def test_a_cell_whose_recorded_helper_changed_is_not_done_and_runs_again_saying_why(tmp_path, monkeypatch):
    (tmp_path / "models.py").write_text(MODEL)
    blocks = tmp_path / "mixer_blocks.py"
    blocks.write_text(BLOCKS)
    ran = []

    def fake_run_cell(cell, timeout_seconds, out_dir):  # what the child would record: the helper as it is now
        ran.append(cell.label)
        return with_helpers(fake_entry(cell), tmp_path / "models.py", *(path for path in [blocks] if path.exists()))

    monkeypatch.setattr(rounds, "run_cell", fake_run_cell)
    out, said = tmp_path / "out", []
    compare.run_matrix(user_matrix(tmp_path / "models.py"), out, "cmd", echo=said.append)
    entries, done = rounds.done_cells(out / records.RESULTS_FILE, print)
    assert len(ran) == 3 and done == {entry.key for entry in entries}

    compare.run_matrix(user_matrix(tmp_path / "models.py"), out, "cmd", echo=said.append)
    assert len(ran) == 3 and any("3 of 3 cells already done" in line for line in said)

    blocks.write_text(BLOCKS.replace("ACTIVATION)", '"relu")'))  # gelu -> relu: another model
    assert rounds.done_cells(out / records.RESULTS_FILE, print)[1] == set()
    said.clear()
    outcome = compare.run_matrix(user_matrix(tmp_path / "models.py"), out, "cmd", echo=said.append)
    assert len(ran) == 6 and outcome.counts["already done"] == 0
    assert f"3 cells of {tmp_path / 'models.py'}:build run again: its helper mixer_blocks.py changed since they ran" \
        in said
    entries, done = rounds.done_cells(out / records.RESULTS_FILE, print)
    assert len(entries) == 6 and len(done) == 3  # the old results stay beside the new, under the same keys

    blocks.unlink()
    said.clear()
    compare.run_matrix(user_matrix(tmp_path / "models.py"), out, "cmd", echo=said.append)
    assert any("its helper mixer_blocks.py is gone" in line for line in said)


def test_two_records_that_differ_only_in_a_helpers_hash_are_two_rows(tmp_path):
    (tmp_path / "models.py").write_text(MODEL)
    blocks = tmp_path / "mixer_blocks.py"
    blocks.write_text(BLOCKS)
    cell = cells(user_matrix(tmp_path / "models.py"))[0]
    before = with_helpers(fake_entry(cell), tmp_path / "models.py", blocks)
    blocks.write_text(BLOCKS.replace("ACTIVATION)", '"relu")'))
    after = with_helpers(fake_entry(cell), tmp_path / "models.py", blocks)
    assert len(load.group([before, before])) == 1
    rows = load.group([before, after])
    assert len(rows) == 2 and [len(row.entries) for row in rows] == [1, 1]


@pytest.mark.slow
def test_an_edited_helper_between_two_compares_trains_again_and_makes_a_second_row(tmp_path):
    for name, text in (("models.py", MODEL), ("mixer_blocks.py", BLOCKS), ("mixer_activations.py", ACTIVATIONS)):
        (tmp_path / name).write_text(text)
    out = tmp_path / "out"
    command = ("compare", "--models", f"{tmp_path / 'models.py'}:build", "--backends", "jax", "--rounds", "1",
               "--epochs", "2", "--data-dir", str(FIXTURE_DIR), "--validation-size", "1000", "--limit-train", "500",
               "--peak-matmul-size", "0", "--out", str(out))
    first = run_cli(*command)
    assert first.returncode == 0, first.stderr[-3000:]
    (entry,) = records.read_results(out / records.RESULTS_FILE)[0]
    assert [helper.path for helper in entry.record.model_identity.helpers] == [
        str(tmp_path / "mixer_activations.py"), str(tmp_path / "mixer_blocks.py")]

    (tmp_path / "mixer_activations.py").write_text('ACTIVATION = "relu"\n')
    second = run_cli(*command)
    assert second.returncode == 0, second.stderr[-3000:]
    said = second.stdout + second.stderr
    assert "1 of 1 cells already done" not in said and "its helper mixer_activations.py changed" in said, said
    entries, _ = records.read_results(out / records.RESULTS_FILE)
    assert [entry.status for entry in entries] == ["ok", "ok"]
    rows = load.group(load.gather([out]).cells)
    assert len(rows) == 2 and [len(row.entries) for row in rows] == [1, 1]
