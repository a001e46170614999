"""The child half of `kerasmnist bench matmul`: a scalar multiply and N x N matrix multiplies, timed in a
process pinned to one backend and device (a MatmulTask; the parent half is kerasmnist/launch/bench.py).

Timing: one warm-up call per shape (tracing, compilation, allocation) is excluded; then the
median, min and max of `repeats` calls, each synchronised (`Framework.synchronize`).
"""

from __future__ import annotations

import statistics
import time
from datetime import datetime, timezone
from typing import Any, Callable

from kerasmnist import environment, records
from kerasmnist.child import backend
from kerasmnist.child.frameworks import Framework, for_backend

MEMORY_HEADROOM = 0.8  # never plan to fill more than this share of the free memory


def matmul_bytes(size: int) -> int:
    return 3 * size * size * 4  # two float32 operands and the product


def _timed(operation: Callable[[], Any], framework: Framework, repeats: int) -> list[float]:
    framework.synchronize(operation())  # warm-up: tracing, compilation, allocation
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        framework.synchronize(operation())
        seconds.append(time.perf_counter() - started)
    return seconds


def measure(backend_name: str, device: str, sizes: tuple[int, ...], repeats: int,
            float32_matmul_precision: str) -> records.BenchEntry:
    """In a pinned process: the timings of one backend on one device."""
    pinned = backend.pin(backend_name, device, float32_matmul_precision=float32_matmul_precision)
    import keras

    framework = for_backend(backend_name)
    rows = []
    scalar = keras.ops.convert_to_tensor(3.0)
    rows.append(_row("scalar multiply", 0, 1, _timed(lambda: keras.ops.multiply(scalar, scalar), framework, repeats)))
    for size in sizes:
        free = framework.free_memory_bytes(device)
        if free is not None and matmul_bytes(size) > MEMORY_HEADROOM * free:
            rows.append({"operation": "matmul", "size": size,
                         "error": f"{size}x{size} needs {matmul_bytes(size) / 2**30:.1f} GiB for two float32 operands "
                                  f"and the product; the {device} has {free / 2**30:.1f} GiB free"})
            continue
        try:
            a = keras.random.normal((size, size), seed=0)
            b = keras.random.normal((size, size), seed=1)
            rows.append(_row("matmul", size, 2 * size**3, _timed(lambda: keras.ops.matmul(a, b), framework, repeats)))
        except Exception as error:  # out of memory, above all: the other sizes are still measured
            rows.append({"operation": "matmul", "size": size,
                         "error": (str(error) or type(error).__name__).splitlines()[0][:300]})
        finally:
            a = b = None
    return records.BenchEntry(
        benchmark="matmul", backend=backend_name, device=device, status="ok", reason=None, host=environment.host(),
        rows=rows, resolved_device="cpu" if device == "cpu" else f"gpu:0 {pinned.gpu_names[0]}", repeats=repeats,
        started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), environment=environment.collect(),
        float32_matmul_precision=float32_matmul_precision)


def _row(operation: str, size: int, flops: int, seconds: list[float]) -> dict[str, Any]:
    median = statistics.median(seconds)
    return {"operation": operation, "size": size, "median_seconds": median, "min_seconds": min(seconds),
            "max_seconds": max(seconds), "gflops_per_second": flops / median / 1e9 if flops > 1 else None}
