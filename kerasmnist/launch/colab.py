"""`kerasmnist colab`: a notebook that runs the Colab T4 comparison on a fresh runtime with no edits.

Two variants share every cell but the install cell, the REPO_URL parameter and the intro's line on installing:

- the default carries this installation of kerasmnist in the notebook, as a wheel (the project has no
  package-index entry or public address for Colab to install from);
- `--install-from-repo` clones the repository named by the REPO_URL parameter instead: that is
  notebooks/colab_t4.ipynb, and a test keeps the committed file equal to what this module writes.

Every knob is in one cell tagged "parameters" (papermill's convention), so a test, or papermill, can run
the notebook with other values by adding a cell after it.
"""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path
from typing import Any

from kerasmnist import records
from kerasmnist.launch.wheel import build_wheel

PLACEHOLDER_REPO_URL = "https://github.com/YOUR-ORG/kerasmnist.git"

INTRO = """\
# kerasmnist on a Colab T4 GPU

Which Keras backend — TensorFlow, PyTorch or JAX — trains the MNIST models fastest on a T4, and how
much does the GPU buy over Colab's own CPU? This notebook installs kerasmnist, shows what each backend
sees, runs the `colab-t4` comparison (every backend on the GPU and on the CPU, both models), times
matrix multiplies and shows the report.

**Runtime → Change runtime type → T4 GPU**, then **Runtime → Run all**. {how_it_installs}

Colab already has TensorFlow, PyTorch and JAX built for its GPU: kerasmnist is installed with no
extras, so none of them is replaced; pip only upgrades Keras, if it is older than the 3.14 that
kerasmnist needs.

Results are saved as they come, into `OUT` (see the parameters). If a run stops or the connection
drops, run all again: the finished cells are skipped and the rest run. A recycled runtime loses its
disk: `SAVE_TO_DRIVE = True` keeps the results on Google Drive, so that a new runtime resumes too.
"""

CARRIED = "kerasmnist itself is carried by this notebook (a wheel, in the install cell): there is nothing to set."
FROM_REPO = "First set `REPO_URL` in the parameters cell to your kerasmnist repository: the install cell clones it."

REPO_PARAMETER = f'REPO_URL = "{PLACEHOLDER_REPO_URL}"  # your kerasmnist repository: a git URL or a path\n'

PARAMETERS_HEADER = '# Every knob of this notebook (the cell is tagged "parameters": papermill can set them).\n'

PARAMETERS = """\
CONFIG = "colab-t4"  # a config shipped with kerasmnist (colab-t4, quick, full, ...) or the path of a .toml file
BACKENDS = None  # e.g. "jax,torch"; None: the config's
# Models: built-in (cnn, ffn), the zoo (resnet, lstm, vit), or your own builder as PATH.py:FUNCTION after
# uploading the file (Colab's Files pane, into /content), e.g. "cnn,resnet,/content/my_models.py:build".
MODELS = None  # None: the config's
DATASET = None  # e.g. "fashion-mnist" or your loader "/content/my_data.py:load"; None: the config's (MNIST)
DEVICES = "gpu,cpu"
REPEATS = None  # rounds: passes over every cell; None: the config's
EPOCHS = 5  # the GPU cells'
LIMIT_TRAIN = None  # the GPU cells' training images; None: all 50,000
# Colab's runtime has 2 vCPUs (one physical core), where the CPU cells at full size (50,000 images, 8 epochs,
# 3 rounds) would take over an hour: a CNN epoch takes 9 to 35 s per backend even on 2 whole cores. So the
# CPU cells train 8 epochs (the first compiles; 7 steady ones, the fewest whose median is one speed's) on
# 2,500 images, minutes in all, and GPU cells of that size run beside them, so that the GPU speed-up
# compares like with like.
CPU_EPOCHS = 8
CPU_LIMIT_TRAIN = 2_500
MIXED_PRECISION = True  # also a float16 pass on the GPU's tensor cores
PEAK_MATMUL_SIZE = 4096  # each compare times N x N matmuls up to this N: the peak its GFLOP/s are set against
MATMUL_SIZES = "1,16,128,1024,4096,10000"  # bench matmul: from which size the GPU wins
DATA_DIR = None  # a folder with the MNIST files; None: Keras downloads them (11 MB)
OUT = "kerasmnist-results"  # not time-stamped, so that running again resumes
SAVE_TO_DRIVE = False  # True: mount Google Drive and keep OUT there (it outlives the runtime)
"""

SETUP = """\
# The helpers every later cell runs commands with, the GPU, and where the results go.
import os
import shutil
import subprocess
import sys
from pathlib import Path


def run(*command):
    \"\"\"Runs a command, showing its output as it comes; a failure fails the cell (IPython's !command would not).\"\"\"
    command = [str(part) for part in command]
    print("$", " ".join(command), flush=True)
    unbuffered = {**os.environ, "PYTHONUNBUFFERED": "1"}  # Python children print at once, not when done
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=unbuffered) as process:
        for line in process.stdout:
            print(line, end="", flush=True)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command)


def kerasmnist(*arguments):
    run(sys.executable, "-m", "kerasmnist", *arguments)


def compare(**settings):
    \"\"\"kerasmnist compare into the one results folder; a setting left at None is the config's.\"\"\"
    settings = {"backends": BACKENDS, "models": MODELS, "dataset": DATASET, "repeats": REPEATS, "data_dir": DATA_DIR,
                "peak_matmul_size": PEAK_MATMUL_SIZE, **settings}
    flags = [str(part) for key, value in settings.items() if value is not None
             for part in ("--" + key.replace("_", "-"), value)]
    kerasmnist("compare", "--config", CONFIG, "--out", compared, *flags)


if shutil.which("nvidia-smi"):
    run("nvidia-smi")
else:
    print("no nvidia-smi here: no NVIDIA GPU, so the gpu cells will be skipped")

results = Path(OUT)
if SAVE_TO_DRIVE:
    try:
        from google.colab import drive
    except ImportError:
        print("not on Colab: SAVE_TO_DRIVE is ignored")
    else:
        drive.mount("/content/drive")
        results = Path("/content/drive/MyDrive") / OUT
results = results.resolve()
compared, benched, reported = results / "compare", results / "matmul", results / "report"
print("results go to", results)
devices = DEVICES.split(",")
"""

INSTALL_CARRIED = """\
#@title Install kerasmnist (carried by this notebook as a wheel)
# The first install puts this notebook's kerasmnist in place even over an installed one of the same version
# (pip keeps those); the second adds what it requires (keras>=3.14, numpy, click, matplotlib) where missing.
import base64
import tempfile

wheel = Path(tempfile.mkdtemp()) / "{name}"
wheel.write_bytes(base64.b64decode(\"\"\"
{content}\"\"\"))
run(sys.executable, "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps", wheel)
run(sys.executable, "-m", "pip", "install", "--quiet", wheel)
"""

INSTALL_FROM_REPO = f"""\
# Install kerasmnist from REPO_URL. No build isolation: the runtime's setuptools builds it, with no download.
if REPO_URL == "{PLACEHOLDER_REPO_URL}":
    raise ValueError("set REPO_URL in the parameters cell to your kerasmnist repository (a git URL or a path), "
                     "then run all again")
source = Path("kerasmnist-source").resolve()  # a path, which pip would take for a name without a /
if source.exists():
    run("git", "-C", source, "pull", "--ff-only")
else:
    run("git", "clone", "--quiet", REPO_URL, source)
run(sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation", source)
"""

ABOUT_ENV = """\
What each backend is and sees here, and whether `--device cpu` / `--device gpu` would work (saved with
the results, so the report shows it too):"""

ENV = 'kerasmnist("env", "--out", compared)\n'

ABOUT_COMPARE = """\
The comparison, in passes into one results folder. Each cell (backend × device × model × round) runs
in a process of its own and is saved the moment it finishes; running a pass again skips the cells it
has done. A GPU cell the runtime cannot run (no GPU) is recorded as skipped, with the reason."""

GPU_PASS = """\
# The GPU cells, at EPOCHS and LIMIT_TRAIN.
if "gpu" in devices:
    compare(devices="gpu", epochs=EPOCHS, limit_train=LIMIT_TRAIN)
"""

CPU_PASS = """\
# The CPU cells at their smaller size (see CPU_EPOCHS), beside GPU cells of the same size.
if "cpu" in devices:
    compare(devices=DEVICES, epochs=CPU_EPOCHS, limit_train=CPU_LIMIT_TRAIN)
"""

MIXED_PRECISION_PASS = """\
# float16 on the T4's tensor cores, one round beside the float32 GPU cells.
if "gpu" in devices and MIXED_PRECISION:
    compare(devices="gpu", epochs=EPOCHS, limit_train=LIMIT_TRAIN, repeats=1, precision="mixed_float16")
"""

ABOUT_MATMUL = """\
The classic CPU-versus-GPU demonstration: a scalar multiply and N×N matrix products on each backend,
and the size from which the GPU wins."""

MATMUL = """\
# In a folder of its own, where no compare writes: each compare times its own GEMM peaks into compare/.
kerasmnist("bench", "matmul", "--devices", DEVICES, "--sizes", MATMUL_SIZES, "--out", benched,
           *(["--backends", BACKENDS] if BACKENDS else []))
"""

REPORT = """\
# One report over both folders (report.md, rows.csv, results.csv and the plots), shown here.
from IPython.display import Image, Markdown, display

kerasmnist("report", compared, benched, "--out", reported)
display(Markdown((reported / "report.md").read_text()))
for plot in sorted(reported.glob("*.png")):
    display(Image(filename=str(plot)))
"""

ABOUT_TAKING_HOME = """\
## Take the results home

The cell below zips `OUT` (without the per-attempt logs in `runs/`) and, on Colab, downloads the zip.
Unzip it in your checkout and merge the results with your own machine's into one report:

```
kerasmnist report reports/my-laptop kerasmnist-results/compare kerasmnist-results/matmul --out reports/laptop-vs-colab
```"""

TAKE_HOME = """\
import zipfile

archive = results.with_name(results.name + ".zip")
with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
    for path in sorted(results.rglob("*")):
        if path.is_file() and "runs" not in path.relative_to(results).parts:
            zipped.write(path, path.relative_to(results.parent))
print("zipped:", archive)
try:
    from google.colab import files
except ImportError:
    pass  # not on Colab: the zip stays where printed
else:
    files.download(str(archive))
"""

NOTEBOOK_METADATA = {
    "accelerator": "GPU",
    "colab": {"gpuType": "T4", "provenance": []},
    "kernelspec": {"display_name": "Python 3", "name": "python3"},
    "language_info": {"name": "python"},
}


def write_notebook(out: Path, from_repo: bool) -> Path:
    """Writes the notebook to `out`: carrying this installation as a wheel, or installing from REPO_URL."""
    records.ensure_writable(out.parent)
    if from_repo:
        text = notebook_text(None)
    else:
        with tempfile.TemporaryDirectory() as scratch:
            text = notebook_text(build_wheel(Path(scratch)))
    records.replace_atomically(out, text)
    return out


def notebook_text(wheel: Path | None) -> str:
    """The notebook as Jupyter writes it: with `wheel` inside, or (None) installing from REPO_URL."""
    if wheel is None:
        how_it_installs, parameters = FROM_REPO, PARAMETERS_HEADER + REPO_PARAMETER + PARAMETERS
        install = _code("install", INSTALL_FROM_REPO)
    else:
        content = base64.encodebytes(wheel.read_bytes()).decode("ascii")
        # Folded away in Colab (a form) and in Jupyter: the wheel is some thousand lines of base64.
        install = _code("install", INSTALL_CARRIED.format(name=wheel.name, content=content),
                        cellView="form", jupyter={"source_hidden": True})
        how_it_installs, parameters = CARRIED, PARAMETERS_HEADER + PARAMETERS
    cells = [
        _markdown("intro", INTRO.format(how_it_installs=how_it_installs)),
        _code("parameters", parameters, tags=["parameters"]),
        _code("setup", SETUP),
        install,
        _markdown("about-env", ABOUT_ENV),
        _code("env", ENV),
        _markdown("about-compare", ABOUT_COMPARE),
        _code("gpu-pass", GPU_PASS),
        _code("cpu-pass", CPU_PASS),
        _code("mixed-precision-pass", MIXED_PRECISION_PASS),
        _markdown("about-matmul", ABOUT_MATMUL),
        _code("matmul", MATMUL),
        _code("report", REPORT),
        _markdown("about-taking-home", ABOUT_TAKING_HOME),
        _code("take-home", TAKE_HOME),
    ]
    notebook = {"cells": cells, "metadata": NOTEBOOK_METADATA, "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def _lines(text: str) -> list[str]:
    return text.rstrip("\n").splitlines(keepends=True)


def _markdown(cell_id: str, text: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": _lines(text)}


def _code(cell_id: str, source: str, **metadata: Any) -> dict[str, Any]:
    return {"cell_type": "code", "execution_count": None, "id": cell_id, "metadata": metadata, "outputs": [],
            "source": _lines(source)}
