"""What a pinned child is asked to do: one typed task, sent whole as JSON on the child's stdin.

Both floors read this module: the launch side writes a task (`launch.processes.spawn`), the child reads it
(`python -m kerasmnist.child`). The JSON is plain data, so a child may run another Python and other package
versions than its parent; it carries the parent's kerasmnist version, and a child whose kerasmnist is another
(an environment's, launch/environments.py) does not run it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar

from kerasmnist import __version__
from kerasmnist.config import RunConfig, run_config_from
from kerasmnist.errors import BackendUnavailable, ConfigError


@dataclass(frozen=True)
class TrainTask:
    """Train one configuration and write its record (a comparison's cell)."""

    kind: ClassVar[str] = "train"
    config: RunConfig


@dataclass(frozen=True)
class MatmulTask:
    """Time a scalar multiply and N x N matrix multiplies on one backend and device (`kerasmnist bench`)."""

    kind: ClassVar[str] = "matmul"
    backend: str
    device: str
    sizes: tuple[int, ...]
    repeats: int
    float32_matmul_precision: str = "float32"


@dataclass(frozen=True)
class ProbeTask:
    """Pin one backend to one device as a run does and say what the framework sees (`kerasmnist env`)."""

    kind: ClassVar[str] = "probe"
    backend: str
    device: str


Task = TrainTask | MatmulTask | ProbeTask
_KINDS: dict[str, type[Task]] = {kind.kind: kind for kind in (TrainTask, MatmulTask, ProbeTask)}


def to_json(task: Task, spawned_at: float) -> str:
    """The task as the child reads it, with when its parent started it (where the child's timeline begins)."""
    fields = {"config": task.config.to_dict()} if isinstance(task, TrainTask) else dataclasses.asdict(task)
    return json.dumps({"kind": task.kind, "task": fields, "spawned_at": spawned_at, "kerasmnist_version": __version__})


def from_json(text: str) -> tuple[Task, float]:
    """The task a parent sent, and when it started this child. A parent of another kerasmnist version is refused
    as a missing backend is (BackendUnavailable: the cell is skipped, with the reason): the two might not mean
    the same by a setting, and the row would say a version that did not run."""
    try:
        message: dict[str, Any] = json.loads(text)
        kind, fields = _KINDS[message["kind"]], message["task"]
        spawned_at = float(message["spawned_at"])
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"a pinned child needs one task as JSON on stdin ({type(error).__name__}: {error})") \
            from None
    sent_by = message.get("kerasmnist_version", __version__)
    if sent_by != __version__:
        raise BackendUnavailable(f"this environment has kerasmnist {__version__}, the one that ran the comparison "
                                 f"{sent_by}: install that one here (kerasmnist env create makes such environments)")
    if kind is TrainTask:
        return TrainTask(run_config_from(fields["config"], "the task")), spawned_at
    if kind is MatmulTask:
        fields = fields | {"sizes": tuple(fields["sizes"])}
    return kind(**fields), spawned_at
