"""Managed environments: virtual environments kerasmnist makes from an environment's pip requirements, each kept
in a folder named by the environment and a hash of what it is made of (environments.Environment.folder) and
reused while that is unchanged: `kerasmnist env create`, `env list`, `env remove`, and compare on first use.

Each is made with uv where it is installed (`uv venv`, `uv pip install --python`), else with `python -m venv` and
the new environment's own pip, so that the user's pip or uv configuration (indexes, constraints, offline copies)
applies. kerasmnist goes in last, at this one's version (environments.kerasmnist_requirement); with
system_site_packages, without its dependencies, which the base interpreter is to have. Where kerasmnist itself runs
in a virtual environment, a system_site_packages one of the same Python sees that environment's packages too
(after its own): only what it pins is installed into it, the rest is the driver's.

A folder is whole once the file MADE_FILE is written, after the last install: a half-made one (a failed install,
a machine that stopped) is removed and made again, never used. (It is made in place rather than in a temporary
folder renamed at the end: a virtual environment's scripts hold its path, so it cannot be moved.)
"""

from __future__ import annotations

import json
import re
import shutil
import site
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import kerasmnist
from kerasmnist import records
from kerasmnist.errors import ConfigError
from kerasmnist.launch.environments import Environment, cache_root, facts, kerasmnist_requirement

Echo = Callable[[str], None]
MADE_FILE = "kerasmnist-environment.json"
# The lines of pip's and uv's output passed on as progress while they install.
PROGRESS_WORDS = ("Collecting", "Downloading", "Installing", "Successfully", "Resolved", "Prepared", "Installed")


def ready(environments: tuple[Environment, ...], echo: Echo) -> list[str]:
    """Makes each managed environment not made yet (saying each step), then asks every environment's interpreter
    what it has: one line each. One whose kerasmnist is not this one's is said to have its cells skipped."""
    lines = []
    for environment in environments:
        if environment.managed:
            make(environment, echo)
        found = facts(environment.name, environment.interpreter)
        lines.append(f"environment {environment.name}: {environment.interpreter} ({found.text()})")
        if found.kerasmnist != kerasmnist.__version__:
            lines.append(f"    its kerasmnist is {found.kerasmnist}, not this one's {kerasmnist.__version__}: its "
                         "cells will be skipped")
    return lines


def make(environment: Environment, echo: Echo) -> Path:
    """The managed environment's folder, made first where it is not whole (a half-made one is removed)."""
    folder = environment.folder
    if is_made(folder):
        return folder
    if folder.exists():
        echo(f"{environment.name}: removing the half-made {folder}")
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        for step, command in _steps(environment):
            echo(f"{environment.name}: {step}")
            _run(command, f"environment {environment.name}: {step}", echo)
        records.replace_atomically(folder / MADE_FILE,
                                   json.dumps({"name": environment.name, **environment.specification}, indent=1) + "\n")
    except BaseException:  # a failed install, Ctrl-C: nothing half-made stays
        shutil.rmtree(folder, ignore_errors=True)
        raise
    echo(f"{environment.name}: made in {folder}")
    return folder


def is_made(folder: Path) -> bool:
    return (folder / MADE_FILE).is_file()


def _steps(environment: Environment) -> list[tuple[str, list[str]]]:
    """Each step that makes the environment, said, and its command."""
    folder, python, uv = environment.folder, environment.interpreter, uv_program()
    site = ["--system-site-packages"] if environment.system_site_packages else []
    if uv:
        version = ["--python", environment.python_version] if environment.python_version else []
        create = [uv, "venv", "--quiet", *site, *version, str(folder)]
        install = [uv, "pip", "install", "--python", python]
    else:
        create = [_base_python(environment.python_version), "-m", "venv", *site, str(folder)]
        install = [python, "-m", "pip", "install", "--disable-pip-version-check"]
    steps = [(f"making a virtual environment in {folder} with {'uv' if uv else 'venv'}", create)]
    if environment.system_site_packages and (sites := _driver_sites(environment.python_version)):
        steps.append((f"letting it see the packages of {sys.prefix}", [python, "-c", _SEE_SITES, *sites]))
    if environment.packages:
        steps.append((f"installing {' '.join(environment.packages)}", [*install, *environment.packages]))
    source = kerasmnist_requirement()
    no_deps = ["--no-deps"] if environment.system_site_packages else []
    steps.append((f"installing kerasmnist {kerasmnist.__version__} "
                  + (f"(editable, from {source[-1]})" if source[0] == "--editable" else "from the package index"),
                  [*install, *no_deps, *source]))
    return steps


# Run by the new environment's interpreter: a .pth file whose lines (folders) its Python appends to sys.path, after
# the environment's own site-packages and before its base interpreter's.
_SEE_SITES = """
import os, site, sys
with open(os.path.join(site.getsitepackages()[0], "kerasmnist-driver.pth"), "w", encoding="utf-8") as pth:
    pth.write("".join(folder + "\\n" for folder in sys.argv[1:]))
"""


def _driver_sites(version: str | None) -> list[str]:
    """The site-packages of the virtual environment kerasmnist runs in, for a system_site_packages environment of
    the same Python to see too: a virtual environment made from inside another sees only its base interpreter's
    packages, where the frameworks kerasmnist runs with are seldom installed. None outside a virtual environment
    (its base's packages are the system's already) or for another Python, whose packages these are not."""
    same_python = version is None or version == f"{sys.version_info.major}.{sys.version_info.minor}"
    if sys.prefix == sys.base_prefix or not same_python:
        return []
    return [folder for folder in site.getsitepackages() if Path(folder).is_relative_to(sys.prefix)]


def uv_program() -> str | None:
    """uv, where it is on PATH or installed beside this Python (kerasmnist's own virtual environment, not
    activated); None where it is not."""
    beside = Path(sys.executable).parent / "uv"
    return shutil.which("uv") or (str(beside) if beside.is_file() else None)


def _base_python(version: str | None) -> str:
    """The Python a managed environment is made from without uv: this one (its base interpreter, where this one
    runs in a virtual environment), or pythonX.Y on PATH."""
    if version is None:
        return sys.executable
    found = shutil.which(f"python{version}")
    if found is None:
        raise ConfigError(f"no python{version} on PATH to make the environment from: install it, or uv (which "
                          "fetches one)")
    return found


def _run(command: list[str], step: str, echo: Echo) -> None:
    """Runs one step, passing on the installer's progress lines; a failure is one line with its own last error."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as errors:
        try:
            with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True) as process:
                for line in process.stdout:
                    if line.lstrip().startswith(PROGRESS_WORDS):
                        echo(f"    {line.strip()}")
        except OSError as error:  # the installer itself cannot start
            raise ConfigError(f"{step} failed: {command[0]}: {error.strerror}") from None
        errors.seek(0)
        if process.returncode:
            raise ConfigError(f"{step} failed: {_last_error(errors.read())}")


def _last_error(output: str) -> str:
    """pip's last 'ERROR: ...' line; else uv's last paragraph (its hints left out), from its cause where it gives
    one, its wrapped lines joined and its drawing removed; else "it said nothing"."""
    lines = [line.strip() for line in output.splitlines()]
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR: ")]
    if errors:
        return errors[-1]
    paragraphs = [paragraph for paragraph in "\n".join(lines).split("\n\n")
                  if paragraph.strip() and not paragraph.strip().startswith("hint: ")]
    if not paragraphs:
        return "it said nothing"
    said = [line.lstrip("×╰─▶ ") for line in paragraphs[-1].splitlines() if line.strip()]
    cause = next((number for number, line in enumerate(said) if line.startswith("cause: ")), 0)
    return " ".join(said[cause:]).removeprefix("cause: ").removeprefix("error: ")


def made() -> list[tuple[Path, dict]]:
    """The whole managed environments in the cache: each folder, with what it was made of."""
    root = cache_root()
    folders = sorted(folder for folder in root.iterdir() if is_made(folder)) if root.is_dir() else []
    return [(folder, json.loads((folder / MADE_FILE).read_text(encoding="utf-8"))) for folder in folders]


def remove(name: str) -> list[Path]:
    """Removes every folder of the managed environment `name` (one per specification it was made with, half-made
    ones too); the folders removed. None there is refused."""
    root = cache_root()
    folders = sorted(folder for folder in root.iterdir()
                     if re.fullmatch(re.escape(name) + r"-[0-9a-f]{12}", folder.name)) if root.is_dir() else []
    if not folders:
        raise ConfigError(f"no managed environment named {name!r} in {root}; kerasmnist env list shows them")
    for folder in folders:
        shutil.rmtree(folder)
    return folders


def describe(name: str, interpreter: str) -> str:
    """An environment as `env list` says it: its name and interpreter, then what it has or why it cannot run."""
    try:
        has = facts(name, interpreter).text()
    except ConfigError as error:
        has = f"cannot run cells: {error}"
    return f"{name}: {interpreter}\n    {has}"
