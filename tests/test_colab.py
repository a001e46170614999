"""`kerasmnist colab`: the notebooks it writes, and both of them run on the CPU, cell by cell.

The slow tests run each notebook in a Jupyter kernel of a throwaway virtual environment, so that its
install cell installs kerasmnist there and leaves this environment alone. That environment sees this
one's packages (keras, the frameworks, ipykernel, setuptools) through a .pth file, so nothing is
downloaded: pip runs with no index, and fails the cell if it would need one. The two notebooks differ
only in how they install (test_the_two_notebooks_differ_only_in_how_they_install), so the repo notebook
runs every cell and the carried one runs its cells up to and including its install.
"""

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from conftest import FIXTURE_DIR
from kerasmnist import pinning
from kerasmnist.child import backend
from kerasmnist.launch import colab, wheel
from kerasmnist.errors import KerasMnistError

ROOT = Path(__file__).parent.parent
REPO_NOTEBOOK = ROOT / "notebooks" / "colab_t4.ipynb"
OUR_SITE_PACKAGES = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})


def cell(notebook: dict, cell_id: str) -> dict:
    return next(c for c in notebook["cells"] if c["id"] == cell_id)


def source(notebook: dict, cell_id: str) -> str:
    return "".join(cell(notebook, cell_id)["source"])


def test_the_notebook_carries_this_kerasmnist_as_a_wheel(tmp_path):
    path = colab.write_notebook(tmp_path / "kerasmnist-colab.ipynb", from_repo=False)
    nbformat.validate(nbformat.reads(path.read_text(), as_version=4))
    notebook = json.loads(path.read_text())
    assert [c["id"] for c in notebook["cells"] if "parameters" in c["metadata"].get("tags", [])] == ["parameters"]
    encoded = re.search(r'b64decode\("""(.*?)"""\)', source(notebook, "install"), re.DOTALL).group(1)
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(encoded))) as carried:
        names = carried.namelist()
    assert {"kerasmnist/cli.py", "kerasmnist/configs/colab-t4.toml"} <= set(names)
    assert not [name for name in names if "__pycache__" in name]


def test_the_committed_repo_notebook_is_what_the_generator_writes():
    assert REPO_NOTEBOOK.read_text(encoding="utf-8") == colab.notebook_text(None), \
        "regenerate it: kerasmnist colab --install-from-repo --out notebooks/colab_t4.ipynb"


def test_the_two_notebooks_differ_only_in_how_they_install(tmp_path):
    fake_wheel = tmp_path / "kerasmnist-0.1.0-py3-none-any.whl"
    fake_wheel.write_bytes(b"PK")
    carried, from_repo = json.loads(colab.notebook_text(fake_wheel)), json.loads(colab.notebook_text(None))
    assert [c["id"] for c in carried["cells"]] == [c["id"] for c in from_repo["cells"]]
    assert [c for c in carried["cells"] if c["id"] not in ("intro", "parameters", "install")] == \
           [c for c in from_repo["cells"] if c["id"] not in ("intro", "parameters", "install")]
    assert [line for line in cell(from_repo, "parameters")["source"] if not line.startswith("REPO_URL =")] == \
           cell(carried, "parameters")["source"]


def test_the_repo_notebook_refuses_the_placeholder_repo_url():
    notebook = json.loads(colab.notebook_text(None))
    namespace: dict = {}
    exec(source(notebook, "parameters"), namespace)
    with pytest.raises(ValueError, match="^set REPO_URL in the parameters cell to your kerasmnist repository"):
        exec(source(notebook, "install"), namespace)


def test_no_wheel_without_a_checkout(tmp_path):
    (tmp_path / "kerasmnist").mkdir()
    with pytest.raises(KerasMnistError, match="is not in a checkout .no pyproject.toml beside it."):
        wheel.build_wheel(tmp_path, package=tmp_path / "kerasmnist")


@pytest.mark.slow
def test_the_carried_notebook_installs_on_the_cpu(tmp_path):
    notebook = colab.write_notebook(tmp_path / "kerasmnist-colab.ipynb", from_repo=False)
    check_every_cell_runs(notebook, tmp_path, "", through="install")


@pytest.mark.slow
def test_the_repo_notebook_runs_on_the_cpu_from_repo_url(tmp_path):
    repository = snapshot_of_this_checkout(tmp_path / "repository")
    check_every_cell_runs(REPO_NOTEBOOK, tmp_path, f"REPO_URL = {str(repository)!r}\n")


def check_every_cell_runs(notebook_path: Path, tmp_path: Path, more_parameters: str, through: str | None = None
                          ) -> None:
    """Runs the notebook, tiny and on the CPU, in a throwaway environment's kernel; checks what it leaves.
    `through`: the id of the last cell to run (every cell if None)."""
    out = tmp_path / "results"
    parameters = more_parameters + (
        f'CONFIG = "quick"\nBACKENDS = "jax"\nMODELS = "ffn"\nDEVICES = "cpu"\nREPEATS = 1\nCPU_EPOCHS = 2\n'
        f'CPU_LIMIT_TRAIN = 500\nPEAK_MATMUL_SIZE = 64\nMATMUL_SIZES = "16,64"\n'
        f"DATA_DIR = {str(FIXTURE_DIR)!r}\nOUT = {str(out)!r}\n")
    python = throwaway_environment(tmp_path / "venv")
    ours_before = listing_of_our_site_packages()
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    notebook = nbformat.read(notebook_path, as_version=4)
    if through:
        notebook.cells = notebook.cells[:next(i for i, c in enumerate(notebook.cells) if c.get("id") == through) + 1]
    after_parameters = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])) + 1
    notebook.cells.insert(after_parameters, nbformat.v4.new_code_cell(parameters,
                                                                      metadata={"tags": ["injected-parameters"]}))
    (tmp_path / "kernels" / "throwaway").mkdir(parents=True)
    (tmp_path / "kernels" / "throwaway" / "kernel.json").write_text(json.dumps(
        {"argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
         "display_name": "throwaway", "language": "python"}))
    kernel = KernelManager(kernel_name="throwaway",
                           kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")]))
    NotebookClient(notebook, km=kernel, timeout=900, resources={"metadata": {"path": str(workdir)}}
                   ).execute(env=throwaway_env(python))

    if not through:
        assert (out / "report" / "report.md").is_file() and list((out / "report").glob("*.png"))
        entries = [json.loads(line) for line in (out / "compare" / "results.jsonl").read_text().splitlines()]
        assert [(e["backend"], e["device"], e["model"], e["status"]) for e in entries] == [("jax", "cpu", "ffn", "ok")]
        assert (out / "matmul" / "bench.jsonl").is_file() and (out.parent / "results.zip").is_file()
    imported = subprocess.run([python, "-c", "import kerasmnist; print(kerasmnist.__file__)"], cwd=workdir,
                              env=throwaway_env(python), capture_output=True, text=True, check=True).stdout
    assert Path(imported.strip()).is_relative_to(tmp_path / "venv")
    assert listing_of_our_site_packages() == ours_before


def throwaway_environment(folder: Path) -> Path:
    """A new virtual environment that also sees this one's packages, after its own; returns its python."""
    # No pip or setuptools of its own (python -m venv would add old ones ahead of ours): pip, and the setuptools
    # that builds the repository variant, come from this environment, and still install into that one.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    own = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    # Plain paths, not site dirs: this environment's own .pth files (the editable kerasmnist's) are not run there.
    (Path(own) / "developer-packages.pth").write_text("\n".join(OUR_SITE_PACKAGES) + "\n")
    return python


def throwaway_env(python: Path) -> dict[str, str]:
    env = pinning.child_environment()
    for name in ("PYTHONPATH", "KERASMNIST_DATA_DIR"):  # neither the checkout's kerasmnist nor our data folder
        env.pop(name, None)
    env["PATH"] = f"{python.parent}{os.pathsep}{env['PATH']}"
    env["PIP_NO_INDEX"] = "1"
    return env


def listing_of_our_site_packages() -> list[str]:
    return sorted(name for folder in OUR_SITE_PACKAGES for name in os.listdir(folder))


def snapshot_of_this_checkout(folder: Path) -> Path:
    """This checkout as it is now, uncommitted changes included, as a git repository of one commit."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True)
    if listed.returncode:
        pytest.skip("not a git checkout: no repository to install from")
    for name in filter(None, listed.stdout.decode().split("\0")):
        if os.path.lexists(ROOT / name):  # a deletion not yet committed is still listed
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, folder / name, follow_symlinks=False)
    git = ["git", "-C", str(folder), "-c", "user.name=kerasmnist tests", "-c", "user.email=tests@kerasmnist.invalid"]
    for command in (["init", "--quiet"], ["add", "--all"], ["commit", "--quiet", "--message", "snapshot"]):
        subprocess.run([*git, *command], check=True)
    return folder
