"""The house's rules, checked: two floors, no import circle, one way into a pinned process, and a stopped or
timed-out child leaves no process behind."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import kerasmnist
from kerasmnist import tasks
from kerasmnist.launch import processes
from kerasmnist.stops import Stopped, stops_cleanly

PACKAGE = Path(kerasmnist.__file__).parent
FRAMEWORKS = ("keras", "tensorflow", "torch", "jax")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """The kerasmnist modules `name` imports anywhere in its source, lazily too: `from package import module`
    is an edge to that module, not to the package."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names}
    return {module for module in found if module in MODULES and module != name}


def test_the_package_has_no_import_circle():
    graph = {name: imports_of(name) for name in MODULES}
    visiting, done, circles = [], set(), []

    def visit(name: str) -> None:
        if name in visiting:
            circles.append(visiting[visiting.index(name):] + [name])
            return
        if name in done:
            return
        visiting.append(name)
        for imported in sorted(graph[name]):
            visit(imported)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
    assert circles == []


def floor(name: str) -> str:
    for prefix in ("kerasmnist.child", "kerasmnist.launch", "kerasmnist.report"):
        if name == prefix or name.startswith(prefix + "."):
            return prefix.rpartition(".")[2]
    return "cli" if name in ("kerasmnist.cli", "kerasmnist.__main__") else "shared"


def test_each_floor_imports_only_what_it_may():
    """The launch side and the report never reach the child floor; the child never reaches back; shared modules
    (configuration, records, tasks, pinning's environment) reach neither. The CLI's `train` runs a run in its own
    process, the one place outside the child floor that imports it (kerasmnist.child.run, lazily)."""
    allowed = {"shared": {"shared"}, "child": {"child", "shared"}, "launch": {"launch", "report", "shared"},
               "report": {"report", "launch", "shared"}, "cli": {"cli", "launch", "report", "shared"}}
    crossings = sorted((name, imported) for name in MODULES for imported in imports_of(name)
                       if floor(imported) not in allowed[floor(name)]
                       and (name, imported) != ("kerasmnist.cli", "kerasmnist.child.run"))
    assert crossings == []


def test_the_cli_the_launch_side_the_configuration_and_the_report_load_no_framework():
    launch_side = sorted(name for name in MODULES if floor(name) != "child" and name != "kerasmnist.__main__")
    script = textwrap.dedent(f"""
        import importlib, sys
        for name in {launch_side!r}:
            importlib.import_module(name)
        from click.testing import CliRunner
        from kerasmnist import cli
        assert CliRunner().invoke(cli.cli, ["compare", "--help"]).exit_code == 0
        print(",".join(name for name in {FRAMEWORKS!r} if name in sys.modules))
    """)
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == ""


def test_every_pinned_child_is_spawned_by_the_one_function():
    """Only launch/processes.py starts a `kerasmnist.child` process; every other launch module goes through
    processes.spawn (checked in the source: no other subprocess call names the child)."""
    starters = sorted(name for name, path in MODULES.items() if "kerasmnist.child" in path.read_text(encoding="utf-8")
                      and "subprocess" in path.read_text(encoding="utf-8") and floor(name) != "child")
    assert starters == ["kerasmnist.launch.processes"]


FAKE_PYTHON = """#!/bin/sh
# Stands in for a Python whose child starts a worker that ignores SIGTERM (as a user's input pipeline might),
# then hangs. Called as: PYTHON -m kerasmnist.child FOLDER, with the task on stdin.
cat > /dev/null
sh -c 'trap "" TERM; echo $$ > "$1/grandchild.pid"; while :; do sleep 1; done' worker "$3" &
trap "" TERM
while :; do sleep 1; done
"""


def fake_python(tmp_path: Path) -> str:
    path = tmp_path / "python"
    path.write_text(FAKE_PYTHON)
    path.chmod(0o755)
    return str(path)


def grandchild_of(folder: Path) -> int:
    deadline = time.monotonic() + 30
    while not (folder / "grandchild.pid").is_file() or not (folder / "grandchild.pid").read_text().strip():
        assert time.monotonic() < deadline, "the fake child never started its worker"
        time.sleep(0.05)
    return int((folder / "grandchild.pid").read_text())


def gone(pid: int) -> bool:
    """Whether `pid` no longer runs (a zombie awaiting its reaper counts as gone)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker through /proc")
def test_a_timed_out_child_leaves_no_process_behind(tmp_path):
    folder = tmp_path / "cell"
    result = processes.spawn(tasks.ProbeTask("jax", "cpu"), folder, python=fake_python(tmp_path), timeout_seconds=3)
    assert result.status() == ("failed", "timed out after 3 s")
    assert gone(grandchild_of(folder))


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker through /proc")
def test_sigterm_to_the_parent_ends_the_childs_whole_group(tmp_path, monkeypatch):
    monkeypatch.setattr(processes, "STOP_GRACE_SECONDS", 1)  # the fake child ignores SIGTERM: no need to wait 10 s
    folder = tmp_path / "cell"
    python = fake_python(tmp_path)
    with stops_cleanly():
        threading.Thread(target=lambda: (grandchild_of(folder), os.kill(os.getpid(), signal.SIGTERM))).start()
        result = processes.spawn(tasks.ProbeTask("jax", "cpu"), folder, python=python)
    assert isinstance(result.interrupted, Stopped)
    assert gone(grandchild_of(folder))


def test_a_child_is_given_its_task_whole_on_stdin(tmp_path):
    """The child reads the task as the parent wrote it, with when it was spawned (no command line rebuilt)."""
    echo = tmp_path / "python"
    echo.write_text('#!/bin/sh\ncat > "$3/task.json"\n')
    echo.chmod(0o755)
    task = tasks.MatmulTask("torch", "cpu", (16, 128), 2, "tf32")
    result = processes.spawn(task, tmp_path / "cell", python=str(echo))
    assert result.status() == ("ok", None)
    received, spawned_at = tasks.from_json(result.written[0].read_text())
    assert received == task and spawned_at <= time.time()
