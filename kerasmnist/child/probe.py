"""The child half of `kerasmnist env`: what a framework is and sees (its `Framework.facts`, as every run record
holds them), read in a process pinned as a run is (a ProbeTask; the parent half is kerasmnist/launch/inventory.py)."""

from __future__ import annotations

from typing import Any

from kerasmnist.child import backend
from kerasmnist.child.frameworks import for_backend


def probe(name: str, device: str) -> dict[str, Any]:
    """In this process: pins `name` to `device` as a run does, then reports what the framework sees.
    Raises BackendUnavailable, as the run would, when it cannot."""
    backend.pin(name, device)
    return for_backend(name).facts()
