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
  TF32 tensor cores (Ampere and newer GPUs) only when asked for (`_set_float32_matmul_precision`).
After training, `resolved_device` checks where the weights and optimizer state really live.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from kerasmnist.errors import BackendUnavailable
from kerasmnist.pinning import FRAMEWORK_MODULES, FRAMEWORK_PACKAGES, apply_pinning


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
    framework = _import_framework(backend)
    if cpu_threads is not None:
        _set_thread_counts(backend, framework, cpu_threads)
    _set_float32_matmul_precision(backend, framework, float32_matmul_precision)
    gpu_names = _check_device(backend, device, framework, cpu_devices)
    import keras  # noqa: F401  (the first import of Keras in this process: it reads KERAS_BACKEND)

    return Pinned(backend, device, framework.__version__, gpu_names, len(gpu_names) or cpu_devices)


def import_tensorflow() -> Any:
    """TensorFlow, for tf.data input under any backend. Under torch or JAX it sees no GPU: its runtime
    would otherwise map the memory the training framework needs on every visible GPU."""
    import tensorflow as tf

    if os.environ.get("KERAS_BACKEND") != "tensorflow":
        tf.config.set_visible_devices([], "GPU")  # before TensorFlow's runtime starts, i.e. before any op runs
    return tf


def _set_float32_matmul_precision(backend: str, framework: Any, precision: str) -> None:
    """One float32 policy on every backend. Each framework's default differs on Ampere and newer GPUs:
    TensorFlow and JAX use TF32 for float32 matmuls and convolutions, torch for convolutions only."""
    tf32 = precision == "tf32"
    if backend == "torch":
        framework.backends.cuda.matmul.allow_tf32 = tf32
        framework.backends.cudnn.allow_tf32 = tf32
    elif backend == "tensorflow":
        framework.config.experimental.enable_tensor_float_32_execution(tf32)
    else:
        framework.config.update("jax_default_matmul_precision", "tensorfloat32" if tf32 else "float32")


def _import_framework(backend: str) -> Any:
    try:
        return importlib.import_module(FRAMEWORK_MODULES[backend])
    except ImportError as error:
        raise BackendUnavailable(
            f"backend {backend} needs {FRAMEWORK_PACKAGES[backend]}, which is not installed here "
            f"({error}); install it, e.g. pip install 'kerasmnist[cpu]'"
        ) from None


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


def _set_thread_counts(backend: str, framework: Any, cpu_threads: int) -> None:
    if backend == "torch":
        framework.set_num_threads(cpu_threads)
        framework.set_num_interop_threads(cpu_threads)
    elif backend == "tensorflow":
        # Must happen before TensorFlow's runtime starts, i.e. before any op runs.
        framework.config.threading.set_intra_op_parallelism_threads(cpu_threads)
        framework.config.threading.set_inter_op_parallelism_threads(cpu_threads)


def _check_device(backend: str, device: str, framework: Any, cpu_devices: int) -> tuple[str, ...]:
    if backend == "tensorflow":
        if device == "cpu":
            # Both must happen before TF initialises its devices, i.e. before any op runs.
            framework.config.set_visible_devices([], "GPU")
            if cpu_devices > 1:
                (cpu,) = framework.config.list_physical_devices("CPU")
                framework.config.set_logical_device_configuration(
                    cpu, [framework.config.LogicalDeviceConfiguration()] * cpu_devices)
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
    # jax: JAX_PLATFORMS makes the first device query fail when the platform cannot start: a RuntimeError
    # from a plugin that fails, or a bare AssertionError when JAX skipped CUDA because no /dev/nvidia*
    # device node exists (jax/_src/xla_bridge.py, `backends`). The error is shown with where JAX raised it.
    try:
        devices = framework.devices()
        problem = None if all(d.platform == device for d in devices) else f"its devices are {devices}"
    except Exception as error:
        problem = f"JAX_PLATFORMS={os.environ.get('JAX_PLATFORMS')} failed to initialise: {framework_error(error)}"
    if problem:
        raise BackendUnavailable(
            f"backend jax sees no {device.upper()} ({problem}); "
            + ("use --device cpu, or install jax[cuda12] on a machine with an NVIDIA GPU" if device == "gpu" else "")
        )
    return tuple(d.device_kind for d in devices) if device == "gpu" else ()


def framework_error(error: BaseException) -> str:
    """A framework's own error in one line: its type, message, and the source line that raised it."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {Path(frames[-1].filename).parent.name}/{Path(frames[-1].filename).name}:{frames[-1].lineno} " \
            f"`{frames[-1].line}`" if frames else ""
    message = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}{where}" + (f": {message}" if message else "")


def variable_placements(value: Any) -> set[str]:
    """Where one backend tensor lives: {'cpu'}, {'gpu:0'}, or several GPUs when replicated."""
    if hasattr(value, "devices"):  # a JAX array, sharded or replicated over one or more devices
        return {"cpu" if d.platform == "cpu" else f"gpu:{d.id}" for d in value.devices()}
    torch_device = getattr(value, "device", None)
    if hasattr(torch_device, "type"):  # a torch tensor
        return {"cpu" if torch_device.type == "cpu" else f"gpu:{torch_device.index or 0}"}
    # A TensorFlow variable (for a mirrored one, its primary copy): '/job:localhost/.../device:GPU:0'
    kind, _, index = str(value.device).rpartition("device:")[2].partition(":")
    return {"cpu" if kind == "CPU" else f"gpu:{index or 0}"}


def resolved_device(pinned: Pinned, variables: Iterable[Any]) -> str:
    """Checks that every variable lives on the pinned device kind; returns e.g. 'cpu' or 'gpu:0 Tesla T4'.

    Raises RuntimeError when any variable ended up elsewhere: that run measured the wrong thing.
    """
    placements = sorted(set().union(*(variable_placements(variable.value) for variable in variables)))
    if any(placement.split(":")[0] != pinned.device for placement in placements):
        raise RuntimeError(
            f"{pinned.backend} placed variables on {', '.join(placements)} although the run was pinned to {pinned.device}"
        )
    if placements == ["cpu"]:
        return "cpu"
    names = [pinned.gpu_names[int(p.split(":")[1])] if int(p.split(":")[1]) < len(pinned.gpu_names)
             else "unknown GPU" for p in placements]
    return ", ".join(f"{placement} {name}" for placement, name in zip(placements, names))


def synchronize(backend: str, tensor: Any) -> None:
    """Waits until `tensor` has been computed: every backend dispatches GPU work asynchronously."""
    if backend == "jax":
        tensor.block_until_ready()
    elif backend == "torch":
        if tensor.is_cuda:
            import torch

            torch.cuda.synchronize(tensor.device)
    elif "GPU" in tensor.device:  # TensorFlow: eager CPU ops have finished when they return
        import tensorflow as tf

        tf.test.experimental.sync_devices()


def free_memory_bytes(backend: str, device: str) -> int | None:
    """Memory free on the pinned device, where the backend can say; None where it cannot."""
    if device == "cpu":
        try:
            with open("/proc/meminfo", encoding="utf-8") as meminfo:
                for line in meminfo:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None
    if backend == "torch":
        import torch

        return torch.cuda.mem_get_info()[0]
    if backend == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        return stats["bytes_limit"] - stats.get("bytes_in_use", 0) if "bytes_limit" in stats else None
    return None  # TensorFlow reports use, not capacity: its out-of-memory error is caught instead


def peak_memory_bytes(backend: str, device: str) -> int | None:
    """The most device memory the framework held at once in this process, on the pinned GPU (the
    largest over the GPUs of a data-parallel run); None on the CPU, which these counters do not cover."""
    if device == "cpu":
        return None
    if backend == "torch":
        import torch

        return max(torch.cuda.max_memory_allocated(index) for index in range(torch.cuda.device_count()))
    if backend == "jax":
        import jax

        return max((d.memory_stats() or {}).get("peak_bytes_in_use", 0) for d in jax.devices())
    import tensorflow as tf

    return max(tf.config.experimental.get_memory_info(f"GPU:{index}")["peak"]
               for index in range(len(tf.config.list_logical_devices("GPU"))))
