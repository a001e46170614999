"""TensorFlow, as the child drives it (base.Framework). TensorFlow reads no device variable of its own: its GPUs
are hidden, its CPU split and its threads set in-process, each before its runtime starts (before any op runs)."""

from __future__ import annotations

from typing import Any, ContextManager

from kerasmnist.child.frameworks.base import Framework
from kerasmnist.errors import BackendUnavailable


class TensorFlow(Framework):
    name = "tensorflow"

    def set_thread_counts(self, cpu_threads: int) -> None:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(cpu_threads)
        tf.config.threading.set_inter_op_parallelism_threads(cpu_threads)

    def set_float32_matmul_precision(self, tf32: bool) -> None:
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(tf32)  # TF32 for matmuls and convolutions by default

    def check_device(self, device: str, cpu_devices: int) -> tuple[str, ...]:
        import tensorflow as tf

        if device == "cpu":
            # set_visible_devices also hides the GPUs CUDA_VISIBLE_DEVICES does not cover (Apple Metal).
            tf.config.set_visible_devices([], "GPU")
            if cpu_devices > 1:
                (cpu,) = tf.config.list_physical_devices("CPU")
                tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices)
            return ()
        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            cuda_build = tf.test.is_built_with_cuda()
            raise BackendUnavailable(
                f"backend tensorflow sees no GPU (TensorFlow {tf.__version__}, "
                f"{'built with CUDA' if cuda_build else 'a build without CUDA support'}); "
                "use --device cpu, or install tensorflow[and-cuda] on a machine with an NVIDIA GPU"
            )
        return tuple(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus)

    def synchronize(self, tensor: Any) -> None:
        if "GPU" in tensor.device:  # eager CPU ops have finished when they return
            import tensorflow as tf

            tf.test.experimental.sync_devices()

    def placements(self, value: Any) -> set[str]:
        # A variable (for a mirrored one, its primary copy): '/job:localhost/replica:0/task:0/device:GPU:0'
        kind, _, index = str(value.device).rpartition("device:")[2].partition(":")
        return {"cpu" if kind == "CPU" else f"gpu:{index or 0}"}

    def free_gpu_memory_bytes(self) -> None:
        return None  # TensorFlow reports use, not capacity: its out-of-memory error is caught instead

    def peak_gpu_memory_bytes(self) -> int:
        import tensorflow as tf

        return max(tf.config.experimental.get_memory_info(f"GPU:{index}")["peak"]
                   for index in range(len(tf.config.list_logical_devices("GPU"))))

    def facts(self) -> dict[str, Any]:
        import tensorflow as tf

        build = tf.sysconfig.get_build_info()
        return {
            "version": tf.__version__,
            "cuda": build.get("cuda_version"),
            "cudnn": build.get("cudnn_version"),
            "devices": [f"{d.device_type}:{d.name.rsplit(':', 1)[-1]}" for d in tf.config.list_logical_devices()],
        }

    def seed(self, seed: int) -> None:
        import tensorflow as tf

        tf.random.set_seed(seed)

    def jit_compile_default(self, device: str, data_parallel: bool) -> bool:
        """XLA on the GPU. Keras's own "auto" turns XLA on whenever a GPU is physically present, even for a run
        pinned to the CPU, so the choice is made from the pinned device instead; Keras itself turns XLA off under
        tf.distribute, and so does this."""
        return device == "gpu" and not data_parallel

    def data_parallel_scope(self, device: str) -> ContextManager[object]:
        """A tf.distribute.MirroredStrategy's scope over every device of the pinned kind."""
        import tensorflow as tf

        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices(device.upper())]).scope()
