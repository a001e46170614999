"""JAX, as the child drives it (base.Framework). JAX finds its platform in JAX_PLATFORMS and its virtual CPU
devices in XLA_FLAGS (pinning.py), both read when it starts."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
from typing import Any, ContextManager

from kerasmnist.child.frameworks.base import Framework, framework_error
from kerasmnist.errors import BackendUnavailable


class Jax(Framework):
    name = "jax"
    data_parallel_splits_every_batch = True  # Keras's DataParallel under JAX (IndivisibleError)

    def set_thread_counts(self, cpu_threads: int) -> None:
        """Nothing to set: XLA's CPU client sizes its pool from the cores the process may use, and pinning bound
        those."""

    def set_float32_matmul_precision(self, tf32: bool) -> None:
        import jax

        # JAX's default: TF32 for matmuls and convolutions
        jax.config.update("jax_default_matmul_precision", "tensorfloat32" if tf32 else "float32")

    def check_device(self, device: str, cpu_devices: int) -> tuple[str, ...]:
        import jax

        # JAX_PLATFORMS makes the first device query fail when the platform cannot start: a RuntimeError from a
        # plugin that fails, or a bare AssertionError when JAX skipped CUDA because no /dev/nvidia* device node
        # exists (jax/_src/xla_bridge.py, `backends`). The error is shown with where JAX raised it.
        try:
            devices = jax.devices()
            problem = None if all(d.platform == device for d in devices) else f"its devices are {devices}"
        except Exception as error:
            problem = f"JAX_PLATFORMS={os.environ.get('JAX_PLATFORMS')} failed to initialise: {framework_error(error)}"
        if problem:
            raise BackendUnavailable(
                f"backend jax sees no {device.upper()} ({problem}); "
                + ("use --device cpu, or install jax[cuda12] on a machine with an NVIDIA GPU" if device == "gpu" else "")
            )
        return tuple(d.device_kind for d in devices) if device == "gpu" else ()

    def synchronize(self, tensor: Any) -> None:
        tensor.block_until_ready()

    def placements(self, value: Any) -> set[str]:
        # An array, sharded or replicated over one or more devices
        return {"cpu" if d.platform == "cpu" else f"gpu:{d.id}" for d in value.devices()}

    def free_gpu_memory_bytes(self) -> int | None:
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        return stats["bytes_limit"] - stats.get("bytes_in_use", 0) if "bytes_limit" in stats else None

    def peak_gpu_memory_bytes(self) -> int:
        import jax

        return max((d.memory_stats() or {}).get("peak_bytes_in_use", 0) for d in jax.devices())

    def facts(self) -> dict[str, Any]:
        import jax

        return {
            "version": jax.__version__,
            "jaxlib": importlib.metadata.version("jaxlib"),
            "devices": [f"{d.platform}:{d.id} {d.device_kind}" for d in jax.devices()],
        }

    def seed(self, seed: int) -> None:
        """Nothing to seed: JAX has no global generator (Keras's seed generator draws its keys)."""

    def jit_compile_default(self, device: str, data_parallel: bool) -> bool:
        return True  # as Keras's "auto" chooses under JAX

    def data_parallel_scope(self, device: str) -> ContextManager[object]:
        """Keras's distribution API over every device of the pinned kind, set for the process: no scope needed."""
        import keras

        devices = keras.distribution.list_devices(device)
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return contextlib.nullcontext()
