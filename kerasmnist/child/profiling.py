"""Where a run's training time goes: cProfile over the steady epochs' training steps only.

Imports, tracing, compilation (the first epoch) and validation stay out of the profile, so it
shows what a steady training step costs. Self time is summed by who owns the code:

- Keras (Python): Keras's own Python, its per-batch machinery above all;
- framework calls: the framework's C++ entry points seen by Python (torch kernels, TensorFlow's
  TFE_Py_Execute running a compiled graph);
- framework (Python): the framework's Python wrappers;
- other: Python built-ins, NumPy, the standard library, this project.

cProfile sees only calls that Python makes to Python functions and built-in functions: a jitted
JAX function is neither, so the compiled step's time counts as the self time of the Keras (or
native) line that called it. It also slows Python-heavy code more than compiled code, so a
profiled run is timed but reported apart (its rows say "profiled").
"""

from __future__ import annotations

import cProfile
import pstats
from collections import defaultdict
from typing import Any

OWNERS = ("Keras (Python)", "framework calls", "framework (Python)", "other")
TOP_FUNCTIONS = 12
_FRAMEWORK_PACKAGES = ("/torch/", "/tensorflow/", "/jax/", "/jaxlib/", "/optree/")
_FRAMEWORK_NAMES = ("torch", "tensorflow", "_pywrap_tfe", "jax", "xla")


class StepProfiler:
    """Switched on around the training steps of every epoch but the first (the only one if just one)."""

    def __init__(self, enabled: bool, epochs: int):
        self.profile = cProfile.Profile() if enabled else None
        self.first_epoch = 1 if epochs > 1 else 0
        self.epochs: list[int] = []

    def start(self, epoch: int) -> None:
        if self.profile and epoch >= self.first_epoch:
            self.epochs.append(epoch + 1)
            self.profile.enable()

    def stop(self) -> None:
        if self.profile:
            self.profile.disable()

    def summary(self) -> dict[str, Any] | None:
        return summarize(pstats.Stats(self.profile), self.epochs) if self.profile and self.epochs else None


def owner(filename: str, function: str) -> str:
    if filename == "~":  # a built-in: named after its module, e.g. <built-in method torch.matmul>
        return "framework calls" if any(name in function for name in _FRAMEWORK_NAMES) else "other"
    if "/keras/" in filename:
        return "Keras (Python)"
    return "framework (Python)" if any(package in filename for package in _FRAMEWORK_PACKAGES) else "other"


def summarize(stats: pstats.Stats, epochs: list[int]) -> dict[str, Any]:
    seconds_by_owner: dict[str, float] = defaultdict(float)
    functions = []
    for (filename, line, function), (_, calls, self_seconds, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        seconds_by_owner[owner(filename, function)] += self_seconds
        functions.append((self_seconds, calls, _location(filename, line, function), owner(filename, function)))
    functions.sort(reverse=True)
    return {
        "tool": "cProfile",
        "epochs": epochs,
        "profiled_seconds": sum(seconds_by_owner.values()),
        "seconds_by_owner": {name: seconds_by_owner.get(name, 0.0) for name in OWNERS},
        "top_functions": [{"function": where, "owner": who, "self_seconds": seconds, "calls": calls}
                          for seconds, calls, where, who in functions[:TOP_FUNCTIONS]],
    }


def _location(filename: str, line: int, function: str) -> str:
    if filename == "~":
        return function
    short = filename.rsplit("site-packages/", 1)[-1]
    if "/kerasmnist/" in short:
        short = "kerasmnist/" + short.rsplit("/kerasmnist/", 1)[1]
    return f"{short}:{line} {function}"
