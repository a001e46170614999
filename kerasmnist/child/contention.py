"""How much else the machine was doing while a run trained: the noise check every record carries.

pyperf and hyperfine warn when a benchmark shared its machine; this does the same for each run,
over its training epochs only (validation and evaluation excluded), from what the OS counts:

- own_cpu_seconds: this process's user + system CPU time (all its threads);
- other_cpu_seconds: busy CPU time of the whole machine (Linux /proc/stat) minus this process's;
- steal_seconds: time the hypervisor gave this machine's CPUs to other guests (/proc/stat);
- load averages (1 min) at the first epoch's start and the last epoch's end;
- wall_seconds and logical_cores, so shares can be read off: own ≤ wall × cores.

Where /proc/stat does not exist (macOS, Windows) the machine-wide figures are None.
"""

from __future__ import annotations

import os
import time
from typing import Any

_PROC_STAT = "/proc/stat"
# /proc/stat's cpu line: user nice system idle iowait irq softirq steal guest guest_nice (guest is
# already inside user, so it is not added twice).
_BUSY_FIELDS = (0, 1, 2, 5, 6)
_STEAL_FIELD = 7


def machine_ticks() -> tuple[float, float] | None:
    """(busy seconds, steal seconds) of all CPUs since boot, or None where the OS does not say."""
    try:
        with open(_PROC_STAT, encoding="ascii") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    steal = fields[_STEAL_FIELD] if len(fields) > _STEAL_FIELD else 0
    return sum(fields[i] for i in _BUSY_FIELDS) / tick, steal / tick


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


class ContentionMeter:
    """Summed over the spans between start() and stop(): the training steps of each epoch."""

    def __init__(self) -> None:
        self.wall = self.own = 0.0
        self.busy: float | None = 0.0
        self.steal: float | None = 0.0
        self.load_start: float | None = None
        self.load_end: float | None = None
        self._begun: tuple[float, float, tuple[float, float] | None] | None = None

    def start(self) -> None:
        if self.load_start is None:
            self.load_start = _load_average()
        self._begun = (time.perf_counter(), _own_cpu_seconds(), machine_ticks())

    def stop(self) -> None:
        if self._begun is None:
            return
        wall, own, ticks = self._begun
        now_ticks = machine_ticks()
        self.wall += time.perf_counter() - wall
        self.own += _own_cpu_seconds() - own
        if ticks is None or now_ticks is None or self.busy is None:
            self.busy = self.steal = None
        else:
            self.busy += now_ticks[0] - ticks[0]
            self.steal += now_ticks[1] - ticks[1]
        self.load_end = _load_average()
        self._begun = None

    def summary(self, steady_epoch_cv: float | None) -> dict[str, Any]:
        # The machine's counters tick at 100 Hz: a sliver of "other" time can come out negative.
        other = None if self.busy is None else max(0.0, self.busy - self.own)
        return {
            "wall_seconds": self.wall,
            "logical_cores": os.cpu_count(),
            "own_cpu_seconds": self.own,
            "other_cpu_seconds": other,
            "steal_seconds": self.steal,
            "load_average_start": self.load_start,
            "load_average_end": self.load_end,
            "steady_epoch_cv": steady_epoch_cv,
        }
