import functools
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURE_DIR, error_line, run_cli
from kerasmnist.child import data
from kerasmnist.errors import DataError


def load_fixture(folder=FIXTURE_DIR, **overrides):
    arguments = dict(validation_size=1000, limit_train=None, seed=0) | overrides
    return data.load("mnist", str(folder), **arguments)


def copy_fixture(tmp_path: Path) -> Path:
    folder = tmp_path / "mnist"
    shutil.copytree(FIXTURE_DIR, folder)
    return folder


def test_fixture_loads_scaled_and_split():
    splits = load_fixture()
    assert splits.x_train.shape == (4000, 28, 28, 1) and splits.x_train.dtype == np.float32
    assert splits.x_val.shape == (1000, 28, 28, 1)
    assert splits.x_test.shape == (1000, 28, 28, 1)
    assert 0.0 == splits.x_train.min() and splits.x_train.max() == 1.0
    assert set(np.unique(splits.y_train)) == set(range(10))
    assert splits.provenance.origin == "data-dir"
    assert {f.verified_against for f in splits.provenance.files} == {
        "SHA256SUMS beside it (a subset, not the published file)"}


def test_validation_split_is_fixed_by_the_seed_and_disjoint():
    first, again, other = load_fixture(seed=0), load_fixture(seed=0), load_fixture(seed=1)
    assert np.array_equal(first.y_val, again.y_val) and np.array_equal(first.x_val, again.x_val)
    assert not np.array_equal(first.x_val, other.x_val)
    train_rows = {row.tobytes() for row in first.x_train}
    assert not any(row.tobytes() in train_rows for row in first.x_val)


def test_limit_train_keeps_the_first_images():
    limited, whole = load_fixture(limit_train=500), load_fixture()
    assert np.array_equal(limited.x_train, whole.x_train[:500])


def test_missing_file_is_named(tmp_path):
    folder = copy_fixture(tmp_path)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"lacks t10k-labels-idx1-ubyte.gz; put the four MNIST files"):
        load_fixture(folder)


def test_wrong_file_is_named_with_the_expected_hash(tmp_path):
    folder = copy_fixture(tmp_path)
    wrong = folder / "train-labels-idx1-ubyte.gz"
    wrong.write_bytes(b"not mnist")
    with pytest.raises(DataError) as error:
        load_fixture(folder)
    message = str(error.value)
    assert message.startswith(f"{wrong}: SHA-256")
    assert data.SOURCES["mnist"].files[1].sha256 in message  # the published hash


def test_a_data_path_that_is_a_file_is_bad_input(tmp_path):
    path = tmp_path / "mnist.gz"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=f"^data folder {path} is not a readable directory$") as error:
        load_fixture(path)
    assert error.value.exit_code == 2  # as for every other bad input


def test_a_data_folder_from_the_environment_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("KERASMNIST_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=f"^data folder {tmp_path / 'nowhere'} \\(from KERASMNIST_DATA_DIR\\) is not"):
        data.load("mnist", None, 1000, None, 0)


def test_an_empty_data_folder_names_each_file_once(tmp_path):
    with pytest.raises(DataError) as error:
        load_fixture(tmp_path)
    message = str(error.value)
    assert message.startswith(f"data folder {tmp_path} holds none of the MNIST files; put the four MNIST files (")
    assert all(message.count(known.name) == 1 for known in data.SOURCES["mnist"].files)


def test_data_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KERASMNIST_DATA_DIR", str(FIXTURE_DIR))
    assert data.load("mnist", None, 1000, None, 0).provenance.directory == str(FIXTURE_DIR)


@pytest.mark.full_data
def test_full_mnist_is_the_published_files(full_data_dir):
    splits = data.load("mnist", str(full_data_dir), 10_000, None, 0)
    assert (len(splits.y_train), len(splits.y_val), len(splits.y_test)) == (50_000, 10_000, 10_000)
    assert {f.verified_against for f in splits.provenance.files} == {"published SHA-256"}
    counts = np.bincount(np.concatenate([splits.y_train, splits.y_val]))
    assert counts.tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.mark.slow
def test_fashion_mnist_from_debian_package(tmp_path, monkeypatch):
    folder = Path(data.SOURCES["fashion-mnist"].system_dirs[0])
    if not folder.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty Keras cache: the system folder is next
    splits = data.load("fashion-mnist", None, 10_000, None, 0)
    assert splits.provenance.origin == "system"
    # Debian recompressed the files (no name in the gzip header): their content is what is checked.
    assert {f.verified_against for f in splits.provenance.files} == {"published content (recompressed copy)"}
    assert len(splits.y_test) == 10_000 and splits.x_train.shape[1:] == (28, 28, 1)


@pytest.fixture
def loopback_server(tmp_path):
    """Serves tmp_path/served over HTTP on 127.0.0.1, standing in for Keras's download site."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_goes_through_keras_into_its_cache(tmp_path, monkeypatch, loopback_server, keras_jax):
    served, url = loopback_server
    x = np.zeros((20, 28, 28), np.uint8)
    np.savez(served / "mnist.npz", x_train=x, y_train=np.arange(20) % 10, x_test=x[:5], y_test=np.arange(5))
    digest = data._sha256((served / "mnist.npz").read_bytes())
    source = data.SOURCES["mnist"]
    monkeypatch.setitem(data.SOURCES, "mnist", source.__class__(
        **{**source.__dict__, "npz": data.KnownFile("mnist.npz", digest, "")}))
    monkeypatch.setattr(data, "KERAS_DATASETS_URL", url)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.delenv("KERASMNIST_DATA_DIR", raising=False)

    splits = data.load("mnist", None, 5, None, 0)
    assert splits.provenance.origin == "download"
    assert (tmp_path / "keras-home" / "datasets" / "mnist.npz").is_file()
    assert data.load("mnist", None, 5, None, 0).provenance.origin == "keras-cache"


@pytest.mark.slow
def test_failed_download_says_how_to_provide_the_data(tmp_path):
    # A proxy on a closed loopback port makes the download fail at once, with or without internet.
    result = run_cli("train", "--backend", "jax", "--out", str(tmp_path / "runs"),
                     env={"KERAS_HOME": str(tmp_path / "empty-keras-home"),
                          "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"})
    line = error_line(result.stderr)
    assert result.returncode == 2  # missing data is bad input, as every DataError is
    assert "MNIST is not available offline and downloading mnist.npz failed" in line
    assert "pass --data-dir FOLDER or set KERASMNIST_DATA_DIR=FOLDER" in line


def test_limit_test_keeps_the_first_test_images_and_refuses_more_than_there_are():
    splits = data.load("mnist", str(FIXTURE_DIR), 1000, None, 0, limit_test=200)
    assert len(splits.y_test) == 200 and splits.provenance.test_size == 200
    with pytest.raises(DataError, match="--limit-test 5000 is larger than the 1000 test images"):
        data.load("mnist", str(FIXTURE_DIR), 1000, None, 0, limit_test=5000)
