"""report.md as a whole, against golden files: tests/golden/NAME.md is the report of the synthetic results set
NAME below (made-up figures from conftest.fake_entry, no training), built the way `kerasmnist report` builds it.

The other report tests assert what the report finds (the typed rows, ratios and verdicts); these check how it
says it. After a deliberate change to the report's layout or wording, regenerate the files and read their diff:

    KERASMNIST_REGENERATE_GOLDEN=1 python -m pytest -q tests/test_golden.py
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import pytest

from conftest import fake_entry
from kerasmnist import records, report
from kerasmnist.launch.matrix import cells, matrix_from

GOLDEN = Path(__file__).parent / "golden"
REGENERATE = os.environ.get("KERASMNIST_REGENERATE_GOLDEN") == "1"
DRIFT = [1.0, 1.12, 0.93, 1.05]  # the machine's speed in each round, shared by the round's cells
NOISE = [1.0, 1.013, 0.992, 1.006, 0.997, 1.009]  # each cell's own, by its order in the plan
USER_MODEL = f"{Path(__file__).parent / 'fixtures' / 'user' / 'models.py'}:build_bn_convnet"
NO_GPU = {"tensorflow": "backend tensorflow sees no GPU (TensorFlow 2.21.0, built with CUDA); use --device cpu",
          "torch": "backend torch sees no CUDA GPU (torch 2.13.0, CUDA build: none); use --device cpu",
          "jax": "backend jax sees no GPU (its devices are [CpuDevice(id=0)]); use --device cpu"}


def plan(matrix: dict, run: dict | None = None, variants: list | None = None):
    return cells(matrix_from({"matrix": matrix, "run": run or {}, **({"variants": variants} if variants else {})},
                             {}, "t"))


def timed(cell, seconds: float, **options):
    """An ok cell whose steady epoch takes `seconds` times its round's drift and its own noise."""
    return fake_entry(cell, steady=seconds * DRIFT[cell.repeat] * NOISE[cell.order % len(NOISE)], **options)


def no_gpu_here() -> list[records.CellEntry]:
    """The CNN under every backend on the CPU and the GPU of a machine without one, 3 rounds: every GPU cell
    skipped; one CPU cell killed."""
    entries = []
    for cell in plan({"backends": ["tensorflow", "torch", "jax"], "devices": ["cpu", "gpu"], "models": ["cnn"],
                      "rounds": 3}):
        backend = cell.config.backend
        if cell.config.device == "gpu":
            entries.append(fake_entry(cell, status="skipped", reason=NO_GPU[backend]))
        elif backend == "torch" and cell.repeat == 1:
            entries.append(fake_entry(cell, status="failed", reason="killed by SIGKILL (out of memory?): Epoch 3/5"))
        else:
            entries.append(timed(cell, {"tensorflow": 2.0, "torch": 3.1, "jax": 1.0}[backend]))
    return entries


def user_model_and_native_loops() -> list[records.CellEntry]:
    """A user's model with a `|` in its --model-arg, one round under torch and JAX (undecided), JAX's GFLOP/s
    against its matmul peak (MATMUL); the FFN under Keras, Keras with jit_compile and torch's own loop, 4 rounds
    (Keras against native, the goal's verdict, a knob's effect)."""
    user = [timed(cell, {"torch": 1.5, "jax": 1.2}[cell.config.backend])
            for cell in plan({"backends": ["torch", "jax"], "models": [USER_MODEL], "rounds": 1},
                             {"model_args": {"activation": "relu|gelu", "width": 32}})]
    steady = {("keras", "auto"): 4.0, ("native", "auto"): 1.0, ("keras", "true"): 2.0}
    accuracy = {("keras", "auto"): 0.95, ("native", "auto"): 0.96, ("keras", "true"): 0.955}
    native = [timed(cell, steady[cell.config.implementation, cell.config.jit_compile],
                    accuracy=accuracy[cell.config.implementation, cell.config.jit_compile], invocation="second")
              for cell in plan({"backends": ["torch"], "models": ["ffn"], "implementations": ["keras", "native"],
                                "rounds": 4}, variants=[{"implementations": ["keras"], "jit_compile": "true"}])]
    return user + native


# `bench matmul` in the first round of the user's model: JAX's peak on this CPU; a size too big for it.
MATMUL = records.BenchEntry(
    benchmark="matmul", backend="jax", device="cpu", status="ok", reason=None, resolved_device="cpu",
    host={"cpu_model": "Test CPU", "logical_cores": 2, "memory_bytes": 2**33, "hostname": "laptop"}, invocation="test",
    started_at="2026-11-22T09:59:00+00:00",
    rows=[{"operation": "scalar multiply", "size": 0, "median_seconds": 1e-5, "gflops_per_second": None},
          {"operation": "matmul", "size": 1024, "median_seconds": 0.01, "gflops_per_second": 2.4},
          {"operation": "matmul", "size": 100000,
           "error": "100000x100000 needs 111.8 GiB for two float32 operands and the product; the cpu has 7.0 GiB free"}])


def two_machine_kinds() -> list[records.CellEntry]:
    """The FFN under torch and JAX on two Slurm machine kinds, the second twice as fast, 3 rounds each, with
    where each compare's wall time went; on the first kind, the CNN under JAX at four batch sizes, 2 rounds (a
    sweep, and the cost of a step split into a fixed and a per-sample part)."""
    phases = records.Phases({"process start and imports": 1.0, "first epoch (tracing, compiling)": 2.0,
                             "steady epochs": 5.0, "evaluation": 2.0})
    ffn = [dataclasses.replace(timed(cell, scale * {"jax": 1.0, "torch": 2.0}[cell.config.backend], invocation=kind),
                               machine_kind=kind, wall_seconds=10.0, phases=phases)
           for kind, scale in (("one", 1.0), ("two", 0.5))
           for cell in plan({"backends": ["torch", "jax"], "models": ["ffn"], "rounds": 3})]
    steps = {size: -(-1000 // size) for size in (64, 128, 256, 512)}  # fake_entry's runs train on 1,000 images
    sweep = [dataclasses.replace(timed(cell, steps[cell.config.batch_size] * (2e-3 + 10e-6 * cell.config.batch_size),
                                       invocation="one"), machine_kind="one")
             for cell in plan({"backends": ["jax"], "models": ["cnn"], "batch_sizes": [64, 128, 256, 512], "rounds": 2})]
    return ffn + sweep


SETS = {"no-gpu-here": (no_gpu_here, []), "user-model-and-native-loops": (user_model_and_native_loops, [MATMUL]),
        "two-machine-kinds": (two_machine_kinds, [])}
BUILT_AT = re.compile(r"Report built \d{4}-\d\d-\d\d \d\d:\d\d UTC")


def report_of(entries: list[records.CellEntry], bench: list[records.BenchEntry]) -> str:
    """report.md of `entries` and `bench` written to ./results (the report names the folder: a relative one reads
    the same anywhere), the date it was built replaced by a fixed one."""
    results = Path("results")
    results.mkdir()
    for name, lines in ((records.RESULTS_FILE, entries), (records.BENCH_FILE, bench)):
        (results / name).write_text("".join(json.dumps(line.to_json()) + "\n" for line in lines))
    text = report.build([results], results).read_text(encoding="utf-8")
    return BUILT_AT.sub("Report built 2026-12-01 12:00 UTC", text)


@pytest.mark.parametrize("name", sorted(SETS))
def test_report_md_matches_its_golden_file(tmp_path, monkeypatch, name):
    """The whole report.md of each synthetic results set, line for line (regenerate: see the module's docstring)."""
    make_entries, bench = SETS[name]
    entries = make_entries()
    monkeypatch.chdir(tmp_path)
    text = report_of(entries, bench)
    golden = GOLDEN / f"{name}.md"
    if REGENERATE:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert golden.is_file(), f"{golden} is missing: regenerate it (see tests/test_golden.py's docstring)"
    assert text.splitlines() == golden.read_text(encoding="utf-8").splitlines(), (
        f"report.md differs from {golden}; if the change is meant, regenerate (see tests/test_golden.py)")
