"""Environments: cells run with another Python (--env, [[environments]]); managed ones are made, cached, reused,
listed and removed (kerasmnist env create/list/remove); bad input is one line and exit 2."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import kerasmnist
from conftest import FIXTURE_DIR, error_line
from kerasmnist import environment, records, tasks
from kerasmnist.cli import cli
from kerasmnist.errors import BackendUnavailable, ConfigError
from kerasmnist.launch import environments, venvs
from kerasmnist.launch.matrix import cells, matrix_from
from kerasmnist.report import analysis, load

NO_TRAINING = ["--backends", "jax", "--models", "ffn", "--rounds", "1", "--epochs", "2", "--peak-matmul-size", "0"]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """Managed environments are made in the test's own folder; nothing is asked of the previous test's."""
    monkeypatch.setenv(environments.CACHE_VARIABLE, str(tmp_path / "cache"))
    environments.facts.cache_clear()
    return tmp_path / "cache"


@pytest.fixture(params=["pip", "uv"])
def installer(request, monkeypatch) -> str:
    """Managed environments made with venv and pip, then with uv (the test extra installs it)."""
    if request.param == "pip":
        monkeypatch.setattr(venvs, "uv_program", lambda: None)
    elif venvs.uv_program() is None:
        pytest.skip("uv is not installed here (pip install uv)")
    return request.param


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "environments.toml"
    path.write_text(text)
    return path


def script(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


SITE_ENVIRONMENT = """
[[environments]]
name = "site"
packages = []
system_site_packages = true
"""


def test_a_managed_environment_is_made_cached_reused_listed_and_removed(tmp_path, cache, installer):
    path = config(tmp_path, SITE_ENVIRONMENT)
    made = CliRunner().invoke(cli, ["env", "create", "--config", str(path)])
    assert made.exit_code == 0, made.output
    folder = environments.Environment("site", system_site_packages=True).folder
    assert folder.parent == cache and folder.name.startswith("site-")
    assert f"site: installing kerasmnist {kerasmnist.__version__} (editable, from " in made.stderr
    assert f"site: making a virtual environment in {folder} with {'uv' if installer == 'uv' else 'venv'}" in made.stderr
    assert made.stdout.startswith(f"environment site: {folder / 'bin' / 'python'} (Python ")
    assert f"kerasmnist {kerasmnist.__version__}" in made.stdout
    assert f"keras {environment.software()['keras']}," in made.stdout  # the driver's, seen from the new environment

    again = CliRunner().invoke(cli, ["env", "create", "--config", str(path)])
    assert again.exit_code == 0 and "making" not in again.stderr and again.stdout == made.stdout

    listed = CliRunner().invoke(cli, ["env", "list"])
    assert listed.stdout.splitlines()[0] == f"site: {folder / 'bin' / 'python'}"
    assert f"kerasmnist {kerasmnist.__version__}" in listed.stdout.splitlines()[1]

    removed = CliRunner().invoke(cli, ["env", "remove", "site"])
    assert removed.stdout == f"removed {folder}\n" and not folder.exists()
    assert CliRunner().invoke(cli, ["env", "list"]).stdout == f"no managed environments in {cache}\n"


def test_a_half_made_environment_is_made_again_and_a_failed_one_leaves_nothing(tmp_path, cache, monkeypatch):
    """The steps stand in for venv and pip: a folder without its made file is removed, never used."""
    managed = environments.Environment("half", packages=("nosuch==1",))
    (managed.folder / "bin").mkdir(parents=True)
    def make(environment):
        return [sys.executable, "-c", f"import os; os.makedirs({str(environment.folder)!r})"]

    monkeypatch.setattr(venvs, "_steps", lambda environment: [("making it", make(environment))])
    said = []
    assert venvs.make(managed, said.append) == managed.folder and venvs.is_made(managed.folder)
    assert said[0] == f"half: removing the half-made {managed.folder}"

    fail = [sys.executable, "-c", "import sys; print('ERROR: one', file=sys.stderr); "
                                  "print('ERROR: No matching distribution found for nosuch==1', file=sys.stderr); "
                                  "sys.exit(1)"]
    other = environments.Environment("failed", packages=("nosuch==1",))
    monkeypatch.setattr(venvs, "_steps", lambda environment: [("making it", make(environment)),
                                                              ("installing nosuch==1", fail)])
    with pytest.raises(ConfigError, match="^environment failed: installing nosuch==1 failed: No matching "
                                          "distribution found for nosuch==1$"):
        venvs.make(other, said.append)
    assert not other.folder.exists()


def test_a_requirement_pip_cannot_resolve_is_its_one_line(tmp_path, cache, monkeypatch, installer):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # offline, and fast: no index is asked
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    monkeypatch.setenv("UV_OFFLINE", "1")
    path = config(tmp_path, '[[environments]]\nname = "bad"\npackages = ["kerasmnist-no-such-package==1.0"]\n'
                            'system_site_packages = true\n')
    result = CliRunner().invoke(cli, ["env", "create", "--config", str(path)])
    assert result.exit_code == 2
    assert error_line(result.stderr) == result.stderr.splitlines()[-1]
    assert "bad: installing kerasmnist-no-such-package==1.0 failed: " in result.stderr.splitlines()[-1]
    assert "kerasmnist-no-such-package" in result.stderr.splitlines()[-1].rpartition("failed: ")[2]
    assert not any(cache.iterdir())


@pytest.mark.parametrize("tables, flags, expected", [
    ("", ["--envs", "nosuch"], "unknown environment 'nosuch'; "),
    ('[[environments]]\nname = "a"\npython = "/usr/bin/python3"\n[[environments]]\nname = "a"\npackages = []\n', [],
     "two environments are named 'a'; give each a name of its own"),
    ('[[environments]]\nname = "a"\npython = "/usr/bin/python3"\npackages = ["torch"]\n', [],
     "[[environments]] 1 (a): python and packages are both given"),
    ("", ["--env", "pytorch=/usr/bin/python3"], "--env pytorch=/usr/bin/python3: backends has 'pytorch'"),
])
def test_bad_environments_are_refused_before_anything_runs(tmp_path, monkeypatch, tables, flags, expected):
    monkeypatch.chdir(tmp_path)
    path = config(tmp_path, tables)
    result = CliRunner().invoke(cli, ["compare", "--config", str(path), *NO_TRAINING, *flags])
    assert result.exit_code == 2
    assert expected in error_line(result.stderr)
    assert sorted(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("interpreter, expected", [
    (lambda tmp_path: str(tmp_path / "no" / "python"), "does not exist"),
    (lambda tmp_path: script(tmp_path, "sh", "#!/bin/sh\necho hello\n"), "is not a Python (it answered: hello)"),
    (lambda tmp_path: script(tmp_path, "bare", f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n"),
     "has no kerasmnist"),  # -S: no site-packages, where kerasmnist is installed; -I: nor PYTHONPATH
])
def test_an_interpreter_that_cannot_run_cells_is_refused(tmp_path, cache, monkeypatch, interpreter, expected):
    monkeypatch.chdir(tmp_path)  # the working folder is on a child's path: no checkout there
    python = interpreter(tmp_path)
    result = CliRunner().invoke(cli, ["compare", "--out", str(tmp_path / "out"), *NO_TRAINING,
                                      "--env", f"jax={python}"])
    assert result.exit_code == 2
    assert error_line(result.stderr).startswith(f"kerasmnist: error: environment {python}: {python} {expected}")
    assert not (tmp_path / "out").exists()


def test_each_environment_serving_a_backend_is_a_cell_of_its_own_and_no_environment_keeps_todays_keys():
    tables = {"environments": [{"name": "torch-a", "packages": ["torch==2.13.0"], "backends": ["torch"]},
                               {"name": "torch-b", "python": "/opt/b/bin/python", "backends": ["torch"]}]}
    flags = {"backends": "tensorflow,torch,jax", "models": "ffn", "rounds": 1, "env": ("jax=/opt/jax/bin/python",)}
    planned = cells(matrix_from(tables, flags, "test.toml"))
    assert [cell.label for cell in planned] == ["tensorflow cpu ffn round 1", "torch cpu ffn in torch-a round 1",
                                               "torch cpu ffn in torch-b round 1",
                                               "jax cpu ffn in /opt/jax/bin/python round 1"]
    assert planned[1].environment.interpreter.endswith("/bin/python") and planned[2].environment.python == \
        "/opt/b/bin/python"
    assert len({cell.key for cell in planned}) == 4
    without = cells(matrix_from({}, {**flags, "env": None}, "test.toml"))
    assert planned[0].key == without[0].key and planned[1].key != without[1].key

    second_round = cells(matrix_from(tables, {**flags, "rounds": 2}, "test.toml"))[4:]
    torch_cells = [cell.label for cell in second_round if cell.config.backend == "torch"]
    assert torch_cells == ["torch cpu ffn in torch-b round 2", "torch cpu ffn in torch-a round 2"]  # the order turns

    picked = cells(matrix_from(tables, {**flags, "envs": "torch-b", "env": None}, "test.toml"))
    assert [cell.environment and cell.environment.name for cell in picked] == [None, "torch-b", None]


def test_a_child_of_another_kerasmnist_version_skips_its_task():
    message = json.loads(tasks.to_json(tasks.ProbeTask("jax", "cpu"), 0.0))
    assert message["kerasmnist_version"] == kerasmnist.__version__
    with pytest.raises(BackendUnavailable, match="this environment has kerasmnist .*, the one that ran the "
                                                 "comparison 0.0.1: install that one here"):
        tasks.from_json(json.dumps({**message, "kerasmnist_version": "0.0.1"}))


KERAS_VERSIONS = """
[[environments]]
name = "keras-3.14"
packages = ["keras==3.14.1"]
system_site_packages = true
backends = ["jax"]

[[environments]]
name = "keras-3.15"
packages = ["keras==3.15.1"]
system_site_packages = true
backends = ["jax"]
"""


@pytest.mark.slow
def test_two_keras_environments_and_an_interpreter_are_rows_paired_by_round_with_the_childs_versions(
        tmp_path, cache, monkeypatch):
    """jax's cells run in two managed environments made here (keras 3.14.1 and 3.15.1, each seeing the driver's
    other packages) and in an interpreter given with --env, 2 rounds. Each entry says its child's versions, not the
    driver's (made to differ); each environment is a row; the older Keras is set against the newest by round, with
    a ratio and its interval, and learns as well or not with an interval."""
    monkeypatch.setattr(environment, "software", lambda: {"python": "the driver's"})
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["compare", "--config", str(config(tmp_path, KERAS_VERSIONS)), "--out", str(out),
                                      *NO_TRAINING, "--rounds", "2", "--env", f"jax={sys.executable}",
                                      "--data-dir", str(FIXTURE_DIR), "--limit-train", "256", "--validation-size",
                                      "1000", "--limit-test", "256"])
    assert result.exit_code == 0, result.output
    assert f"environment {sys.executable}: {sys.executable} (Python " in result.stderr
    # keras-3.14's interpreter, asked before the cells ran
    assert re.search(r"environment keras-3\.14: \S+ \(Python [\d.]+, kerasmnist [\d.]+, keras 3\.14\.1, ", result.stderr)
    entries = records.read_results(out / records.RESULTS_FILE)[0]
    assert len(entries) == 6 and {entry.status for entry in entries} == {"ok"}
    for entry in entries:
        facts = entry.record.environment
        assert entry.software == {"python": facts["python"], **facts["packages"]} and entry.host == facts["host"]
        assert facts["packages"]["keras"] == ("3.14.1" if entry.environment == "keras-3.14" else "3.15.1")
    rows = load.group(entries)
    assert sorted(row.environment for row in rows) == sorted(["keras-3.14", "keras-3.15", sys.executable])
    [older] = [change for change in analysis.environment_changes(rows, 1.0) if change.row.environment == "keras-3.14"]
    assert older.paired and older.slower.rounds == 2 and older.slower.has_interval and older.learning
    assert older.packages["keras"] == ("3.15.1", "3.14.1")
    assert "what changed between environments" in result.stdout
