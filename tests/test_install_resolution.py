"""The committed pip resolutions in reports/install/ (made by reports/install/resolve.sh) say what
the installs get; these checks read them offline, so they are fast and need no network.

- The gpu extra: one CUDA major and one cuDNN for TensorFlow, torch and JAX, and the report was
  made from the extra as pyproject.toml has it now (it cannot silently go stale).
- The gpu-newest preset (configs/gpu-newest.toml): each environment resolves to the framework version it names on
  one CUDA major, made from the preset as it is now; its torch is newer than the extra's.
- Colab: installing kerasmnist changes nothing there but keras and kerasmnist.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from kerasmnist.launch import compare

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "reports" / "install"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
GPU = json.loads((INSTALL / "gpu-resolution.json").read_text())
TORCH_CUDA = json.loads((INSTALL / "torch-cuda.json").read_text())
COLAB = json.loads((INSTALL / "colab-resolution.json").read_text())
PRESET_TABLES = tomllib.loads((ROOT / "configs" / "gpu-newest.toml").read_text())["environments"]
NEWEST = json.loads((INSTALL / "gpu-newest-resolution.json").read_text())
FREEZE_PATH = INSTALL / "colab-gpu-freeze.txt"
COLAB_ENV = {"python_version": "3.13", "python_full_version": "3.13.0", "sys_platform": "linux",
             "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
             "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def cuda_major(name: str, version: str) -> str | None:
    """The CUDA major a package is built for, None for a package that is not CUDA-specific.

    CUDA 12's wheels carry it in the name (nvidia-cudnn-cu12, jax-cuda12-plugin); CUDA 13's toolkit
    wheels have no suffix (nvidia-cublas, nvidia-cuda-runtime, cuda-toolkit), and their own versions
    are not the CUDA version except for the runtime's and the toolkit's: those count by version, the
    others as "unsuffixed", which can never agree with a -cu12 package.
    """
    name = canonical(name)
    if m := re.search(r"-cu(\d+)$", name) or re.match(r"jax-cuda(\d+)-", name):
        return m.group(1)
    if name in ("cuda-toolkit", "cuda-bindings", "nvidia-cuda-runtime", "nvidia-cuda-nvrtc"):
        return str(Version(version).major)
    if name.startswith("nvidia-") and name != "nvidia-ml-py":
        return "unsuffixed"
    return None


def versions(install: list[dict]) -> dict[str, str]:
    return {canonical(item["name"]): item["version"] for item in install}


def assert_one_cuda_major_and_one_cudnn(install: list[dict], where: str) -> None:
    """CUDA 13's toolkit wheels are unsuffixed: they agree with a CUDA 13 (or later) resolution only."""
    majors = {}
    for item in install:
        if (major := cuda_major(item["name"], item["version"])) is not None:
            majors.setdefault(major, []).append(f"{item['name']}=={item['version']}")
    numbered = set(majors) - {"unsuffixed"}
    assert len(numbered) == 1, f"not one CUDA major {where}: {majors}"
    assert "unsuffixed" not in majors or int(*numbered) >= 13, f"CUDA 13's unsuffixed wheels {where}: {majors}"
    cudnn = [name for name in versions(install) if name.startswith("nvidia-cudnn")]
    assert len(cudnn) == 1, f"not one cuDNN {where}: {cudnn}"


# --- the gpu extra ------------------------------------------------------------------------------

def test_gpu_report_was_made_from_the_gpu_extra_as_it_is():
    assert GPU["requirements"] == PYPROJECT["project"]["optional-dependencies"]["gpu"], (
        "pyproject.toml's gpu extra changed since reports/install/gpu-resolution.json was made: "
        "run reports/install/resolve.sh --only gpu")


def test_gpu_report_covers_python_3_11_and_3_12():
    assert set(GPU["resolutions"]) == {"3.11", "3.12"}
    for short, resolution in GPU["resolutions"].items():
        assert resolution["python"].startswith(short + ".")


@pytest.mark.parametrize("python", ["3.11", "3.12"])
def test_gpu_resolution_has_one_cuda_major_and_one_cudnn(python):
    install = GPU["resolutions"][python]["install"]
    resolved = versions(install)
    for framework in ("tensorflow", "torch", "jax", "jaxlib"):
        assert framework in resolved, f"{framework} is not in the {python} resolution"
    assert_one_cuda_major_and_one_cudnn(install, f"on Python {python}")
    # Each framework takes its CUDA build: TensorFlow's and-cuda wheels, JAX's plugin, torch's
    # CUDA wheels (PyPI's Linux torch always depends on them).
    assert "and-cuda" in next(i for i in install if canonical(i["name"]) == "tensorflow")["requested_extras"]
    assert any(name.startswith("jax-cuda") for name in resolved)
    torch = next(i for i in install if canonical(i["name"]) == "torch")
    assert any(r.startswith("nvidia-cudnn") for r in torch["requires_dist"])


def test_gpu_constraints_pin_what_the_report_resolved():
    pins = [line for line in (ROOT / "configs" / "gpu-constraints.txt").read_text().splitlines()
            if line and not line.startswith("#")]
    pinned: dict[str, dict[str, str]] = {}
    for line in pins:
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", line
        pythons = [short for short in GPU["resolutions"]
                   if requirement.marker is None or requirement.marker.evaluate({"python_version": short})]
        for short in pythons:
            pinned.setdefault(short, {})[canonical(requirement.name)] = spec.version
    for short, resolution in GPU["resolutions"].items():
        resolved = versions(resolution["install"])
        wanted = {name: version for name, version in resolved.items()
                  if name in ("tensorflow", "torch", "jax", "jaxlib")
                  or name.startswith("nvidia-") or name in ("cuda-bindings", "cuda-toolkit")}
        assert pinned[short] == wanted, f"configs/gpu-constraints.txt is not the {short} resolution: rerun resolve.sh"


def test_torch_bound_admits_exactly_the_cuda12_releases():
    """The gpu extra's torch range takes in no release built for another CUDA major than the
    resolution's, and it still admits the newest one that is (no tighter than it must be)."""
    (torch_requirement,) = [Requirement(r) for r in GPU["requirements"] if Requirement(r).name == "torch"]
    install = GPU["resolutions"]["3.11"]["install"]
    (major,) = {m for i in install if (m := cuda_major(i["name"], i["version"])) is not None}
    same_major = []
    for version, facts in TORCH_CUDA["versions"].items():
        assert facts["cuda_majors"], f"torch {version}: no CUDA wheels found in its metadata"
        if torch_requirement.specifier.contains(version):
            assert facts["cuda_majors"] == [int(major)], f"torch {version} needs CUDA {facts['cuda_majors']}"
        if facts["cuda_majors"] == [int(major)]:
            same_major.append(Version(version))
    assert torch_requirement.specifier.contains(max(same_major)), \
        f"the torch bound leaves out {max(same_major)}, the newest CUDA {major} release"


# --- the gpu-newest preset ---------------------------------------------------------------------

def test_gpu_newest_is_found_by_name_and_runs_each_backend_on_the_gpu_in_an_environment_of_its_own():
    matrix, _ = compare.load(Path("gpu-newest"), {})
    assert matrix.devices == ("gpu",)
    for backend in matrix.backends:
        (environment,) = matrix.serving(backend)
        assert environment.managed and environment.backends == (backend,)


def test_gpu_newest_report_was_made_from_the_preset_as_it_is():
    rerun = "run reports/install/resolve.sh --only gpu-newest"
    made_from = {name: (resolution["packages"], resolution["python_version"])
                 for name, resolution in NEWEST["environments"].items()}
    assert made_from == {table["name"]: (table["packages"], table["python_version"]) for table in PRESET_TABLES}, (
        f"configs/gpu-newest.toml's environments changed since gpu-newest-resolution.json was made: {rerun}")
    assert NEWEST["kerasmnist_requirements"] == PYPROJECT["project"]["dependencies"], (
        f"kerasmnist's requirements changed since gpu-newest-resolution.json was made: {rerun}")
    for resolution in NEWEST["environments"].values():
        assert resolution["python"].startswith(resolution["python_version"] + ".")


@pytest.mark.parametrize("table", PRESET_TABLES, ids=lambda table: table["name"])
def test_each_gpu_newest_environment_is_its_frameworks_named_release_on_one_cuda_major(table):
    """Each environment serves one backend, and pins it; its CUDA build brings one cuDNN, of one CUDA major."""
    install = NEWEST["environments"][table["name"]]["install"]
    (backend,) = table["backends"]
    (requirement,) = [Requirement(line) for line in table["packages"] if Requirement(line).name == backend]
    (pin,) = requirement.specifier
    assert pin.operator == "==", f"{table['name']} names no release of {backend}: {requirement}"
    assert versions(install)[backend] == pin.version
    assert_one_cuda_major_and_one_cudnn(install, f"in {table['name']}")


def test_gpu_newest_torch_is_the_newest_release_and_newer_than_the_gpu_extras():
    (table,) = [table for table in PRESET_TABLES if "torch" in table["backends"]]
    torch = Version(versions(NEWEST["environments"][table["name"]]["install"])["torch"])
    assert torch == max(Version(version) for version in TORCH_CUDA["versions"]), \
        "torch-cuda.json knows a newer torch than configs/gpu-newest.toml's"
    assert torch > max(Version(versions(resolution["install"])["torch"]) for resolution in GPU["resolutions"].values())


# --- Colab --------------------------------------------------------------------------------------

def read_freeze() -> dict[str, str]:
    pins = {}
    for line in FREEZE_PATH.read_text().splitlines():
        if m := re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line.strip()):
            pins[canonical(m.group(1))] = m.group(2)
    return pins


FREEZE = read_freeze()
MAY_CHANGE = {"keras", "kerasmnist"}
MUST_STAY = ("tensorflow", "torch", "jax", "jaxlib", "numpy", "ml-dtypes")


def test_colab_report_was_made_from_the_committed_freeze_and_requirements():
    assert COLAB["freeze"]["sha256"] == hashlib.sha256(FREEZE_PATH.read_bytes()).hexdigest(), (
        "colab-gpu-freeze.txt changed since colab-resolution.json was made: run reports/install/resolve.sh --only colab")
    assert COLAB["kerasmnist_requirements"] == PYPROJECT["project"]["dependencies"], (
        "kerasmnist's requirements changed since colab-resolution.json was made: run reports/install/resolve.sh --only colab")
    assert "source-commit" in COLAB["freeze"] and COLAB["python"].startswith("3.13.")


def test_colab_install_changes_only_keras_and_kerasmnist():
    changed = versions(COLAB["installed_state"]["install"])
    assert set(changed) <= MAY_CHANGE, f"pip would also install or upgrade on Colab: {set(changed) - MAY_CHANGE}"
    assert "kerasmnist" in changed
    for name in MUST_STAY:
        assert name in FREEZE, f"{name} is not in Colab's freeze"
        assert name not in changed
    keras = changed.get("keras", FREEZE["keras"])
    assert Requirement(next(r for r in COLAB["kerasmnist_requirements"] if r.startswith("keras"))).specifier.contains(keras)


def test_colab_has_a_solution_that_keeps_every_version_but_keras():
    resolved = versions(COLAB["constrained"]["install"])
    for name, version in resolved.items():
        if name in MAY_CHANGE:
            continue
        assert FREEZE.get(name) == version, f"{name}: Colab has {FREEZE.get(name)}, the resolution {version}"


def test_colab_keras_upgrade_breaks_no_installed_package():
    keras = versions(COLAB["installed_state"]["install"]).get("keras", FREEZE["keras"])
    for dependent in COLAB["keras_dependents"].values():
        assert FREEZE[canonical(dependent["name"])] == dependent["version"]
        for line in dependent["requires_keras"]:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate(COLAB_ENV):
                assert requirement.specifier.contains(keras), f"{dependent['name']} needs {line}, pip would give keras {keras}"
    assert set(COLAB["pip_check"]["after"]) <= set(COLAB["pip_check"]["before"])
