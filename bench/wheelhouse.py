"""Download into .whl/ the py3.12 manylinux wheels the GPU machine lacks, at exactly our versions.

The lent GPU machine (offline) has Python 3.12 with torch, torchvision, scikit-learn, numpy,
pyyaml, typer, rich, httpx and jinja2, but not the service's other packages. This starts from
those pyproject.toml pins, reads each downloaded wheel's METADATA for its requirements (markers
evaluated for CPython 3.12 on x86-64 Linux), and downloads what is neither there nor already
here, at the version this virtualenv runs (the tested one). bench/gpu.sh installs the result
with `pip install --no-index --no-deps --target`.

    .venv/bin/python bench/wheelhouse.py            # -> .whl/, plus .whl/MANIFEST.txt
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
# Every runtime dependency in pyproject.toml is carried unless that machine has it (PRESENT) or
# the GPU pass never imports it (NOT_CARRIED), so a dependency added later travels without
# anyone remembering this file. pytest runs the engine's GPU tests there.
NOT_CARRIED = {
    "psycopg": "the GPU pass runs the embedded stack on SQLite",
    "s3fs": "checkpoints stay on the local disk there (s3fs brings ~15 MiB of botocore)",
}
DEV_CARRIED = ("pytest", "pytest-timeout")
# On the GPU machine already, with what they pull in (the device tool's KINDS.md lists them).
# click is there too, but carried: celery pins click>=8.3.1 and that machine's version is
# unknown (a py3.12 + torch 2.11 twin without it failed at `import uvicorn`).
PRESENT = {
    canonicalize_name(n)
    for n in [
        *("torch", "torchvision", "scikit-learn", "numpy", "pyyaml", "typer", "rich", "httpx"),
        *("jinja2", "markupsafe", "typing-extensions", "shellingham", "markdown-it-py"),
        *("mdurl", "pygments", "anyio", "idna", "certifi", "httpcore", "h11"),
        *("filelock", "sympy", "mpmath", "networkx", "fsspec", "pillow", "scipy", "joblib"),
        *("threadpoolctl", "setuptools", "triton"),
    ]
}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
ENV = {
    "python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
    "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
    "implementation_name": "cpython", "platform_python_implementation": "CPython",
}  # fmt: skip


def project_requirements(*, dev: bool) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extra = project["optional-dependencies"]["dev"] if dev else []
    return [Requirement(dep) for dep in project["dependencies"] + extra]


def pinned() -> dict[str, str]:
    out = {}
    for req in project_requirements(dev=True):
        (spec,) = req.specifier
        out[canonicalize_name(req.name)] = spec.version
    return out


def needed() -> list[Requirement]:
    """pyproject's runtime dependencies, and DEV_CARRIED, that the GPU machine lacks."""
    dev = [r for r in project_requirements(dev=True) if canonicalize_name(r.name) in DEV_CARRIED]
    skip = PRESENT | NOT_CARRIED.keys()
    return [
        r for r in project_requirements(dev=False) + dev if canonicalize_name(r.name) not in skip
    ]


def download(name: str, version: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--implementation", "cp", "-d", str(dest),
           "--quiet", f"{name}=={version}"]  # fmt: skip
    for platform in PLATFORMS:
        cmd[-2:-2] = ["--platform", platform]
    subprocess.run(cmd, check=True)
    stem = re.sub(r"[-_.]+", "_", name).lower()
    for wheel in dest.glob("*.whl"):
        parts = wheel.name.split("-")
        if re.sub(r"[-_.]+", "_", parts[0]).lower() == stem and parts[1] == version:
            return wheel
    raise FileNotFoundError(f"no wheel for {name}=={version} in {dest}")


def requirements(wheel: Path, extras: set[str]) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode()
    reqs = [Requirement(line.split(":", 1)[1].strip()) for line in text.splitlines()
            if line.startswith("Requires-Dist:")]  # fmt: skip
    keep = []
    for req in reqs:
        marker: Marker | None = req.marker
        if marker is None or any(marker.evaluate({**ENV, "extra": e}) for e in extras | {""}):
            keep.append(req)
    return keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=ROOT / ".whl")
    args = parser.parse_args()
    args.dest.mkdir(exist_ok=True)
    pins = pinned()
    queue = [(canonicalize_name(r.name), set(r.extras)) for r in needed()]
    done: dict[str, Path] = {}
    while queue:
        name, extras = queue.pop(0)
        if name in done or name in PRESENT:
            continue
        # pyproject's pin, else the version this virtualenv runs (the one the tests passed on)
        version = pins.get(name) or md.version(name)
        wheel = download(name, version, args.dest)
        done[name] = wheel
        for req in requirements(wheel, extras):
            if not req.specifier.contains(pins.get(canonicalize_name(req.name)) or
                                          md.version(req.name), prereleases=True):  # fmt: skip
                raise SystemExit(f"{wheel.name} needs {req}, but we run {md.version(req.name)}")
            queue.append((canonicalize_name(req.name), set(req.extras)))
    stale = [w for w in args.dest.glob("*.whl") if w not in done.values()]
    for wheel in stale:
        wheel.unlink()
    total = sum(w.stat().st_size for w in done.values())
    lines = [f"{w.name}\t{w.stat().st_size}" for w in sorted(done.values())]
    (args.dest / "MANIFEST.txt").write_text("\n".join(lines) + f"\ntotal\t{total}\n")
    print("\n".join(lines))
    print(f"{len(done)} wheels, {total / 2**20:.1f} MiB in {args.dest}")


if __name__ == "__main__":
    main()
