"""What the child needs to know of a framework: the `Framework` base class, whose per-framework methods each of
tensorflow.py, torch.py and jax.py says once, for that framework.

A framework module imports its framework inside its methods only: `child.backend.pin` pins the environment first,
then imports the framework (`load`).
"""

from __future__ import annotations

import importlib
import traceback
from abc import ABC, abstractmethod
from pathlib import Path
from types import ModuleType
from typing import Any, ContextManager

from kerasmnist.errors import BackendUnavailable
from kerasmnist.pinning import FRAMEWORK_MODULES, FRAMEWORK_PACKAGES


class Framework(ABC):
    """One framework behind a Keras backend, as a pinned child drives it. What is the same for every framework
    (importing it, the CPU's memory) is said here; the rest by each framework."""

    name: str  # the Keras backend's name, as --backend says it
    # Whether --data-parallel shards every batch, the last, partial one included, evenly over the devices, so that
    # a batch that does not split fails, but only when training gets there (run.py checks the splits up front).
    data_parallel_splits_every_batch: bool = False

    def load(self) -> ModuleType:
        """The framework, imported; BackendUnavailable where it is not installed."""
        try:
            return importlib.import_module(FRAMEWORK_MODULES[self.name])
        except ImportError as error:
            raise BackendUnavailable(
                f"backend {self.name} needs {FRAMEWORK_PACKAGES[self.name]}, which is not installed here "
                f"({error}); install it, e.g. pip install 'kerasmnist[cpu]'"
            ) from None

    @abstractmethod
    def set_thread_counts(self, cpu_threads: int) -> None:
        """Has the framework compute with `cpu_threads` CPU threads; the process is already bound to that many
        cores. Before the framework's runtime starts."""

    @abstractmethod
    def set_float32_matmul_precision(self, tf32: bool) -> None:
        """One float32 policy on every backend: full float32 matmuls and convolutions, or (`tf32`) TF32 tensor
        cores on Ampere and newer GPUs. Each framework's own default differs there."""

    @abstractmethod
    def check_device(self, device: str, cpu_devices: int) -> tuple[str, ...]:
        """Makes the framework use `device` ("cpu", split into `cpu_devices` virtual devices where the framework
        does it in-process; or "gpu") and checks that it sees it: the names of the GPUs it sees (none on the
        CPU). Raises BackendUnavailable, saying why and what to do, where it does not."""

    @abstractmethod
    def synchronize(self, tensor: Any) -> None:
        """Waits until `tensor` has been computed: every framework dispatches GPU work asynchronously."""

    @abstractmethod
    def placements(self, value: Any) -> set[str]:
        """Where one of the framework's tensors lives: {'cpu'}, {'gpu:0'}, or several GPUs when replicated."""

    def free_memory_bytes(self, device: str) -> int | None:
        """Memory free on the pinned device, where the framework can say; None where it cannot."""
        if device == "cpu":
            try:
                with open("/proc/meminfo", encoding="utf-8") as meminfo:
                    for line in meminfo:
                        if line.startswith("MemAvailable:"):
                            return int(line.split()[1]) * 1024
            except OSError:
                return None
            return None
        return self.free_gpu_memory_bytes()

    @abstractmethod
    def free_gpu_memory_bytes(self) -> int | None:
        """Memory free on the pinned GPU; None where the framework cannot say."""

    def peak_memory_bytes(self, device: str) -> int | None:
        """The most device memory the framework held at once in this process, on the pinned GPU (the
        largest over the GPUs of a data-parallel run); None on the CPU, which these counters do not cover."""
        return None if device == "cpu" else self.peak_gpu_memory_bytes()

    @abstractmethod
    def peak_gpu_memory_bytes(self) -> int:
        """The framework's own peak counter, the largest over the GPUs it sees."""

    @abstractmethod
    def facts(self) -> dict[str, Any]:
        """Version, build and devices, for the run record and `kerasmnist env`."""

    @abstractmethod
    def seed(self, seed: int) -> None:
        """Seeds the framework's own global generator, where it has one; Keras's, Python's and NumPy's are
        seeded by the caller (trainers/keras.py, `set_random_seed`)."""

    @abstractmethod
    def jit_compile_default(self, device: str, data_parallel: bool) -> bool:
        """What Keras's jit_compile="auto" would choose if the pinned device were the only one."""

    @abstractmethod
    def data_parallel_scope(self, device: str) -> ContextManager[object]:
        """Where a --data-parallel Keras model is built: replicated over every device of the pinned kind."""


def framework_error(error: BaseException) -> str:
    """A framework's own error in one line: its type, message, and the source line that raised it."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {Path(frames[-1].filename).parent.name}/{Path(frames[-1].filename).name}:{frames[-1].lineno} " \
            f"`{frames[-1].line}`" if frames else ""
    message = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}{where}" + (f": {message}" if message else "")
