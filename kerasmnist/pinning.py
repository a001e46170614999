"""The environment variables that choose a process's Keras backend and pin its device: shared by both floors.

The launch side hands a child the user's own environment (`child_environment`); the child pins itself with
`apply_pinning` (called by `child.backend.pin`, before any framework is imported). Nothing here imports Keras or
a framework. How each setting is chosen is told in `kerasmnist/child/backend.py`.
"""

from __future__ import annotations

import os
from typing import Mapping

from kerasmnist.config import XLA_HOST_DEVICES_FLAG

FRAMEWORK_MODULES = {"tensorflow": "tensorflow", "torch": "torch", "jax": "jax"}
FRAMEWORK_PACKAGES = {"tensorflow": "tensorflow-cpu (or tensorflow)", "torch": "torch", "jax": "jax"}
# The variable each backend reads as it starts for its device kind (cpu or cuda), beyond CUDA_VISIBLE_DEVICES:
# KERAS_TORCH_DEVICE is Keras's (>= 3.14). TensorFlow reads none: the child hides its GPUs in-process.
_DEVICE_VARIABLES = {"tensorflow": None, "torch": "KERAS_TORCH_DEVICE", "jax": "JAX_PLATFORMS"}
# The backends whose CPU --cpu-devices splits through XLA_FLAGS (TensorFlow splits it in-process).
_CPU_SPLIT_BY_XLA_FLAGS = {"jax"}

# What the user had set before this process pinned itself (None: unset), for `child_environment`.
_before_pinning: dict[str, str | None] = {}


def pinning_environment(backend: str, device: str, cpu_devices: int = 1, data_parallel: bool = False,
                        xla_flags: str = "", environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment variables that select `backend` and pin it to `device`, combined with the user's
    own settings in `environ` (default: this process's environment)."""
    user = os.environ if environ is None else environ
    env = {"KERAS_BACKEND": backend}
    cpu_split = backend in _CPU_SPLIT_BY_XLA_FLAGS and device == "cpu" and cpu_devices > 1
    ours = [*xla_flags.split(), *([f"{XLA_HOST_DEVICES_FLAG}={cpu_devices}"] if cpu_split else [])]
    if ours:
        env["XLA_FLAGS"] = _combined_xla_flags(user.get("XLA_FLAGS", ""), ours)
    device_variable = _DEVICE_VARIABLES.get(backend)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        if device_variable:
            env[device_variable] = "cpu"
        return env
    chosen = user.get("CUDA_VISIBLE_DEVICES")
    if not data_parallel:  # one GPU: the first the user allowed
        env["CUDA_VISIBLE_DEVICES"] = "0" if chosen is None else chosen.split(",")[0].strip()
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = user.get("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    env["TF_FORCE_GPU_ALLOW_GROWTH"] = user.get("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    if device_variable:
        env[device_variable] = "cuda"
    return env


def _combined_xla_flags(users: str, ours: list[str]) -> str:
    """The user's XLA flags with the run's own added; a run's flag replaces the user's flag of the same name."""
    names = {flag.split("=")[0] for flag in ours}
    return " ".join([*(flag for flag in users.split() if flag.split("=")[0] not in names), *ours])


def child_environment() -> dict[str, str]:
    """This process's environment as the user set it, for a child that pins itself: whatever this
    process's own pinning changed is put back, and everything else (the user's GPU selection,
    XLA_FLAGS, JAX_PLATFORMS) is passed on, for the child's pinning to combine with."""
    env = dict(os.environ)
    for key, value in _before_pinning.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def apply_pinning(backend: str, device: str, cpu_devices: int = 1, data_parallel: bool = False,
                  xla_flags: str = "") -> None:
    """Sets this process's environment for `backend` on `device`, remembering what the user had set."""
    pinning = pinning_environment(backend, device, cpu_devices, data_parallel, xla_flags)
    for key in pinning:
        _before_pinning.setdefault(key, os.environ.get(key))
    os.environ.update(pinning)
