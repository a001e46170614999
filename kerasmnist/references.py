"""A user's code named by reference: `PATH.py:FUNCTION` (a file) or `MODULE:FUNCTION` (a module importable from
the working directory), for a model builder or a data loader.

Parsing, finding the source file and hashing it need no import, so the comparison driver can tell an edited
file from the one it ran before without importing Keras. Importing and calling happen only in the training
process, after `backend.pin`: a user's module may import Keras, which fixes the backend.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
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
                "source_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}

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
    name = f"kerasmnist_user_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look a module up by name
    spec.loader.exec_module(module)
    return module


def _import_module(dotted: str) -> Any:
    sys.path.insert(0, str(Path.cwd()))  # the console script does not put the working directory there
    return importlib.import_module(dotted)
