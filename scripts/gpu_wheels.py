"""`make gpu-wheels`: the wheels a lent GPU machine lacks, for its CPython 3.12 on manylinux
x86-64, into one folder that travels with the working tree (scripts/gpu-wheels.txt says which
and why).

    python scripts/gpu_wheels.py [--out gpu-wheels] [--budget-mib 48]

Downloads with pip (binary wheels only, no dependencies: the list names every one), drops
from pyautoattack's wheel what no run imports (examples/, with a 44 MB model file), removes
wheels the list no longer names, and prints each file's size and the total; fails above the
budget (the device tool carries at most 64 MiB, the working tree included).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIST = ROOT / "scripts" / "gpu-wheels.txt"
PYTHON_VERSION = "3.12"
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
# wheel -> folders inside it that no import reaches
SLIM = {"pyautoattack": ("pyautoattack/examples/",)}


def requirements(path: Path = LIST) -> list[str]:
    """The pinned requirements of the list (`name==version`), comments dropped."""
    out = []
    for line in path.read_text().splitlines():
        req = line.split("#", 1)[0].strip()
        if req:
            if not re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+\-]+", req):
                raise SystemExit(f"{path.name}: not a pinned requirement: {req!r}")
            out.append(req)
    return out


def dist_key(name: str) -> str:
    """A distribution's name as wheel files spell it (PEP 427/503)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def slim_wheel(src: Path, dst: Path, drop: tuple[str, ...]) -> None:
    """Copy a wheel without the members under `drop`, their RECORD lines removed."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.filename.startswith(drop):
                continue
            data = zin.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(x for x in lines if not x.startswith(drop)).encode()
            zout.writestr(info, data)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "gpu-wheels")
    p.add_argument("--budget-mib", type=float, default=48.0)
    args = p.parse_args(argv)
    reqs = requirements()
    platforms = [a for plat in PLATFORMS for a in ("--platform", plat)]
    with tempfile.TemporaryDirectory() as tmp:
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        only = ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp"]
        cmd = [*pip, *only, *platforms, "--dest", tmp, *reqs]
        subprocess.run(cmd, check=True)
        args.out.mkdir(parents=True, exist_ok=True)
        wanted = set()
        for whl in sorted(Path(tmp).glob("*.whl")):
            name = dist_key(whl.name.split("-", 1)[0])
            dst = args.out / whl.name
            if name in SLIM:
                slim_wheel(whl, dst, SLIM[name])
            else:
                shutil.copyfile(whl, dst)
            wanted.add(whl.name)
    got = {dist_key(n.split("-", 1)[0]) for n in wanted}
    missing = [r for r in reqs if dist_key(r.split("==")[0]) not in got]
    if missing:
        raise SystemExit(f"pip left out {missing}")
    for stale in args.out.glob("*.whl"):
        if stale.name not in wanted:
            stale.unlink()
            print(f"removed {stale.name} (not in {LIST.name})")
    total = 0
    for whl in sorted(args.out.glob("*.whl")):
        size = whl.stat().st_size
        total += size
        print(f"{size / 2**20:8.2f} MiB  {whl.name}")
    print(f"{total / 2**20:8.2f} MiB  total, {len(wanted)} wheels in {args.out}")
    if total > args.budget_mib * 2**20:
        raise SystemExit(f"over the {args.budget_mib} MiB budget: the device tool carries 64 MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
