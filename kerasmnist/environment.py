"""Facts about the machine and the software, read at run time for every record."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

# Distribution names to try for each package; the first one installed is reported.
_DISTRIBUTIONS = {
    "keras": ("keras",),
    "numpy": ("numpy",),
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-macos"),
    "torch": ("torch",),
    "jax": ("jax",),
    "jaxlib": ("jaxlib",),
}

# Where Linux exposes each CPU's frequency scaling (cpufreq) and the turbo switches; tests point it at a fake tree.
CPU_SYSFS = Path("/sys/devices/system/cpu")


def collect() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "executable": sys.executable,  # the interpreter: an environment's own where the cell ran in one
        "platform": platform.platform(),
        "packages": package_versions(),
        "host": host(),
        "gpus": nvidia_gpus(),
    }


def software() -> dict[str, str | None]:
    """What a result's figures depend on besides the hardware: Python and the frameworks' versions."""
    return {"python": sys.version.split()[0], **package_versions()}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for package, distributions in _DISTRIBUTIONS.items():
        versions[package] = None
        for distribution in distributions:
            try:
                versions[package] = importlib.metadata.version(distribution)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return versions


def host() -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "hostname": platform.node(),
        **cpu_scaling(),
    }


def cpu_scaling() -> dict[str, Any]:
    """What the CPUs' clocks were set to do, as pyperf records it (pyperf/_collect_metadata.py: cpu_config's
    scaling driver, governor and intel_pstate turbo; cpu_freq), for the CPUs this process may use: their distinct
    scaling drivers and governors, whether turbo (boost) is on, and each one's current frequency in MHz. Each is
    None where the system does not expose it: a VM often has no cpufreq."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 0)

    def each(name: str) -> list[str]:
        return [value for cpu in cpus if (value := _sysfs_value(CPU_SYSFS / f"cpu{cpu}" / "cpufreq" / name))]

    return {"cpu_scaling_drivers": sorted(set(each("scaling_driver"))) or None,
            "cpu_governors": sorted(set(each("scaling_governor"))) or None,
            "cpu_turbo": _turbo(),
            "cpu_mhz": [round(int(khz) / 1000) for khz in each("scaling_cur_freq") if khz.isdigit()] or None}


def _turbo() -> bool | None:
    """Whether the CPUs may run above their base clock: intel_pstate's no_turbo (1: off), else cpufreq's boost
    (acpi-cpufreq, amd-pstate; 1: on); None where neither is exposed."""
    no_turbo = _sysfs_value(CPU_SYSFS / "intel_pstate" / "no_turbo")
    if no_turbo in ("0", "1"):
        return no_turbo == "0"
    boost = _sysfs_value(CPU_SYSFS / "cpufreq" / "boost")
    return boost == "1" if boost in ("0", "1") else None


def _sysfs_value(path: Path) -> str | None:
    """A sysfs file's value; None where it is missing, unreadable or empty."""
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def nvidia_gpus() -> list[dict[str, str]]:
    """The NVIDIA GPUs the driver reports, whether or not this run may use them."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        output = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    gpus = []
    for line in output.strip().splitlines():
        name, driver, memory = (part.strip() for part in line.split(","))
        gpus.append({"name": name, "driver": driver, "memory": memory})
    return gpus


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
