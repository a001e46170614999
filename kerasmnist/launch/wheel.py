"""This installation of kerasmnist as a wheel, for a notebook to carry: the project has no package-index entry."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import kerasmnist
from kerasmnist.errors import KerasMnistError

PACKAGE = Path(kerasmnist.__file__).resolve().parent


def build_wheel(out_dir: Path, package: Path = PACKAGE) -> Path:
    """Builds the checkout that `package` lives in (an editable install's) into a wheel in `out_dir`.

    The build runs on a copy of the checkout's top-level files and the package (its links followed, so
    configs/ comes along), so nothing is written into the checkout and no stale build/ folder of it can
    slip files into the wheel. It needs no network: no index, and no build isolation (the setuptools
    installed here builds it).
    """
    checkout = package.parent
    if not (checkout / "pyproject.toml").is_file():
        raise KerasMnistError(f"kerasmnist at {package} is not in a checkout (no pyproject.toml beside it), so there "
                              f"is nothing to build a wheel from: run this from a checkout installed with pip install -e .")
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / checkout.name
        copy.mkdir()
        for path in checkout.iterdir():
            if path.is_file():
                shutil.copy2(path, copy)
        shutil.copytree(package, copy / package.name, ignore=shutil.ignore_patterns("__pycache__"))
        built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
                                "--no-build-isolation", "--wheel-dir", str(out_dir), str(copy)],
                               capture_output=True, text=True)
    if built.returncode:
        lines = [line.strip() for line in built.stderr.splitlines() if line.strip()] or ["no output"]
        # pip wraps the build's traceback in its own notes: the exception line says what went wrong.
        cause = next((line for line in lines if re.match(r"[\w.]+(Error|Exception): ", line)), lines[-1])
        raise KerasMnistError(f"building a wheel of {checkout} failed: {cause} (it is built offline with the "
                              "setuptools installed here, which must be 70.1 or newer: pip install -U setuptools)")
    return next(out_dir.glob("kerasmnist-*.whl"))
