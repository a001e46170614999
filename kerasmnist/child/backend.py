"""Chooses the Keras backend and pins the device, once per process, before Keras is imported.

This is the only module that sets KERAS_BACKEND or any device-selection variable. Keras reads
the backend once, at its first import, so a process can only ever train under one backend:
comparisons run every backend in its own process (`launch.processes.spawn`, with `pinning.child_environment`).

How each backend is pinned (`pinning.pinning_environment`), combined with what the user set, never replacing it:
- CPU: CUDA_VISIBLE_DEVICES="" hides every CUDA GPU from every framework, so nothing can be
  placed there; on top, JAX_PLATFORMS=cpu, KERAS_TORCH_DEVICE=cpu (Keras >= 3.14), and for
  TensorFlow `set_visible_devices([], "GPU")`, which also hides non-CUDA devices (Apple Metal).
- GPU: JAX_PLATFORMS=cuda and KERAS_TORCH_DEVICE=cuda; TensorFlow places ops on GPU:0 by default.
  Without --data-parallel one GPU is used: the first of the user's CUDA_VISIBLE_DEVICES (GPU 0 when
  unset). JAX does not preallocate (XLA_PYTHON_CLIENT_PREALLOCATE=false, else it takes 75% of each
  visible GPU) and TensorFlow grows its memory as needed (TF_FORCE_GPU_ALLOW_GROWTH=true, else it
  maps nearly all of it), so runs can share a GPU and peak-memory figures mean something; a user's
  own setting of either wins. TensorFlow, when a torch or JAX run loads it (tf.data input), sees no
  GPU (`import_tensorflow`).
  If the backend sees no GPU the run stops (BackendUnavailable) rather than falling back.
- XLA_FLAGS: the user's are kept; --xla-flags and --cpu-devices add theirs, replacing the user's flag of the
  same name.
- float32 arithmetic (`--tf32`): full float32 matmuls and convolutions by default on every backend;
  TF32 tensor cores (Ampere and newer GPUs) only when asked for (`Framework.set_float32_matmul_precision`).
How each framework is then told its threads, its float32 policy and its device, and checked, is its own
(`kerasmnist/child/frameworks/`). After training, `resolved_device` checks where the weights and optimizer
state really live.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Iterable

from kerasmnist.child import frameworks
from kerasmnist.errors import BackendUnavailable
from kerasmnist.pinning import apply_pinning


@dataclass(frozen=True)
class Pinned:
    backend: str
    device: str
    framework_version: str
    gpu_names: tuple[str, ...]  # what the backend sees on the pinned device kind (empty on CPU)
    device_count: int  # devices of the pinned kind: GPUs, or (virtual) CPU devices


def pin(backend: str, device: str, cpu_devices: int = 1, cpu_threads: int | None = None,
        data_parallel: bool = False, float32_matmul_precision: str = "float32", xla_flags: str = "") -> Pinned:
    """Selects the backend and pins the device for this process, then imports Keras.

    `cpu_devices` > 1 splits the CPU into virtual devices (JAX, TensorFlow), so data-parallel
    training can be exercised without several GPUs. `cpu_threads` limits the CPU compute threads.
    `data_parallel` keeps every GPU the user allowed visible (else one). `float32_matmul_precision`
    "tf32" allows TF32 tensor cores for float32 matmuls and convolutions. `xla_flags` are added to the
    user's XLA_FLAGS, which XLA reads when it starts (JAX, and TensorFlow's jit_compile).
    Raises BackendUnavailable when the framework is missing, the device is not there, or the
    machine has fewer cores than `cpu_threads`.
    """
    if "keras" in sys.modules:
        active = sys.modules["keras"].backend.backend()
        if active != backend:
            raise BackendUnavailable(
                f"Keras is already imported with backend {active} in this process; "
                f"backend {backend} needs a process of its own"
            )
    apply_pinning(backend, device, cpu_devices, data_parallel, xla_flags)
    # TensorFlow's C++ start-up chatter buries the progress bar; a user's own setting wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if cpu_threads is not None:
        _bind_to_cores(cpu_threads)
    framework = frameworks.for_backend(backend)
    module = framework.load()
    if cpu_threads is not None:
        framework.set_thread_counts(cpu_threads)
    framework.set_float32_matmul_precision(float32_matmul_precision == "tf32")
    gpu_names = framework.check_device(device, cpu_devices)
    import keras  # noqa: F401  (the first import of Keras in this process: it reads KERAS_BACKEND)

    return Pinned(backend, device, module.__version__, gpu_names, len(gpu_names) or cpu_devices)


def import_tensorflow() -> Any:
    """TensorFlow, for tf.data input under any backend. Under torch or JAX it sees no GPU: its runtime
    would otherwise map the memory the training framework needs on every visible GPU."""
    import tensorflow as tf

    if os.environ.get("KERAS_BACKEND") != "tensorflow":
        tf.config.set_visible_devices([], "GPU")  # before TensorFlow's runtime starts, i.e. before any op runs
    return tf


def _bind_to_cores(cpu_threads: int) -> None:
    """Binds this process to `cpu_threads` cores before the framework starts its thread pools.

    The binding is what limits JAX, whose XLA CPU client sizes its pool from the cores it may
    use and has no thread-count setting; torch and TensorFlow are also told the count itself.
    """
    cores = sorted(os.sched_getaffinity(0))
    if cpu_threads > len(cores):
        raise BackendUnavailable(f"--cpu-threads {cpu_threads} asks for more cores than this process may use "
                                 f"({len(cores)}); use --cpu-threads {len(cores)} or fewer")
    os.sched_setaffinity(0, cores[:cpu_threads])


def resolved_device(pinned: Pinned, variables: Iterable[Any]) -> str:
    """Checks that every variable lives on the pinned device kind; returns e.g. 'cpu' or 'gpu:0 Tesla T4'.

    Raises RuntimeError when any variable ended up elsewhere: that run measured the wrong thing.
    """
    framework = frameworks.for_backend(pinned.backend)
    placements = sorted(set().union(*(framework.placements(variable.value) for variable in variables)))
    if any(placement.split(":")[0] != pinned.device for placement in placements):
        raise RuntimeError(
            f"{pinned.backend} placed variables on {', '.join(placements)} although the run was pinned to {pinned.device}"
        )
    if placements == ["cpu"]:
        return "cpu"
    names = [pinned.gpu_names[int(p.split(":")[1])] if int(p.split(":")[1]) < len(pinned.gpu_names)
             else "unknown GPU" for p in placements]
    return ", ".join(f"{placement} {name}" for placement, name in zip(placements, names))
