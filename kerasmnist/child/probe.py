"""The child half of `kerasmnist env`, and the framework facts in every run record: what a framework is and
sees, read in a process already pinned (a ProbeTask; the parent half is kerasmnist/launch/inventory.py)."""

from __future__ import annotations

import importlib.metadata
from typing import Any

from kerasmnist.child import backend


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
