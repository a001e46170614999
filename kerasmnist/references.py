"""A user's code named by reference: `PATH.py:FUNCTION` (a file) or `MODULE:FUNCTION` (a module importable from
the working directory), for a model builder or a data loader.

Parsing, finding the source file and hashing it need no import, so the comparison driver can tell an edited
file from the one it ran before without importing Keras. Importing and calling happen only in the training
process, after `backend.pin`: a user's module may import Keras, which fixes the backend.

The user's code is more than the named file: the helper modules it imports (`from my_blocks import
MixerBlock`), recursively. `Reference.helpers` lists them, found in the training process once the code ran; the
driver re-hashes the files a record lists (`changed_helpers`), again without importing them.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import site
import sys
import sysconfig
import traceback
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from kerasmnist.errors import UserCodeError

_SEPARATOR = ":"


def is_reference(text: str) -> bool:
    """Whether `text` has the shape of a reference; a bare name is a built-in."""
    target, separator, function = text.rpartition(_SEPARATOR)
    return bool(separator and target and function.isidentifier())


@dataclass(frozen=True)
class Reference:
    text: str  # as the user gave it
    what: str  # "model" or "dataset": the option it came from, for messages

    @property
    def target(self) -> str:
        return self.text.rpartition(_SEPARATOR)[0]

    @property
    def function(self) -> str:
        return self.text.rpartition(_SEPARATOR)[2]

    @property
    def is_file(self) -> bool:
        return self.target.endswith(".py")

    def source_path(self) -> Path:
        """The file that defines the function, found without importing anything."""
        if self.is_file:
            path = Path(self.target).resolve()
            if not path.is_file():
                raise UserCodeError(f"--{self.what} {self.text}: no such file {self.target}")
            return path
        spec = _find_spec(self.target)
        if spec is None or not spec.origin or not Path(spec.origin).is_file():
            raise UserCodeError(f"--{self.what} {self.text}: no module named {self.target} "
                                "(modules are imported from the working directory and the installed packages)")
        return Path(spec.origin)

    def identity(self) -> dict[str, Any]:
        """What names this code: two files sharing a function name differ, and so does an edited file."""
        path = self.source_path()
        return {"reference": self.text, "kind": "file" if self.is_file else "module",
                "path": str(path), "module": None if self.is_file else self.target, "function": self.function,
                "source_sha256": file_sha256(path)}

    def helpers(self, loaded_before: Collection[str]) -> list[dict[str, str]]:
        """The user's own modules this code ran besides its own file, each {"module", "path", "source_sha256"},
        by path: every module loaded since `loaded_before` (sys.modules' names before the code was imported and
        called) from a file outside the Python installation and kerasmnist, and every such module its module
        refers to, recursively (a helper the loader had imported already). Call it in the process that ran it."""
        own = self.source_path().resolve()
        on_path = [Path(entry or ".").resolve() for entry in sys.path]
        found: dict[Path, ModuleType] = {}
        pending = [module for name, module in list(sys.modules.items()) if name not in loaded_before]
        pending = [module for module in (*pending, sys.modules.get(self._module_name()))
                   if isinstance(module, ModuleType)]
        seen: set[int] = set()
        while pending:
            module = pending.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            path = _user_file(module, on_path)
            if path is None and module.__name__ != self._module_name():
                continue  # the installation's: not followed
            if path is not None and path != own:
                found[path] = module
            pending += _modules_referred_to(module)
        return [{"module": module.__name__, "path": str(path), "source_sha256": file_sha256(path)}
                for path, module in sorted(found.items())]

    def _module_name(self) -> str:
        return _file_module_name(self.source_path()) if self.is_file else self.target

    def load(self) -> Callable[..., Any]:
        """The function, imported; an import that fails is one line naming the user's file and line."""
        path = self.source_path()
        try:
            module = _import_file(path) if self.is_file else _import_module(self.target)
        except SyntaxError as error:
            raise UserCodeError(f"--{self.what} {self.text}: {error.filename}, line {error.lineno}: "
                                f"SyntaxError: {error.msg}") from None
        except Exception as error:
            raise UserCodeError(f"--{self.what} {self.text}: importing it failed: {describe(error, path)}") from None
        function = getattr(module, self.function, None)
        if not callable(function):
            defined = sorted(name for name, value in vars(module).items() if inspect.isfunction(value)
                             and not name.startswith("_") and value.__module__ == module.__name__)
            raise UserCodeError(f"--{self.what} {self.text}: {path.name} has no function {self.function}"
                                + (f" (it defines {', '.join(defined)})" if defined else ""))
        return function

    def call(self, **arguments: Any) -> Any:
        """Calls the function; an exception it raises is one line with the user's file and line."""
        function = self.load()
        try:
            return function(**arguments)
        except Exception as error:
            raise UserCodeError(f"--{self.what} {self.text}: {self.function} raised "
                                f"{describe(error, self.source_path())}") from None


def describe(error: BaseException, path: Path) -> str:
    """'ValueError: bad width (my_models.py, line 12)': the error and the deepest line of the user's file."""
    lines = [frame for frame in traceback.extract_tb(error.__traceback__) if Path(frame.filename) == path]
    where = f" ({path.name}, line {lines[-1].lineno})" if lines else ""
    message = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}{': ' + message if message else ''}{where}"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def changed_helpers(helpers: Iterable[Mapping[str, str] | Any],
                    hashes: dict[str, str | None] | None = None) -> list[str]:
    """Which of the helper files a record lists (each with its path and source_sha256) differ now: 'my_blocks.py
    changed', 'my_blocks.py is gone'; hashed without importing, each path once per `hashes` cache."""
    hashes = {} if hashes is None else hashes
    changed = []
    for helper in helpers:
        path, recorded = (helper["path"], helper["source_sha256"]) if isinstance(helper, Mapping) \
            else (helper.path, helper.source_sha256)
        if path not in hashes:
            hashes[path] = file_sha256(Path(path)) if Path(path).is_file() else None
        if hashes[path] != recorded:
            changed.append(f"{Path(path).name} {'changed' if hashes[path] else 'is gone'}")
    return changed


@functools.cache
def _installation() -> list[Path]:
    """Where the Python installation keeps its own code (the standard library, site-packages), and kerasmnist."""
    places = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
              *(value for key, value in sysconfig.get_paths().items()
                if key in ("stdlib", "platstdlib", "purelib", "platlib")),
              *site.getsitepackages(), site.getusersitepackages(), str(Path(__file__).parent)}
    return [Path(place).resolve() for place in places if place]


def _user_file(module: ModuleType, on_path: list[Path]) -> Path | None:
    """The file a module of the user's own was loaded from; None for the installation's modules, kerasmnist's,
    those with no file, and code generated at run time (AutoGraph's, torch.compile's), whose folder is not on
    sys.path."""
    filename = getattr(module, "__file__", None)
    if not isinstance(filename, str) or not filename:
        return None
    path = Path(filename).resolve()
    if not path.is_file() or any(path.is_relative_to(place) for place in _installation()):
        return None
    return path if any(path.is_relative_to(folder) for folder in on_path) else None


def _modules_referred_to(module: ModuleType) -> list[ModuleType]:
    """The modules a module's globals are, or define (`import my_blocks`, `from my_blocks import MixerBlock`)."""
    referred = []
    for value in list(vars(module).values()):
        if isinstance(value, ModuleType):
            referred.append(value)
            continue
        try:
            name = getattr(value, "__module__", None)
        except Exception:  # an object whose attributes are computed may refuse
            continue
        if isinstance(name, str) and isinstance(sys.modules.get(name), ModuleType) and sys.modules[name] is not module:
            referred.append(sys.modules[name])
    return referred


def _find_spec(dotted: str) -> importlib.machinery.ModuleSpec | None:
    """The module's spec, found package by package without running any package's __init__."""
    search = [str(Path.cwd()), *sys.path]
    spec = None
    parts = dotted.split(".")
    for depth in range(1, len(parts) + 1):
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[:depth]), search)
        if spec is None:
            return None
        search = list(spec.submodule_search_locations or [])
    return spec


def _import_file(path: Path) -> Any:
    # Its folder goes first on sys.path, so the file can import the modules beside it, as `python FILE` would.
    sys.path.insert(0, str(path.parent))
    name = _file_module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look a module up by name
    spec.loader.exec_module(module)
    return module


def _file_module_name(path: Path) -> str:
    return f"kerasmnist_user_{path.stem}"


def _import_module(dotted: str) -> Any:
    sys.path.insert(0, str(Path.cwd()))  # the console script does not put the working directory there
    return importlib.import_module(dotted)
