"""`kerasmnist bench matmul`: a scalar multiply and N x N matrix multiplies on every backend and device.

The classic demonstration of where a GPU pays off: a 10,000 x 10,000 product takes seconds on a
CPU and a fraction of one on a GPU, while a single scalar operation is quicker on the CPU, which
has no kernel launch and no transfer to wait for. Each backend x device is measured in its own
pinned process (`kerasmnist worker matmul`, spawned by `processes.run_pinned` like the training
cells); the entries go to OUT/bench.jsonl and into the report.

Timing: one warm-up call per shape (tracing, compilation, allocation) is excluded; then the
median, min and max of `repeats` calls, each synchronised (`backend.synchronize`).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from kerasmnist.child import backend
from kerasmnist import environment, records
from kerasmnist.launch import processes
from kerasmnist.errors import ConfigError

DEFAULT_SIZES = (1, 16, 128, 1024, 4096, 10000)
MEMORY_HEADROOM = 0.8  # never plan to fill more than this share of the free memory


def matmul_bytes(size: int) -> int:
    return 3 * size * size * 4  # two float32 operands and the product


def _timed(operation: Callable[[], Any], backend_name: str, repeats: int) -> list[float]:
    backend.synchronize(backend_name, operation())  # warm-up: tracing, compilation, allocation
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        backend.synchronize(backend_name, operation())
        seconds.append(time.perf_counter() - started)
    return seconds


def measure(backend_name: str, device: str, sizes: tuple[int, ...], repeats: int,
            float32_matmul_precision: str) -> records.BenchEntry:
    """In a pinned process: the timings of one backend on one device."""
    pinned = backend.pin(backend_name, device, float32_matmul_precision=float32_matmul_precision)
    import keras

    rows = []
    scalar = keras.ops.convert_to_tensor(3.0)
    rows.append(_row("scalar multiply", 0, 1, _timed(lambda: keras.ops.multiply(scalar, scalar), backend_name, repeats)))
    for size in sizes:
        free = backend.free_memory_bytes(backend_name, device)
        if free is not None and matmul_bytes(size) > MEMORY_HEADROOM * free:
            rows.append({"operation": "matmul", "size": size,
                         "error": f"{size}x{size} needs {matmul_bytes(size) / 2**30:.1f} GiB for two float32 operands "
                                  f"and the product; the {device} has {free / 2**30:.1f} GiB free"})
            continue
        try:
            a = keras.random.normal((size, size), seed=0)
            b = keras.random.normal((size, size), seed=1)
            rows.append(_row("matmul", size, 2 * size**3, _timed(lambda: keras.ops.matmul(a, b), backend_name, repeats)))
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


def run_bench(backends: tuple[str, ...], devices: tuple[str, ...], sizes: tuple[int, ...], repeats: int,
              out_dir: Path, command: str, echo: Callable[[str], None] = print,
              invocation: str | None = None, float32_matmul_precision: str = "float32") -> list[records.BenchEntry]:
    """Measures every backend x device in its own process; adds the entries to OUT/bench.jsonl, tagged with
    `invocation` (a compare's, for its peaks; else a new one), so no run replaces another's."""
    invocation = invocation or records.new_invocation()
    if not sizes or any(size < 1 for size in sizes):
        raise ConfigError(f"--sizes needs one or more sizes, each at least 1 (got {list(sizes)})")
    if repeats < 1:
        raise ConfigError(f"--repeats must be at least 1 (got {repeats})")
    records.ensure_writable(out_dir)
    path = out_dir / records.BENCH_FILE
    entries: list[records.BenchEntry] = []
    for backend_name in backends:
        for device in devices:
            echo(f"matmul: {backend_name} {device}")
            arguments = ["worker", "matmul", backend_name, device, "--sizes", ",".join(map(str, sizes)),
                         "--repeats", str(repeats), *(["--tf32"] if float32_matmul_precision == "tf32" else [])]
            child = processes.run_pinned(arguments, out_dir / "runs" / "matmul" / invocation / f"{backend_name}-{device}")
            if child.interrupted is not None:
                raise child.interrupted
            status, reason = child.status()
            entry = (records.BenchEntry.from_json(child.output()) if status == "ok" else
                     records.BenchEntry(benchmark="matmul", backend=backend_name, device=device, status=status,
                                        reason=reason, host=environment.host(), rows=[],
                                        float32_matmul_precision=float32_matmul_precision))
            entry = dataclasses.replace(entry, command=command, invocation=invocation)
            entries = records.add_result(path, entry)
            echo(f"    {entry.status}" + (f": {entry.reason}" if entry.reason else ""))
    return entries


def crossover(cpu_rows: list[dict[str, Any]], gpu_rows: list[dict[str, Any]]) -> int | None:
    """The smallest matrix size from which the GPU is faster at every measured size."""
    cpu = {row["size"]: row["median_seconds"] for row in cpu_rows if row["operation"] == "matmul" and "error" not in row}
    gpu = {row["size"]: row["median_seconds"] for row in gpu_rows if row["operation"] == "matmul" and "error" not in row}
    shared = sorted(set(cpu) & set(gpu))
    for index, size in enumerate(shared):
        if all(gpu[s] < cpu[s] for s in shared[index:]):
            return size
    return None

