"""What each backend is and sees here: `kerasmnist env`, and the device facts in every run record.

Each backend is probed on each device in a process of its own (a ProbeTask, spawned by `processes.spawn` like
a training cell; kerasmnist/child/probe.py), which pins itself with `backend.pin`
exactly as a run does, before the framework is imported: "gpu: yes" here means a GPU run would
start, and the reason given otherwise is the one the run would print, with the framework's own error.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from kerasmnist import environment
from kerasmnist.config import BACKENDS, DEVICES
from kerasmnist.launch import processes
from kerasmnist.pinning import FRAMEWORK_MODULES
from kerasmnist.tasks import ProbeTask

INVENTORY_FILE = "env.json"


def collect(echo: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Every backend's probes, each from a fresh process, plus the host; `echo` says each probe as it starts
    (each imports a framework: seconds)."""
    backends = {}
    for name in BACKENDS:
        installed = importlib.util.find_spec(FRAMEWORK_MODULES[name]) is not None
        facts: dict[str, Any] = {"installed": installed}
        for device in DEVICES:
            echo(f"probing {name} on the {device}...")
            with tempfile.TemporaryDirectory() as folder:
                child = processes.spawn(ProbeTask(name, device), Path(folder), timeout_seconds=300)
                if child.interrupted is not None:
                    raise child.interrupted
                status, reason = child.status()
                if status == "ok":
                    # What the framework sees pinned to the GPU, when it can be; else on the CPU.
                    facts |= child.output()
                facts[device] = "yes" if status == "ok" else f"no: {reason}"
        backends[name] = facts
    return {"host": environment.host(), "nvidia_gpus": environment.nvidia_gpus(), "backends": backends,
            "packages": environment.package_versions(), "python": sys.version.split()[0]}


def render(inventory: dict[str, Any]) -> str:
    host = inventory["host"]
    lines = [f"host: {host['cpu_model']}, {host['logical_cores']} logical cores, "
             f"{(host['memory_bytes'] or 0) / 2**30:.0f} GiB; Python {inventory['python']}, "
             f"Keras {inventory['packages']['keras']}"]
    gpus = inventory["nvidia_gpus"]
    lines.append("nvidia-smi: " + ("; ".join(f"{g['name']} (driver {g['driver']}, {g['memory']})" for g in gpus)
                                   if gpus else "no NVIDIA GPU or driver"))
    for name, facts in inventory["backends"].items():
        if "version" not in facts:  # not installed, or broken: no probe got as far as the framework's facts
            lines.append(f"{name}: {facts['cpu']}")
            continue
        build = ", ".join(f"{key} {facts[key]}" for key in ("cuda", "cudnn", "jaxlib") if facts.get(key))
        lines += [f"{name} {facts['version']}" + (f" ({build})" if build else ""),
                  f"    sees: {', '.join(facts['devices'])}",
                  f"    --device cpu: {facts['cpu']}",
                  f"    --device gpu: {facts['gpu']}"]
    return "\n".join(lines)

