"""The research scripts under reports/ (apart from the product; nothing in kerasmnist imports them): each runs
its --help with the venv's python, each shell script parses (`bash -n`) and prints its --help, and every
kerasmnist name a script uses, at its top or after pinning, exists and is public, each keyword it passes a
kerasmnist function is one that function takes, and none assigns into a kerasmnist module. A rename in the
package then breaks a test here, not a user's rerun. Nothing is trained.

measure.py's epoch observer is checked too: the hook (`run_and_record(..., epoch_observer=...)`,
kerasmnist.child.timing.EpochObserver) reaches the epoch timer, and the timer calls measure.py's sampler
outside each timed span."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kerasmnist.child import timing
from kerasmnist.config import RunConfig
from conftest import FIXTURE_DIR

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "kerasmnist"
PYTHON_SCRIPTS = sorted(ROOT.glob("reports/**/*.py"))
SHELL_SCRIPTS = sorted(ROOT.glob("reports/**/*.sh"))
IDS = lambda paths: [str(path.relative_to(ROOT)) for path in paths]  # noqa: E731


def test_the_scripts_are_found():
    assert len(PYTHON_SCRIPTS) >= 9 and len(SHELL_SCRIPTS) >= 3, (IDS(PYTHON_SCRIPTS), IDS(SHELL_SCRIPTS))


@pytest.mark.parametrize("script", PYTHON_SCRIPTS, ids=IDS(PYTHON_SCRIPTS))
def test_python_script_help(script):
    """--help imports what the script imports before it parses its arguments, and exits before any work."""
    done = subprocess.run([sys.executable, str(script), "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:"), done.stdout


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=IDS(SHELL_SCRIPTS))
def test_shell_script_parses_and_says_how_to_run_it(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True).returncode == 0
    # resolve.sh hands --help to resolve.py under $PY311, here the venv's python
    done = subprocess.run(["bash", str(script), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env=os.environ | {"PY311": sys.executable})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), "no help text"


def _module_file(name: str) -> Path | None:
    """kerasmnist.a.b's source file (a.py or a/__init__.py), or None where there is none."""
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _top_level(module: str) -> dict[str, ast.AST]:
    """What a kerasmnist module binds at its top level (also inside top-level if and try blocks)."""
    bound: dict[str, ast.AST] = {}

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bound[node.name] = node
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    for name in ast.walk(target):
                        if isinstance(name, ast.Name):
                            bound[name.id] = node
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    bound[alias.asname or alias.name.split(".")[0]] = node
            elif isinstance(node, (ast.If, ast.Try)):
                visit([*node.body, *node.orelse, *getattr(node, "finalbody", []),
                       *(s for handler in getattr(node, "handlers", []) for s in handler.body)])

    visit(ast.parse(_module_file(module).read_text()).body)
    return bound


def _parameters(definition: ast.AST) -> set[str] | None:
    """The keywords a function or a class (its __init__, or a dataclass's fields) takes; None: any."""
    if isinstance(definition, ast.ClassDef):
        init = next((n for n in definition.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
        if init is None:
            return {n.target.id for n in definition.body if isinstance(n, ast.AnnAssign)
                    and isinstance(n.target, ast.Name)}
        definition = init
    if not isinstance(definition, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return None
    arguments = definition.args
    if arguments.kwarg:
        return None
    return {a.arg for a in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]}


def _kerasmnist_uses(script: Path) -> list[str]:
    """Every way `script` leaves kerasmnist's public, existing names: one line each."""
    tree = ast.parse(script.read_text())
    problems: list[str] = []
    modules: dict[str, str] = {}  # local name -> kerasmnist module
    objects: dict[str, tuple[str, ast.AST]] = {}  # local name -> (where, its definition)

    def bind(local: str, module: str, name: str, line: int) -> None:
        where = f"{module}.{name}"
        if name.startswith("_"):
            problems.append(f"line {line}: {where} is private")
        elif _module_file(where):
            modules[local] = where
        elif name not in (bound := _top_level(module)):
            problems.append(f"line {line}: {where} does not exist")
        else:
            objects[local] = (where, bound[name])

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "kerasmnist":
            if not _module_file(node.module):
                problems.append(f"line {node.lineno}: module {node.module} does not exist")
                continue
            for alias in node.names:
                bind(alias.asname or alias.name, node.module, alias.name, node.lineno)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "kerasmnist":
                    if not _module_file(alias.name):
                        problems.append(f"line {node.lineno}: module {alias.name} does not exist")
                    elif alias.asname:
                        modules[alias.asname] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            module = modules[node.value.id]
            if isinstance(node.ctx, ast.Store):
                problems.append(f"line {node.lineno}: assigns {module}.{node.attr} (a patch of kerasmnist)")
            elif node.attr.startswith("_"):
                problems.append(f"line {node.lineno}: {module}.{node.attr} is private")
            elif node.attr not in _top_level(module) and not _module_file(f"{module}.{node.attr}"):
                problems.append(f"line {node.lineno}: {module}.{node.attr} does not exist")
        if isinstance(node, ast.Call):
            target = node.func
            if isinstance(target, ast.Name) and target.id in objects:
                where, definition = objects[target.id]
            elif (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                  and target.value.id in modules and target.attr in (bound := _top_level(modules[target.value.id]))):
                where, definition = f"{modules[target.value.id]}.{target.attr}", bound[target.attr]
            else:
                continue
            accepted = _parameters(definition)
            for keyword in node.keywords:
                if keyword.arg and accepted is not None and keyword.arg not in accepted:
                    problems.append(f"line {node.lineno}: {where} takes no keyword {keyword.arg}")
    return sorted(problems, key=lambda problem: int(problem.split()[1].rstrip(":")))


@pytest.mark.parametrize("script", PYTHON_SCRIPTS, ids=IDS(PYTHON_SCRIPTS))
def test_python_script_uses_only_public_kerasmnist_names(script):
    """Also the imports after pinning and inside functions, which --help does not reach."""
    assert _kerasmnist_uses(script) == []


def test_the_name_check_sees_a_rename(tmp_path):
    script = tmp_path / "renamed.py"
    script.write_text("from kerasmnist.child import run, timing\nfrom kerasmnist.child.trainers.base import _x\n"
                      "from kerasmnist.child.gone import y\nrun.run_and_recorded(1)\nrun.run_and_record(1, 2, hook=3)\n"
                      "timing.EpochTimer = object\n")
    assert _kerasmnist_uses(script) == [
        "line 2: kerasmnist.child.trainers.base._x is private",
        "line 3: module kerasmnist.child.gone does not exist",
        "line 4: kerasmnist.child.run.run_and_recorded does not exist",
        "line 5: kerasmnist.child.run.run_and_record takes no keyword hook",
        "line 6: assigns kerasmnist.child.timing.EpochTimer (a patch of kerasmnist)",
    ]


def _measure():
    """reports/tf-two-speeds/measure.py as a module: its top level imports nothing heavy."""
    spec = importlib.util.spec_from_file_location("measure", ROOT / "reports" / "tf-two-speeds" / "measure.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["measure"] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["measure"]
    return module


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="measure.py reads /proc")
def test_the_epoch_timer_drives_measures_sampler_outside_the_timed_span():
    measure = _measure()
    sampler = measure.EpochSampler(0.0, measure.StepClock())
    timer = timing.EpochTimer(False, 2, sampler)
    for epoch in range(2):
        timer.start(epoch)
        timer.stop()
    assert [epoch["epoch"] for epoch in sampler.epochs] == [1, 2]
    assert [epoch["epoch_seconds"] for epoch in sampler.epochs] == timer.epoch_seconds
    # the sampler's snapshots bracket the timed span
    assert all(e["sampled_wall_seconds"] >= e["epoch_seconds"] for e in sampler.epochs)


def test_an_epoch_observer_is_called_around_the_span_only():
    calls = []

    class Observer:
        def before_epoch(self, epoch):
            calls.append(("before", epoch, timer._started))

        def after_epoch(self, seconds):
            calls.append(("after", seconds, timer.epoch_seconds[-1]))

    timer = timing.EpochTimer(False, 1, Observer())
    timer.start(0)
    assert calls == [("before", 0, 0.0)]  # called before the clock started
    timer.stop()
    assert calls[1] == ("after", timer.epoch_seconds[0], timer.epoch_seconds[0])  # after it stopped
    timing.EpochTimer(False, 1).start(0)  # none: nothing called


def test_run_and_record_hands_the_observer_to_the_epoch_timer(tmp_path, monkeypatch, keras_jax):
    from kerasmnist.child import run, trainers

    observer, seen = object(), []

    class Stop(Exception):
        pass

    class Trainer:
        def __init__(self, config, splits, pinned, jit_compile):
            pass

        def build(self):
            pass

        def fit(self, timer):
            seen.append(timer.observer)
            raise Stop

    monkeypatch.setattr(trainers, "pick", lambda config: Trainer)
    config = RunConfig(backend="jax", data_dir=str(FIXTURE_DIR), validation_size=1000)
    with pytest.raises(Exception) as raised:
        run.run_and_record(config, tmp_path, epoch_observer=observer)
    assert isinstance(raised.value.__cause__, Stop) and seen == [observer]
