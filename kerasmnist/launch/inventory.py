"""What each backend is and sees here: `kerasmnist env`, and the device facts in every run record.

Each backend is probed on each device in a process of its own (`kerasmnist worker probe BACKEND
DEVICE`, spawned by `processes.run_pinned` like a training cell), which pins itself with `backend.pin`
exactly as a run does, before the framework is imported: "gpu: yes" here means a GPU run would
start, and the reason given otherwise is the one the run would print, with the framework's own error.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from kerasmnist.child import backend
from kerasmnist import environment
from kerasmnist.launch import processes
from kerasmnist.config import BACKENDS, DEVICES

INVENTORY_FILE = "env.json"


def framework_facts(name: str) -> dict[str, Any]:
    """Version, build and devices of one framework, already imported by `backend.pin`."""
    if name == "tensorflow":
        import tensorflow as tf

        build = tf.sysconfig.get_build_info()
        return {
            "version": tf.__version__,
            "cuda": build.get("cuda_version"),
            "cudnn": build.get("cudnn_version"),
            "devices": [f"{d.device_type}:{d.name.rsplit(':', 1)[-1]}" for d in tf.config.list_logical_devices()],
        }
    if name == "torch":
        import torch

        gpus = [f"cuda:{i} {torch.cuda.get_device_name(i)} "
                f"({torch.cuda.get_device_properties(i).total_memory / 2**30:.1f} GiB)"
                for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
        return {
            "version": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "devices": ["cpu", *gpus],
        }
    import jax

    return {
        "version": jax.__version__,
        "jaxlib": importlib.metadata.version("jaxlib"),
        "devices": [f"{d.platform}:{d.id} {d.device_kind}" for d in jax.devices()],
    }


def probe(name: str, device: str) -> dict[str, Any]:
    """In this process: pins `name` to `device` as a run does, then reports what the framework sees.
    Raises BackendUnavailable, as the run would, when it cannot."""
    backend.pin(name, device)
    return framework_facts(name)


def collect(echo: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Every backend's probes, each from a fresh process, plus the host; `echo` says each probe as it starts
    (each imports a framework: seconds)."""
    backends = {}
    for name in BACKENDS:
        installed = importlib.util.find_spec(backend.FRAMEWORK_MODULES[name]) is not None
        facts: dict[str, Any] = {"installed": installed}
        for device in DEVICES:
            echo(f"probing {name} on the {device}...")
            with tempfile.TemporaryDirectory() as folder:
                child = processes.run_pinned(["worker", "probe", name, device], Path(folder), timeout_seconds=300)
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

