"""A user's own models and data through `kerasmnist compare`: every backend trains them (data-parallel over two
virtual CPU devices where the backend can), each row carries the model's identity, and an edited model file
makes a new row."""

import json
import shutil

import pytest

from conftest import FIXTURE_DIR, run_cli

USER = FIXTURE_DIR.parent / "user"


def compare(tmp_path, config: str, *flags: str):
    path = tmp_path / "plan.toml"
    path.write_text(config)
    result = run_cli("compare", "--config", str(path), "--out", str(tmp_path / "out"), *flags, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_user_models_and_data_train_under_every_backend_and_keep_their_identity(tmp_path):
    shutil.copy(USER / "models.py", tmp_path / "models.py")
    models = f"{tmp_path / 'models.py'}"
    plan = f"""
[matrix]
backends = ["tensorflow", "torch", "jax"]
models = ["{models}:build_bn_convnet", "{models}:build_subclassed", "cnn"]
peak_matmul_size = 0
rounds = 1
[run]
dataset = "{USER / 'data.py'}:load_synthetic"
epochs = 3
validation_size = 200
[[overrides]]
models = ["{models}:build_bn_convnet"]
model_args = {{ width = 8 }}
[[overrides]]
backends = ["tensorflow", "jax"]
models = ["{models}:build_bn_convnet"]
data_parallel = true
cpu_devices = 2
"""
    entries = compare(tmp_path, plan)
    assert len(entries) == 9 and all(entry["status"] == "ok" for entry in entries)
    for entry in entries:
        record = entry["record"]
        assert record["data"]["arrays"]["x_train"]["shape"] == [1200, 16, 16, 3]
        assert record["test_accuracy"] > 0.2  # ten classes: chance is 0.1
        identity = record["model_identity"]
        if identity["kind"] == "file":
            assert identity["path"] == models and len(identity["source_sha256"]) == 64
            assert identity["arguments"] == ({"width": 8} if identity["function"] == "build_bn_convnet" else {})
        # A user's model and data train data-parallel: the bn_convnet cells under tensorflow and jax.
        data_parallel = entry["model"] == f"{models}:build_bn_convnet" and entry["backend"] != "torch"
        assert record["config"]["data_parallel"] == data_parallel
        assert record["device_count"] == (2 if data_parallel else 1)
        assert not data_parallel or identity["function"] == "build_bn_convnet"
    assert sum(entry["record"]["device_count"] == 2 for entry in entries) == 2
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Model `build_bn_convnet(width=8)`" in report and "## Model `build_subclassed()`" in report
    assert "BatchNormalization ×1" in report

    with open(tmp_path / "models.py", "a") as edited:
        edited.write("\n# edited: the same functions, another source\n")
    entries = compare(tmp_path, plan.replace('"tensorflow", "torch", "jax"', '"jax"'))
    assert len(entries) == 11  # the two edited-file cells ran again; the cnn cell was already done
    report = (tmp_path / "out" / "report.md").read_text()
    # Two sections for the edited model, told apart by the first 12 digits of each source's SHA-256.
    sources = {entry["record"]["model_identity"]["source_sha256"][:12] for entry in entries
               if entry["model"] == f"{models}:build_bn_convnet"}
    assert len(sources) == 2
    assert report.count("## Model `build_bn_convnet(width=8)") == 2
    assert all(report.count(f"## Model `build_bn_convnet(width=8) (source {source})`") == 1 for source in sources)
