"""`kerasmnist bench matmul`: a scalar multiply and N x N matrix multiplies on every backend and device.

The classic demonstration of where a GPU pays off: a 10,000 x 10,000 product takes seconds on a
CPU and a fraction of one on a GPU, while a single scalar operation is quicker on the CPU, which
has no kernel launch and no transfer to wait for. Each backend x device is measured in its own
pinned process (a MatmulTask, spawned by `processes.spawn` like the training cells, timed by
kerasmnist/child/matmul.py); the entries go to OUT/bench.jsonl and into the report.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from kerasmnist import environment, records
from kerasmnist.errors import ConfigError
from kerasmnist.launch import processes
from kerasmnist.launch.matrix import Matrix
from kerasmnist.tasks import MatmulTask

DEFAULT_SIZES = (1, 16, 128, 1024, 4096, 10000)
PEAK_REPEATS = 5


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
            task = MatmulTask(backend_name, device, sizes, repeats, float32_matmul_precision)
            child = processes.spawn(task, out_dir / "runs" / "matmul" / invocation / f"{backend_name}-{device}")
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


def peak_sizes(largest: int) -> tuple[int, ...]:
    """The sizes the peak is the best rate over: the rate still grows with size on some CPUs, falls on others."""
    return tuple(sorted({max(1, largest // 4), max(1, largest // 2), largest}))


def measure_peaks(matrix: Matrix, out_dir: Path, command: str, invocation: str, echo: Callable[[str], None]) -> None:
    """Matrix multiplies of several sizes on each backend and device of the matrix, in this invocation, kept in
    OUT/bench.jsonl: the report sets each cell's GFLOP/s against the best rate its backend reached there in the
    same run (the best measured GEMM rate), never against one from another hour."""
    if matrix.peak_matmul_size:
        run_bench(matrix.backends, matrix.devices, peak_sizes(matrix.peak_matmul_size), PEAK_REPEATS, out_dir,
                  command, echo, invocation=invocation, float32_matmul_precision=matrix.run.float32_matmul_precision)
