"""PyTorch, as the child drives it (base.Framework). Keras finds its device in KERAS_TORCH_DEVICE (pinning.py)."""

from __future__ import annotations

from typing import Any, ContextManager

from kerasmnist.child.frameworks.base import Framework
from kerasmnist.errors import BackendUnavailable


class Torch(Framework):
    name = "torch"

    def set_thread_counts(self, cpu_threads: int) -> None:
        import torch

        torch.set_num_threads(cpu_threads)
        torch.set_num_interop_threads(cpu_threads)

    def set_float32_matmul_precision(self, tf32: bool) -> None:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = tf32  # torch's default: TF32 for convolutions only
        torch.backends.cudnn.allow_tf32 = tf32

    def check_device(self, device: str, cpu_devices: int) -> tuple[str, ...]:
        import torch

        if device == "cpu":
            return ()
        if not torch.cuda.is_available():
            raise BackendUnavailable(
                f"backend torch sees no CUDA GPU (torch {torch.__version__}, "
                f"CUDA build: {torch.version.cuda or 'none'}); use --device cpu, "
                "or install a CUDA build of torch on a machine with an NVIDIA GPU"
            )
        return tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))

    def synchronize(self, tensor: Any) -> None:
        if tensor.is_cuda:
            import torch

            torch.cuda.synchronize(tensor.device)

    def placements(self, value: Any) -> set[str]:
        return {"cpu" if value.device.type == "cpu" else f"gpu:{value.device.index or 0}"}

    def free_gpu_memory_bytes(self) -> int:
        import torch

        return torch.cuda.mem_get_info()[0]

    def peak_gpu_memory_bytes(self) -> int:
        import torch

        return max(torch.cuda.max_memory_allocated(index) for index in range(torch.cuda.device_count()))

    def facts(self) -> dict[str, Any]:
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

    def seed(self, seed: int) -> None:
        import torch

        torch.manual_seed(seed)

    def jit_compile_default(self, device: str, data_parallel: bool) -> bool:
        return False  # as Keras's "auto" chooses under torch

    def data_parallel_scope(self, device: str) -> ContextManager[object]:
        raise NotImplementedError("--data-parallel under torch is refused by the configuration (config.py)")
