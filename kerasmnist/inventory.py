"""What each backend is and sees here: `kerasmnist env`, and the device facts in every run record.

Each backend is probed in a process of its own (`python -m kerasmnist.inventory BACKEND`), which
pins it to the GPU with `backend.pin` — the very check a `--device gpu` run makes — so "gpu: yes"
here means a GPU run would start, and the reason given otherwise is the one the run would print.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import subprocess
import sys
from typing import Any

from kerasmnist import backend, environment
from kerasmnist.config import BACKENDS
from kerasmnist.errors import BackendUnavailable

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


def probe(name: str) -> dict[str, Any]:
    """In this process: what `name` sees, and whether it can run on the CPU and on the GPU."""
    try:
        importlib.import_module(backend.FRAMEWORK_MODULES[name])
    except ImportError as error:
        reason = f"no: {backend.FRAMEWORK_PACKAGES[name]} is not installed ({error})"
        return {"installed": False, "cpu": reason, "gpu": reason}
    facts = framework_facts(name)  # before pinning: every device the framework itself finds
    try:
        backend.pin(name, "gpu")
        gpu = "yes"
    except BackendUnavailable as unavailable:
        gpu = f"no: {unavailable}"
    return {"installed": True, "cpu": "yes", "gpu": gpu} | facts


def collect() -> dict[str, Any]:
    """Every backend's probe, each from a fresh process, plus the host."""
    backends = {}
    for name in BACKENDS:
        child = subprocess.run([sys.executable, "-m", "kerasmnist.inventory", name], capture_output=True, text=True,
                               env=backend.unpinned_environment(), timeout=300)
        try:
            backends[name] = json.loads(child.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            last = (child.stderr.strip().splitlines() or ["no output"])[-1]
            backends[name] = {"installed": None, "gpu": f"probe failed: {last}", "cpu": f"probe failed: {last}"}
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
        if not facts.get("installed"):
            lines.append(f"{name}: {facts['cpu']}")
            continue
        build = ", ".join(f"{key} {facts[key]}" for key in ("cuda", "cudnn", "jaxlib") if facts.get(key))
        lines += [f"{name} {facts['version']}" + (f" ({build})" if build else ""),
                  f"    sees: {', '.join(facts['devices'])}",
                  f"    --device cpu: {facts['cpu']}",
                  f"    --device gpu: {facts['gpu']}"]
    return "\n".join(lines)


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1])))
