"""Where a matrix runs on Slurm: the machine kinds of a config's [slurm] table, its [[machines]] tables and
compare's --slurm-* flags. What runs (kerasmnist/launch/matrix.py) knows nothing of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from kerasmnist.config import DEVICES
from kerasmnist.errors import ConfigError
from kerasmnist.launch.matrix import choices, table_of

# The [slurm] keys (each a `compare --slurm-KEY` flag too) and the types they take.
SLURM_KEYS = {"partition": str, "constraint": str, "gres": str, "time_minutes": int, "cpus_per_task": int,
              "mem_gb": (int, float), "setup": (list, tuple), "parallel": int, "exclusive": bool}


@dataclass(frozen=True)
class MachineKind:
    """A kind of Slurm node the matrix runs on: how to ask Slurm for one, and the devices it runs.
    None leaves a setting to the cluster's defaults."""

    name: str
    devices: tuple[str, ...]
    partition: str | None = None
    constraint: str | None = None
    gres: str | None = None
    time_minutes: int | None = None
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    setup: tuple[str, ...] = ()  # shell lines run on the node before kerasmnist
    parallel: int = 4  # rounds of this kind running at once
    exclusive: bool = True  # a benchmark that shares its node measures its neighbours



def machine_kinds(file_values: Mapping[str, Any], flags: Mapping[str, Any], devices: tuple[str, ...],
                  asked: bool, where: str) -> tuple[MachineKind, ...]:
    """The Slurm machine kinds: each [[machines]] table over the [slurm] defaults (flags over the table), or
    one kind of the defaults alone. None where there is no [slurm], no [[machines]] and no --slurm."""
    defaults = {**table_of(file_values, "slurm", where), **{key: value for key, value in flags.items() if value not in (None, ())}}
    tables = file_values.get("machines", [])
    if not isinstance(tables, list) or not all(isinstance(table, dict) for table in tables):
        raise ConfigError(f"{where}: machines must be tables, each written [[machines]]")
    if not (asked or defaults or tables):
        return ()
    kinds = [_machine_kind(defaults, table, devices, f"{where} [[machines]] {number}")
             for number, table in enumerate(tables, start=1)] if tables else \
        [_machine_kind(defaults, {"name": defaults.get("partition") or "slurm"}, devices, f"{where} [slurm]")]
    names = [kind.name for kind in kinds]
    if len(set(names)) < len(names):
        raise ConfigError(f"{where}: two [[machines]] tables are named {max(names, key=names.count)!r}; "
                          "each kind needs a name of its own")
    return tuple(kinds)


def _machine_kind(defaults: Mapping[str, Any], table: Mapping[str, Any], devices: tuple[str, ...],
                  where: str) -> MachineKind:
    values = {**defaults, **table}
    unknown = sorted(set(values) - set(SLURM_KEYS) - {"name", "devices"})
    if unknown:
        raise ConfigError(f"{where}: unknown Slurm key {unknown[0]}; allowed: name, devices, {', '.join(SLURM_KEYS)}")
    name = values.get("name")
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise ConfigError(f"{where}: a machine kind needs a name = \"...\" (no slash; got {name!r})")
    for key, kind in SLURM_KEYS.items():
        value = values.get(key)
        if value is None:
            continue
        wrong = isinstance(value, bool) and kind is not bool or not isinstance(value, kind)
        if wrong or key == "setup" and not all(isinstance(line, str) for line in value) \
                or kind is int and value < 1 or key == "mem_gb" and value <= 0:
            expected = {str: "a string", int: "a whole number of at least 1", bool: "true or false",
                        (list, tuple): "a list of shell lines"}.get(kind, "a positive number")
            raise ConfigError(f"{where}: {key} must be {expected} (got {value!r})")
    kind_devices = choices(values.get("devices", list(devices)), DEVICES, "devices", where)
    outside = [device for device in kind_devices if device not in devices]
    if outside:
        raise ConfigError(f"{where}: devices has {outside[0]!r}, which the matrix does not run "
                          f"(its devices: {', '.join(devices)})")
    settings = {key: values[key] for key in SLURM_KEYS if values.get(key) is not None}
    settings["setup"] = tuple(settings.get("setup", ()))
    return MachineKind(name=name.strip(), devices=kind_devices, **settings)
