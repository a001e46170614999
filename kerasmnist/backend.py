"""Chooses the Keras backend and pins the device, once per process, before Keras is imported.

This is the only module that sets KERAS_BACKEND or any device-selection variable. Keras reads
the backend once, at its first import, so a process can only ever train under one backend:
comparisons run every backend in its own process (see `unpinned_environment`).

How each backend is pinned:
- CPU: CUDA_VISIBLE_DEVICES="" hides every CUDA GPU from every framework, so nothing can be
  placed there; on top, JAX_PLATFORMS=cpu, KERAS_TORCH_DEVICE=cpu (Keras >= 3.14), and for
  TensorFlow `set_visible_devices([], "GPU")`, which also hides non-CUDA devices (Apple Metal).
- GPU: JAX_PLATFORMS=cuda and KERAS_TORCH_DEVICE=cuda; TensorFlow places ops on GPU:0 by default.
  If the backend sees no GPU the run stops (BackendUnavailable) rather than falling back.
After training, `resolved_device` checks where the weights and optimizer state really live.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import Any, Iterable

from kerasmnist.errors import BackendUnavailable

FRAMEWORK_MODULES = {"tensorflow": "tensorflow", "torch": "torch", "jax": "jax"}
FRAMEWORK_PACKAGES = {"tensorflow": "tensorflow-cpu (or tensorflow)", "torch": "torch", "jax": "jax"}

# Every variable this module may set; a parent that spawns runs strips them (unpinned_environment).
_PINNING_VARIABLES = ("KERAS_BACKEND", "CUDA_VISIBLE_DEVICES", "JAX_PLATFORMS", "KERAS_TORCH_DEVICE")


@dataclass(frozen=True)
class Pinned:
    backend: str
    device: str
    framework_version: str
    gpu_names: tuple[str, ...]  # what the backend sees on the pinned device kind (empty on CPU)


def pinning_environment(backend: str, device: str) -> dict[str, str]:
    """The environment variables that select `backend` and pin it to `device`."""
    env = {"KERAS_BACKEND": backend}
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        if backend == "jax":
            env["JAX_PLATFORMS"] = "cpu"
        if backend == "torch":
            env["KERAS_TORCH_DEVICE"] = "cpu"
    else:
        if backend == "jax":
            env["JAX_PLATFORMS"] = "cuda"
        if backend == "torch":
            env["KERAS_TORCH_DEVICE"] = "cuda"
    return env


def unpinned_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of the environment without any pinning, for spawning a run of another backend/device."""
    source = os.environ if environ is None else environ
    return {key: value for key, value in source.items() if key not in _PINNING_VARIABLES}


def pin(backend: str, device: str) -> Pinned:
    """Selects the backend and pins the device for this process, then imports Keras.

    Raises BackendUnavailable when the framework is missing or the device is not there.
    """
    if "keras" in sys.modules:
        active = sys.modules["keras"].backend.backend()
        if active != backend:
            raise BackendUnavailable(
                f"Keras is already imported with backend {active} in this process; "
                f"backend {backend} needs a process of its own"
            )
    os.environ.update(pinning_environment(backend, device))
    # TensorFlow's C++ start-up chatter buries the progress bar; a user's own setting wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    framework = _import_framework(backend)
    gpu_names = _check_device(backend, device, framework)
    import keras  # noqa: F401  (the first import of Keras in this process: it reads KERAS_BACKEND)

    return Pinned(backend, device, framework.__version__, gpu_names)


def _import_framework(backend: str) -> Any:
    try:
        return importlib.import_module(FRAMEWORK_MODULES[backend])
    except ImportError as error:
        raise BackendUnavailable(
            f"backend {backend} needs {FRAMEWORK_PACKAGES[backend]}, which is not installed here "
            f"({error}); install it, e.g. pip install 'kerasmnist[cpu]'"
        ) from None


def _check_device(backend: str, device: str, framework: Any) -> tuple[str, ...]:
    if backend == "tensorflow":
        if device == "cpu":
            # Must happen before TF initialises its devices, i.e. before any op runs.
            framework.config.set_visible_devices([], "GPU")
            return ()
        gpus = framework.config.list_physical_devices("GPU")
        if not gpus:
            cuda_build = framework.test.is_built_with_cuda()
            raise BackendUnavailable(
                f"backend tensorflow sees no GPU (TensorFlow {framework.__version__}, "
                f"{'built with CUDA' if cuda_build else 'a build without CUDA support'}); "
                "use --device cpu, or install tensorflow[and-cuda] on a machine with an NVIDIA GPU"
            )
        return tuple(framework.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus)
    if backend == "torch":
        if device == "cpu":
            return ()
        if not framework.cuda.is_available():
            raise BackendUnavailable(
                f"backend torch sees no CUDA GPU (torch {framework.__version__}, "
                f"CUDA build: {framework.version.cuda or 'none'}); use --device cpu, "
                "or install a CUDA build of torch on a machine with an NVIDIA GPU"
            )
        return tuple(framework.cuda.get_device_name(i) for i in range(framework.cuda.device_count()))
    # jax: JAX_PLATFORMS makes the first device query fail when the platform is missing
    # (a RuntimeError, or an AssertionError from jaxlib builds without CUDA).
    try:
        devices = framework.devices()
    except Exception as error:
        raise BackendUnavailable(
            f"backend jax sees no {device.upper()} ({(str(error) or type(error).__name__).splitlines()[0]}); "
            + ("use --device cpu, or install jax[cuda12] on a machine with an NVIDIA GPU" if device == "gpu" else "")
        ) from None
    return tuple(d.device_kind for d in devices) if device == "gpu" else ()


def variable_placement(value: Any) -> str:
    """Where one backend tensor lives: 'cpu' or 'gpu:N'."""
    if hasattr(value, "devices"):  # a JAX array
        (jax_device,) = value.devices()
        return "cpu" if jax_device.platform == "cpu" else f"gpu:{jax_device.id}"
    torch_device = getattr(value, "device", None)
    if hasattr(torch_device, "type"):  # a torch tensor
        return "cpu" if torch_device.type == "cpu" else f"gpu:{torch_device.index or 0}"
    # A TensorFlow variable: '/job:localhost/replica:0/task:0/device:GPU:0'
    kind, _, index = str(value.device).rpartition("device:")[2].partition(":")
    return "cpu" if kind == "CPU" else f"gpu:{index or 0}"


def resolved_device(pinned: Pinned, variables: Iterable[Any]) -> str:
    """Checks that every variable lives on the pinned device kind; returns e.g. 'cpu' or 'gpu:0 Tesla T4'.

    Raises RuntimeError when any variable ended up elsewhere: that run measured the wrong thing.
    """
    placements = sorted({variable_placement(variable.value) for variable in variables})
    if len(placements) != 1 or placements[0].split(":")[0] != pinned.device:
        raise RuntimeError(
            f"{pinned.backend} placed variables on {', '.join(placements)} although the run was pinned to {pinned.device}"
        )
    placement = placements[0]
    if placement == "cpu":
        return "cpu"
    index = int(placement.split(":")[1])
    name = pinned.gpu_names[index] if index < len(pinned.gpu_names) else "unknown GPU"
    return f"{placement} {name}"
