"""Environments: which Python a cell's process runs, so that each backend can have packages of its own.

An environment has a name and is either an interpreter the user made (`python`) or pip requirements for a
virtual environment kerasmnist makes and keeps (`packages`: a managed one, made by launch/venvs.py). A
config's [[environments]] tables:

    [[environments]]
    name = "torch-2.14"
    packages = ["torch==2.14.1", "keras==3.15.1"]
    backends = ["torch"]                # the backends whose cells run in it (default: every backend)
    headline = true                     # its backends are ranked in it (default: each in its newest environment)
    python_version = "3.12"             # a managed one's Python (default: the one kerasmnist runs under)
    system_site_packages = false        # a managed one also sees the packages kerasmnist runs with

    [[environments]]
    name = "jax-mine"
    python = "/opt/venvs/jax/bin/python"
    backends = ["jax"]

compare's flags: --envs NAME,NAME picks the file's environments (default: all of them); --env BACKEND=PYTHON
adds an interpreter for a backend, named by its absolute path. A backend that no chosen environment serves
runs in kerasmnist's own environment, as it does without any.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kerasmnist
from kerasmnist.config import BACKENDS, suggestion
from kerasmnist.errors import ConfigError
from kerasmnist.launch.wheel import PACKAGE

CACHE_VARIABLE = "KERASMNIST_ENV_CACHE"  # where managed environments are kept; tests point it at a folder of theirs
TABLE_KEYS = ("name", "python", "packages", "backends", "python_version", "system_site_packages", "headline")
MANAGED_KEYS = ("python_version", "system_site_packages")  # what only an environment kerasmnist makes can have
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a managed environment's name begins its folder's name


@dataclass(frozen=True)
class Environment:
    name: str
    python: str | None = None  # an interpreter the user made; None: one kerasmnist makes from `packages`
    packages: tuple[str, ...] = ()  # pip requirements of a managed one
    backends: tuple[str, ...] = BACKENDS  # the backends whose cells run in it
    python_version: str | None = None  # a managed one's Python; None: the one kerasmnist runs under
    system_site_packages: bool = False  # a managed one also sees its base interpreter's packages
    headline: bool = False  # the report ranks its backends in it, not in their newest environment
    # A managed one's folder as the driver resolved it (`pinned`): a Slurm node's own cache folder and checkout
    # may differ, so a job's cells use this path rather than compute one there.
    pinned_folder: str | None = None

    @property
    def managed(self) -> bool:
        return self.python is None

    @property
    def specification(self) -> dict[str, Any]:
        """What a managed environment is made of: its cached folder is reused while this is unchanged."""
        return {"packages": list(self.packages), "python_version": self.python_version,
                "system_site_packages": self.system_site_packages, "kerasmnist": kerasmnist.__version__,
                "kerasmnist_from": list(kerasmnist_requirement())}

    @property
    def folder(self) -> Path:
        """A managed environment's folder: its name and a hash of its specification, in the cache folder."""
        if self.pinned_folder:
            return Path(self.pinned_folder)
        digest = hashlib.sha256(json.dumps(self.specification, sort_keys=True).encode()).hexdigest()[:12]
        return cache_root() / f"{self.name}-{digest}"

    def pinned(self) -> Environment:
        """This environment with a managed one's folder fixed as resolved here, for processes elsewhere."""
        return dataclasses.replace(self, pinned_folder=str(self.folder)) if self.managed else self

    @property
    def interpreter(self) -> str:
        return self.python or str(self.folder / "bin" / "python")


def cache_root() -> Path:
    """$KERASMNIST_ENV_CACHE, else kerasmnist/envs in the user's cache folder (XDG_CACHE_HOME, ~/.cache)."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kerasmnist" / "envs"


def kerasmnist_requirement() -> tuple[str, ...]:
    """How a managed environment gets this kerasmnist: editable from the checkout it runs from (the same code,
    later edits included), else the same release from the user's package index."""
    checkout = PACKAGE.parent
    if (checkout / "pyproject.toml").is_file():
        return ("--editable", str(checkout))
    return (f"kerasmnist=={kerasmnist.__version__}",)


def chosen(tables: Any, names: str | None, interpreters: tuple[str, ...] | None, source: str
           ) -> tuple[Environment, ...]:
    """The environments a compare runs in: the config's (those `names` picks, comma-separated; else all of
    them), then --env's `interpreters`."""
    in_file = from_tables(tables, source)
    if names is not None:
        in_file = picked(in_file, [name.strip() for name in names.split(",") if name.strip()], source)
    return unique([*in_file, *from_flags(interpreters or ())], source)


def from_tables(tables: Any, source: str) -> tuple[Environment, ...]:
    """A config's [[environments]] tables, each checked."""
    if not isinstance(tables, list) or not all(isinstance(table, dict) for table in tables):
        raise ConfigError(f"{source}: environments must be tables, each written [[environments]]")
    return unique([_from_table(table, f"{source} [[environments]] {number}")
                   for number, table in enumerate(tables, start=1)], source)


def check_headline_marks(environments: tuple[Environment, ...], source: str) -> None:
    """Refuses two environments marked `headline = true` for one backend: the headline ranks a backend once."""
    for backend in BACKENDS:
        marked = [environment.name for environment in environments
                  if environment.headline and backend in environment.backends]
        if len(marked) > 1:
            raise ConfigError(f"{source}: environments {marked[0]!r} and {marked[1]!r} both have headline = true "
                              f"for {backend}; mark one environment per backend")


def _from_table(table: dict[str, Any], where: str) -> Environment:
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"{where}: name must be letters, digits, '.', '_' or '-', e.g. \"torch-2.14\" "
                          f"(got {name!r})")
    where = f"{where} ({name})"
    unknown = sorted(set(table) - set(TABLE_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]}; allowed: {', '.join(TABLE_KEYS)}")
    if not isinstance(table.get("headline", False), bool):
        raise ConfigError(f"{where}: headline must be true or false (got {table['headline']!r})")
    if "python" in table and "packages" in table:
        raise ConfigError(f"{where}: python and packages are both given; give python = PATH for an interpreter "
                          "you made, or packages = [...] for one kerasmnist makes")
    if "python" not in table and "packages" not in table:
        raise ConfigError(f"{where}: give python = PATH (an interpreter you made) or packages = [...] "
                          "(requirements for one kerasmnist makes)")
    if "python" in table:
        return _user_made(table, name, where)
    return _managed(table, name, where)


def _user_made(table: dict[str, Any], name: str, where: str) -> Environment:
    python, managed_only = table["python"], sorted(set(table) & set(MANAGED_KEYS))
    if managed_only:
        raise ConfigError(f"{where}: {managed_only[0]} is for an environment kerasmnist makes (packages = [...]); "
                          "yours is as you made it")
    if not isinstance(python, str) or not python:
        raise ConfigError(f"{where}: python must be the path of an interpreter (got {python!r})")
    return Environment(name, python=os.path.abspath(os.path.expanduser(python)),
                       backends=_backends(table.get("backends", BACKENDS), where), headline=table.get("headline", False))


def _managed(table: dict[str, Any], name: str, where: str) -> Environment:
    packages, version = table["packages"], table.get("python_version")
    site = table.get("system_site_packages", False)
    if not isinstance(packages, list) or not all(isinstance(package, str) and package for package in packages):
        raise ConfigError(f"{where}: packages must be a list of pip requirements, e.g. [\"torch==2.14.1\"] "
                          f"(got {packages!r})")
    if version is not None and not (isinstance(version, str) and re.fullmatch(r"3\.\d+(\.\d+)?", version)):
        raise ConfigError(f"{where}: python_version must be a Python version such as \"3.12\" (got {version!r})")
    if not isinstance(site, bool):
        raise ConfigError(f"{where}: system_site_packages must be true or false (got {site!r})")
    return Environment(name, packages=tuple(packages), backends=_backends(table.get("backends", BACKENDS), where),
                       python_version=version, system_site_packages=site, headline=table.get("headline", False))


def _backends(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where}: backends must be a non-empty list of backends (got {value!r})")
    bad = next((item for item in value if item not in BACKENDS), None)
    if bad is not None:
        raise ConfigError(f"{where}: backends has {bad!r}; allowed: {', '.join(BACKENDS)}"
                          + suggestion(bad, BACKENDS))
    return tuple(dict.fromkeys(value))


def from_flags(values: tuple[str, ...]) -> tuple[Environment, ...]:
    """--env BACKEND=PYTHON, repeatable: each interpreter an environment named by its absolute path (not its
    links resolved: a virtual environment's python is a link out of it), serving the backends given with it."""
    served: dict[str, list[str]] = {}
    for value in values:
        backend, equals, python = (part.strip() for part in value.partition("="))
        if not equals or not python:
            raise ConfigError(f"--env {value}: expected BACKEND=PYTHON, e.g. --env torch=/opt/venvs/torch/bin/python")
        _backends([backend], f"--env {value}")
        served.setdefault(os.path.abspath(os.path.expanduser(python)), []).append(backend)
    return tuple(Environment(python, python=python, backends=tuple(dict.fromkeys(backends)))
                 for python, backends in served.items())


def picked(environments: tuple[Environment, ...], names: list[str], source: str) -> tuple[Environment, ...]:
    """The environments named, each once; an unknown name is refused, with the names there are."""
    by_name = {environment.name: environment for environment in environments}
    for name in names:
        if name not in by_name:
            raise ConfigError(f"unknown environment {name!r}; {source} has "
                              + (", ".join(by_name) if by_name else "no [[environments]]")
                              + suggestion(name, tuple(by_name)))
    return tuple(by_name[name] for name in dict.fromkeys(names))


def unique(environments: list[Environment] | tuple[Environment, ...], source: str) -> tuple[Environment, ...]:
    """The environments, refusing two of one name: a name tells their cells and rows apart."""
    names = [environment.name for environment in environments]
    repeated = next((name for number, name in enumerate(names) if name in names[:number]), None)
    if repeated is not None:
        raise ConfigError(f"{source}: two environments are named {repeated!r}; give each a name of its own")
    return tuple(environments)


@dataclass(frozen=True)
class Facts:
    """What an environment's interpreter has."""

    kerasmnist: str  # its kerasmnist's version
    software: dict[str, str | None]  # Python's and the frameworks' versions, as a run record says them

    def text(self) -> str:
        """'Python 3.11.7, kerasmnist 0.1.0, keras 3.15.1, torch 2.14.1': the frameworks it has."""
        named = {"Python": self.software.get("python"), "kerasmnist": self.kerasmnist,
                 **{name: self.software.get(name) for name in ("keras", "tensorflow", "torch", "jax")}}
        return ", ".join(f"{name} {version}" for name, version in named.items() if version)


# Run by the environment's interpreter, as a cell's child is (the working folder first on its path): its
# kerasmnist's version and the versions a run record would give, from package metadata, no framework imported.
_READ_FACTS = """
import json
try:
    from kerasmnist import __version__, environment
except ImportError:
    print(json.dumps({"kerasmnist": None}))
else:
    print(json.dumps({"kerasmnist": __version__, "software": environment.software()}))
"""


@functools.cache
def facts(name: str, interpreter: str) -> Facts:
    """What environment `name`'s interpreter has, asked of it; an interpreter that is missing, is not a Python,
    or has no kerasmnist is refused, naming it."""
    where = f"environment {name}: {interpreter}"
    try:
        answer = subprocess.run([interpreter, "-c", _READ_FACTS], capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist") from None
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ConfigError(f"{where} is not a Python ({getattr(error, 'strerror', None) or error})") from None
    said = [line.strip() for line in (answer.stdout + answer.stderr).splitlines() if line.strip()]
    try:
        read = json.loads(answer.stdout.strip().splitlines()[-1])
        installed = read["kerasmnist"]
    except (IndexError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{where} is not a Python (it answered: {said[-1] if said else 'nothing'})") from None
    if installed is None:
        raise ConfigError(f"{where} has no kerasmnist: install it there (pip install -e CHECKOUT), or give "
                          "packages = [...] for an environment kerasmnist makes with it")
    return Facts(installed, read["software"])
