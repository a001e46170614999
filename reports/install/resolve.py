#!/usr/bin/env python3
"""Regenerates what pip resolves for kerasmnist's installs, without installing anything.

Run through `reports/install/resolve.sh`, which names the interpreters. Writes, beside this file:

- gpu-resolution.json: `pip install ".[gpu]"` on Linux x86_64 (Python 3.11 and 3.12), and
  configs/gpu-constraints.txt, the frameworks and CUDA wheels of that resolution pinned;
- gpu-newest-resolution.json: each environment of configs/gpu-newest.toml (each backend's newest CUDA build in
  an environment of its own), on Linux x86_64 with the Python it names;
- torch-cuda.json: for each torch release on PyPI (2.2 on), the CUDA wheels it requires;
- colab-resolution.json: installing kerasmnist's wheel onto Colab's GPU image (colab-gpu-freeze.txt).

Every resolution is a `pip install --dry-run --report` in a throwaway venv with a pinned pip and
no pip configuration (no pip.conf, no PIP_* variables: PyPI only). They read wheel metadata with
pip's `fast-deps` (HTTP range requests), so no multi-GB CUDA wheel is downloaded. Only the standard
library is used.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
GPU_PIP = "26.3"            # pip for the GPU-box resolutions
COLAB_PIP = "24.1.2"        # the pip in Colab's freeze: the one that will run the notebook's install
GPU_PLATFORMS = [f"manylinux_2_{m}_x86_64" for m in range(28, 16, -1)] + ["manylinux2014_x86_64"]
# Colab's image is Ubuntu 22.04 (glibc 2.35).
COLAB_PLATFORMS = [f"manylinux_2_{m}_x86_64" for m in range(35, 16, -1)] + ["manylinux2014_x86_64"]
FRAMEWORKS = ("tensorflow", "torch", "jax", "jaxlib")
COLAB_MAY_CHANGE = ("keras", "kerasmnist")
PRESET = ROOT / "configs" / "gpu-newest.toml"  # the shipped config of each backend's newest CUDA build


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def is_cuda_package(name: str) -> bool:
    """NVIDIA's CUDA wheels: nvidia-*-cuNN, the unsuffixed CUDA 13 nvidia-* ones, cuda-toolkit, cuda-bindings."""
    name = canonical(name)
    return name.startswith(("nvidia-", "cuda-")) and name not in ("nvidia-ml-py", "cuda-pathfinder")


# No pip configuration at all: not the user's, nor a machine-wide pip.conf (which `--isolated` still
# reads, and which may add constraints or other indexes), nor PIP_* variables. A CA bundle named
# in PIP_CERT (a TLS-inspecting proxy) is still passed on.
PIP_ENV = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": os.devnull}
PIP_OPTIONS = ["--isolated", "--disable-pip-version-check",
               *(["--cert", os.environ["PIP_CERT"]] if os.environ.get("PIP_CERT") else [])]


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, text=True, env=PIP_ENV, **kwargs)


class Venv:
    """A throwaway virtual environment with a pinned pip, used only to run pip's resolver."""

    def __init__(self, python: str, pip_version: str, path: Path):
        run([python, "-m", "venv", str(path)])
        self.python = str(path / "bin" / "python")
        self.pip(["install", "--quiet", f"pip=={pip_version}"])
        self.version = run([self.python, "-c", "import platform; print(platform.python_version())"],
                           capture_output=True).stdout.strip()
        self.site = Path(run([self.python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True).stdout.strip())

    def pip(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        return run([self.python, "-m", "pip", *PIP_OPTIONS, *args], **kwargs)


def dry_run_args(report: Path, platforms: list[str], python_version: str) -> list[str]:
    args = ["install", "--dry-run", "--quiet", "--report", str(report), "--use-feature=fast-deps",
            "--only-binary=:all:", "--python-version", python_version]
    for platform in platforms:
        args += ["--platform", platform]
    return args


def shown(cmd: list[str], tmp: Path) -> str:
    """The command as recorded: temporary paths replaced by placeholders."""
    return " ".join(cmd).replace(str(tmp), "$TMP")


def trimmed(report: dict) -> list[dict]:
    """pip's report, each item cut to what the checks need; the download URL to its file name."""
    items = []
    for item in report["install"]:
        meta = item["metadata"]
        items.append({
            "name": meta["name"],
            "version": meta["version"],
            "requested": item.get("requested", False),
            "requested_extras": item.get("requested_extras") or [],
            "file": item["download_info"]["url"].rsplit("/", 1)[-1],
            "requires_dist": meta.get("requires_dist", []),
        })
    return sorted(items, key=lambda i: canonical(i["name"]))


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size:,} bytes)", file=sys.stderr)


# --- the gpu extra -----------------------------------------------------------------------------

def resolve_gpu(pythons: dict[str, str], tmp: Path) -> dict:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    out = {
        "about": "pip's resolution of pyproject.toml's gpu extra for a Linux x86_64 GPU box; written by "
                 "reports/install/resolve.sh, checked by tests/test_install_resolution.py",
        "generated_at": datetime.date.today().isoformat(),
        "pip": GPU_PIP,
        "requirements": extra,
        "platforms": GPU_PLATFORMS,
        "resolutions": {},
    }
    for short in ("3.11", "3.12"):
        if short in pythons:
            out["resolutions"][short] = gpu_box_resolution(pythons[short], short, extra, tmp, f"gpu-{short}")
    return out


def gpu_box_resolution(python: str, short: str, requirements: list[str], tmp: Path, label: str) -> dict:
    """pip's resolution of `requirements` for a Linux x86_64 GPU box with Python `short`, in a venv of `python`."""
    venv = Venv(python, GPU_PIP, tmp / label)
    report = tmp / f"{label}.json"
    cmd = [*dry_run_args(report, GPU_PLATFORMS, short), "--ignore-installed", "--target", str(tmp / "target"),
           *requirements]
    venv.pip(cmd)
    return {
        "python": venv.version,
        "command": "PIP_CONFIG_FILE=/dev/null pip --isolated " + shown(cmd, tmp),
        "install": trimmed(json.loads(report.read_text())),
    }


def write_gpu_constraints(gpu: dict) -> None:
    """Pins the frameworks and CUDA wheels; a version that differs by Python gets a marker per version."""
    pins: dict[str, dict[str, str]] = {}
    for short, resolution in gpu["resolutions"].items():
        for item in resolution["install"]:
            if canonical(item["name"]) in FRAMEWORKS or is_cuda_package(item["name"]):
                pins.setdefault(item["name"], {})[short] = item["version"]
    lines = [
        "# The frameworks and NVIDIA CUDA wheels of reports/install/gpu-resolution.json, pinned:",
        "# the set resolved and checked for the gpu extra (one CUDA major, one cuDNN).",
        "#   pip install -e \".[gpu]\" -c configs/gpu-constraints.txt",
        "# Written by reports/install/resolve.sh; do not edit by hand.",
    ]
    for name, by_python in sorted(pins.items(), key=lambda kv: canonical(kv[0])):
        if len(set(by_python.values())) == 1 and len(by_python) == len(gpu["resolutions"]):
            lines.append(f"{name}=={next(iter(by_python.values()))}")
        else:
            lines += [f'{name}=={version}; python_version == "{short}"' for short, version in by_python.items()]
    (ROOT / "configs" / "gpu-constraints.txt").write_text("\n".join(lines) + "\n")


# --- the gpu-newest preset: each backend in an environment of its own ---------------------------------------

def resolve_preset(pythons: dict[str, str], tmp: Path) -> dict:
    """Each [[environments]] table of the preset as `kerasmnist env create` installs it: its packages, then
    kerasmnist with its own requirements (resolved together here, so that a conflict between them shows)."""
    tables = tomllib.loads(PRESET.read_text())["environments"]
    own = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    out = {
        "about": f"pip's resolution of each [[environments]] of {PRESET.relative_to(ROOT)} (its packages and "
                 "kerasmnist's own requirements) for a Linux x86_64 GPU box; written by reports/install/resolve.sh, "
                 "checked by tests/test_install_resolution.py",
        "generated_at": datetime.date.today().isoformat(),
        "pip": GPU_PIP,
        "config": str(PRESET.relative_to(ROOT)),
        "kerasmnist_requirements": own,
        "platforms": GPU_PLATFORMS,
        "environments": {},
    }
    for table in tables:
        short = table["python_version"]  # each environment of the preset names its Python: it is resolved for that one
        resolved = gpu_box_resolution(pythons[short], short, [*table["packages"], *own], tmp, f"preset-{table['name']}")
        out["environments"][table["name"]] = {"packages": table["packages"], "python_version": short, **resolved}
    return out


# --- torch releases and their CUDA --------------------------------------------------------------

def torch_cuda(python: str, tmp: Path) -> dict:
    venv = Venv(python, GPU_PIP, tmp / "torch")
    listing = venv.pip(["index", "versions", "torch", "--only-binary=:all:", "--python-version", "3.11",
                        *sum((["--platform", p] for p in GPU_PLATFORMS), [])],
                       capture_output=True).stdout
    versions = re.search(r"Available versions: (.*)", listing).group(1).split(", ")
    versions = [v for v in versions if tuple(int(x) for x in v.split(".")[:2]) >= (2, 2)]
    out = {"about": "the CUDA wheels each torch release on PyPI requires (Linux x86_64, CPython 3.11 wheel); "
                    "written by reports/install/resolve.sh",
           "generated_at": datetime.date.today().isoformat(), "versions": {}}
    for version in sorted(versions, key=lambda v: tuple(int(x) for x in v.split("."))):
        report = tmp / f"torch-{version}.json"
        venv.pip([*dry_run_args(report, GPU_PLATFORMS, "3.11"), "--no-deps", "--ignore-installed",
                  "--target", str(tmp / "target"), f"torch=={version}"])
        (item,) = json.loads(report.read_text())["install"]
        requires = [r.split(";")[0].replace(" ", "") for r in item["metadata"].get("requires_dist", [])]
        cuda = [r for r in requires if is_cuda_package(re.split(r"[\[<>=!~(]", r)[0])]
        majors = sorted({int(m) for r in cuda for m in re.findall(r"-cu(\d+)", r)})
        out["versions"][version] = {"file": item["download_info"]["url"].rsplit("/", 1)[-1],
                                    "cuda_majors": majors, "cuda_requires": cuda}
    return out


# --- Colab --------------------------------------------------------------------------------------

def read_freeze(path: Path) -> tuple[dict[str, tuple[str, str]], list[str], dict[str, str]]:
    """(canonical name -> (name, version)), the lines that are not `name==version`, the header's facts."""
    pins, others, facts = {}, [], {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if m := re.match(r"#\s*(source-[a-z]+):\s*(.*)", line):
            facts[m.group(1)] = m.group(2)
        if not line or line.startswith("#"):
            continue
        if m := re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line):
            pins[canonical(m.group(1))] = (m.group(1), m.group(2))
        else:
            others.append(line)
    return pins, others, facts


def build_wheel(venv: Venv, tmp: Path) -> Path:
    """kerasmnist's wheel, built from a copy of the sources (so nothing lands in the work tree)."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "kerasmnist", src / "kerasmnist", ignore=shutil.ignore_patterns("__pycache__"))
    venv.pip(["wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp / "dist"), str(src)])
    (wheel,) = (tmp / "dist").glob("kerasmnist-*.whl")
    return wheel


def write_stub(site: Path, name: str, version: str, requires: list[str]) -> None:
    """An installed distribution as pip sees it: a .dist-info folder with its METADATA."""
    info = site / f"{re.sub(r'[-.]+', '_', name)}-{version}.dist-info"
    info.mkdir()
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", *(f"Requires-Dist: {r}" for r in requires)]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    (info / "INSTALLER").write_text("stub\n")
    (info / "RECORD").write_text("")


def remove_stub(site: Path, name: str) -> None:
    for info in site.glob("*.dist-info"):
        if canonical(info.name.removesuffix(".dist-info").rsplit("-", 1)[0]) == canonical(name):
            shutil.rmtree(info)


def pip_check(venv: Venv) -> list[str]:
    result = subprocess.run([venv.python, "-m", "pip", *PIP_OPTIONS, "check"], capture_output=True, text=True,
                            env=PIP_ENV)
    return sorted(line for line in result.stdout.splitlines() if line and not line.startswith("No broken"))


def resolve_colab(python: str, tmp: Path) -> dict:
    freeze_path = HERE / "colab-gpu-freeze.txt"
    pins, unpinned, facts = read_freeze(freeze_path)
    requirements = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    venv = Venv(python, COLAB_PIP, tmp / "colab-resolver")
    wheel = build_wheel(venv, tmp)

    # 1. With every Colab version but keras's as a constraint: proves a solution that keeps them exists.
    constraints = tmp / "colab-constraints.txt"
    constraints.write_text("".join(f"{n}=={v}\n" for c, (n, v) in pins.items() if c not in COLAB_MAY_CHANGE))
    report_a = tmp / "colab-constrained.json"
    cmd_a = [*dry_run_args(report_a, COLAB_PLATFORMS, "3.13"), "--ignore-installed", "--target", str(tmp / "target"),
             "-c", str(constraints), str(wheel)]
    venv.pip(cmd_a)
    constrained = trimmed(json.loads(report_a.read_text()))

    # 2. Real metadata for the installed packages that depend on keras (and for Colab's keras itself).
    dependents_names = sorted(c for c in pins if "keras" in c or "tensorflow" in c)
    report_d = tmp / "colab-dependents.json"
    venv.pip([*dry_run_args(report_d, COLAB_PLATFORMS, "3.13"), "--no-deps", "--ignore-installed",
              "--target", str(tmp / "target"), *(f"{pins[c][0]}=={pins[c][1]}" for c in dependents_names)])
    dependents = {canonical(i["name"]): i for i in trimmed(json.loads(report_d.read_text()))}

    # 3. Colab's installed state: every pinned package of the freeze as an installed distribution,
    #    with its real dependencies where the check needs them; then pip as the notebook runs it.
    colab = Venv(python, COLAB_PIP, tmp / "colab")
    known = {(canonical(i["name"]), i["version"]): i["requires_dist"] for i in [*constrained, *dependents.values()]}
    for c, (name, version) in pins.items():
        if c != "pip":  # the venv's own pip is Colab's version already
            write_stub(colab.site, name, version, known.get((c, version), []))
    check_before = pip_check(colab)
    report_b = tmp / "colab-installed.json"
    cmd_b = [*dry_run_args(report_b, COLAB_PLATFORMS, "3.13"), str(wheel)]
    colab.pip(cmd_b)
    installed_state = trimmed(json.loads(report_b.read_text()))

    # 4. After the install: the changed packages in place, then `pip check` again.
    for item in installed_state:
        remove_stub(colab.site, item["name"])
        write_stub(colab.site, item["name"], item["version"], item["requires_dist"])
    check_after = pip_check(colab)

    return {
        "about": "pip installing kerasmnist's wheel onto Colab's GPU image; written by reports/install/resolve.sh, "
                 "checked by tests/test_install_resolution.py",
        "generated_at": datetime.date.today().isoformat(),
        "freeze": {"file": "reports/install/colab-gpu-freeze.txt", **facts,
                   "sha256": hashlib.sha256(freeze_path.read_bytes()).hexdigest()},
        "python": colab.version,
        "pip": COLAB_PIP,
        "platforms": COLAB_PLATFORMS,
        "kerasmnist_requirements": requirements,
        "not_constraints": {
            "because_they_may_change": list(COLAB_MAY_CHANGE),
            "because_not_on_pypi": unpinned,
        },
        "installed_state": {
            "about": "Colab's freeze installed (as metadata stubs) in a Python 3.13 venv, then the notebook's "
                     "`pip install` with pip's default --upgrade-strategy only-if-needed: what pip would install or "
                     "upgrade",
            "command": "PIP_CONFIG_FILE=/dev/null pip --isolated " + shown(cmd_b, tmp),
            "install": installed_state,
        },
        "constrained": {
            "about": "the same wheel resolved with every Colab version except keras's as a constraint",
            "command": "PIP_CONFIG_FILE=/dev/null pip --isolated " + shown(cmd_a, tmp),
            "install": constrained,
        },
        "keras_dependents": {c: {"name": i["name"], "version": i["version"],
                                 "requires_keras": [r for r in i["requires_dist"]
                                                    if canonical(re.split(r"[\s\[<>=!~;(]", r)[0]) == "keras"]}
                             for c, i in dependents.items() if c != "keras"},
        "pip_check": {"before": check_before, "after": check_after},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", default=[], metavar="X.Y=PATH",
                        help="the interpreter for Python X.Y (3.11 and 3.12: the gpu extra; 3.12: the gpu-newest "
                             "preset; 3.13: Colab)")
    parser.add_argument("--only", choices=["gpu", "gpu-newest", "torch", "colab"], action="append",
                        help="regenerate only these (default: all)")
    args = parser.parse_args()
    pythons = dict(p.split("=", 1) for p in args.python)
    only = set(args.only or ["gpu", "gpu-newest", "torch", "colab"])
    with tempfile.TemporaryDirectory(prefix="kerasmnist-resolve-") as name:
        tmp = Path(name)
        if "gpu" in only:
            gpu = resolve_gpu(pythons, tmp)
            write_json(HERE / "gpu-resolution.json", gpu)
            write_gpu_constraints(gpu)
        if "gpu-newest" in only:
            write_json(HERE / "gpu-newest-resolution.json", resolve_preset(pythons, tmp))
        if "torch" in only:
            write_json(HERE / "torch-cuda.json", torch_cuda(pythons["3.11"], tmp))
        if "colab" in only:
            write_json(HERE / "colab-resolution.json", resolve_colab(pythons["3.13"], tmp))


if __name__ == "__main__":
    main()
