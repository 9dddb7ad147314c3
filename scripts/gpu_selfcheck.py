"""What scripts/gpu_check.sh checks before it spends GPU time, with no GPU needed: on the
lent machine first, and alone in the dry run (`make gpu-check-dry`).

    python scripts/gpu_selfcheck.py [--smoke]

1. versions: Python, torch, its CUDA and cuDNN, torchvision, numpy, pillow, the GPU (or "no
   CUDA GPU"); the torch pyproject.toml pins, when this one is another; where each package
   the library imports comes from.
2. imports: every module of worker.sipat and runconfig, and every module that their files,
   tests/sipat/test_cuda.py and its conftest import, the lazy imports inside functions too.
3. API: every attribute chain (torch.backends.cudnn.benchmark, np.random.default_rng,
   Image.Transpose.FLIP_LEFT_RIGHT, ...) and every keyword argument of a call that those files
   use on a third-party module, looked up in the versions installed here. Each one that is
   missing is printed with where it is used: what differs from the versions the project
   tests (torch 2.14 there, 2.11 on the lent machine).
4. --smoke, on the CPU and tiny: bench.py's method loop with its torchattacks line, a
   training run (with tqdm's bar), the run's AutoAttack, and bench_loader's line.

Exit status: 0 everything passed; 1 an import or the smoke failed; 3 only API differences.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import pkgutil
import platform
import sys
import tempfile
import time
import tomllib
import traceback
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# the files whose imports the GPU steps reach (the benchmarks are worker/sipat/bench*.py)
SCANNED = (
    "worker/sipat/*.py",
    "runconfig/*.py",
    "tests/sipat/conftest.py",
    "tests/sipat/test_cuda.py",
)
LOCAL = frozenset({"worker", "runconfig", "tests", "conftest", "__future__"})
# what a lent GPU machine has without any carried wheel: torch, torchvision and what they
# require (the Requires-Dist of torch 2.11.0 and torchvision 0.26.0, without CUDA's packages)
LENT_BASE = frozenset(
    {
        "torch",
        "torchvision",
        "numpy",
        "PIL",
        "filelock",
        "typing_extensions",
        "setuptools",
        "sympy",
        "networkx",
        "jinja2",
        "fsspec",
    }
)


def scanned_files(root: Path = ROOT) -> list[Path]:
    return sorted({p for pattern in SCANNED for p in root.glob(pattern)})


def _where(path: Path, node: ast.AST) -> str:
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return f"{rel}:{getattr(node, 'lineno', '?')}"


def imported_modules(files: list[Path]) -> dict[str, list[str]]:
    """Every absolute module the files import, at any depth in them -> where."""
    found: dict[str, list[str]] = defaultdict(list)
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found[alias.name].append(_where(path, node))
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found[node.module].append(_where(path, node))
    return dict(found)


def third_party(files: list[Path]) -> dict[str, list[str]]:
    """Top-level names of the non-standard, non-project modules the files import -> where."""
    out: dict[str, list[str]] = defaultdict(list)
    for module, where in imported_modules(files).items():
        top = module.split(".")[0]
        if top not in sys.stdlib_module_names and top not in LOCAL:
            out[top].extend(where)
    return dict(out)


def _bindings(tree: ast.AST, roots: set[str]) -> dict[str, str]:
    """Local name -> the dotted third-party path it stands for (import x.y as z, from ...)."""
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in roots:
                    if alias.asname:
                        bound[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        bound[top] = top
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in roots:
                for alias in node.names:
                    if alias.name != "*":
                        bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return bound


def _chain(node: ast.AST, bound: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id in bound:
        return ".".join([bound[node.id], *reversed(parts)])
    return None


def api_uses(files: list[Path]) -> dict[str, dict[str, list[str]]]:
    """Dotted third-party names the files use -> {"": where used, keyword: where passed}."""
    roots = set(third_party(files))
    uses: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        bound = _bindings(tree, roots)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Attribute, ast.Name)):
                dotted = _chain(node, bound)
                if dotted:
                    uses[dotted][""].append(_where(path, node))
            if isinstance(node, ast.Call):
                dotted = _chain(node.func, bound)
                if dotted:
                    for kw in node.keywords:
                        if kw.arg:
                            uses[dotted][kw.arg].append(_where(path, node))
    return {k: dict(v) for k, v in uses.items()}


def resolve(dotted: str) -> object:
    """The object a dotted name stands for, importing submodules a package does not."""
    parts = dotted.split(".")
    obj: object = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=2):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            if not inspect.ismodule(obj):
                raise
            obj = importlib.import_module(".".join(parts[:i]))
    return obj


def _accepts(obj: object, keyword: str) -> bool:
    try:
        params = inspect.signature(obj).parameters.values()  # type: ignore[arg-type]
    except (TypeError, ValueError):  # builtins without a signature: nothing to say
        return True
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params) or any(
        p.name == keyword and p.kind in kinds for p in params
    )


def api_differences(files: list[Path], importable: set[str]) -> list[str]:
    """One sentence per attribute or keyword the files use that the installed versions lack."""
    missing: list[str] = []
    absent: set[str] = set()
    for dotted, kws in sorted(api_uses(files).items()):
        if dotted.split(".")[0] not in importable:
            continue  # its import failure is reported already
        if any(dotted.startswith(a + ".") for a in absent):
            continue  # the shortest missing prefix says it
        try:
            obj = resolve(dotted)
        except (AttributeError, ImportError) as exc:
            absent.add(dotted)
            where = ", ".join(sorted(set(kws[""]))[:4])
            missing.append(f"{dotted}: missing ({type(exc).__name__}: {exc}); used at {where}")
            continue
        for kw, where in sorted(kws.items()):
            if kw and not _accepts(obj, kw):
                at = ", ".join(sorted(set(where))[:4])
                missing.append(f"{dotted}({kw}=...): no such keyword; used at {at}")
    return missing


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def pinned(name: str) -> str | None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        if dep.replace(" ", "").startswith(f"{name}=="):
            return dep.split("==", 1)[1].strip()
    return None


def print_versions(roots: set[str]) -> None:
    import numpy
    import PIL
    import torch
    import torchvision

    try:
        cudnn = torch.backends.cudnn.version()
    except Exception as exc:  # noqa: BLE001 - a report line, whatever the reason
        cudnn = f"unavailable ({exc})"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA GPU"
    print(f"python {platform.python_version()} ({sys.executable})")
    print(f"torch {torch.__version__} | CUDA {torch.version.cuda} | cuDNN {cudnn}")
    print(f"torchvision {torchvision.__version__} | numpy {numpy.__version__}", end=" | ")
    print(f"pillow {PIL.__version__}")
    print(f"GPU: {gpu}" + (f" (x{torch.cuda.device_count()})" if torch.cuda.is_available() else ""))
    for name in ("torch", "torchvision"):
        want, have = pinned(name), importlib.import_module(name).__version__.split("+")[0]
        if want and want != have:
            print(f"note: {name} {have} here, pyproject.toml pins {want}: the API check below")
            print("      lists what the library uses that this version lacks")
    dists = importlib.metadata.packages_distributions()
    for root in sorted(roots):
        spec = importlib.util.find_spec(root)
        where = Path(spec.origin).parent.parent if spec and spec.origin else "not found"
        names = ",".join(dists.get(root, [root]))
        print(f"  {root:<14} {names} {_version(dists.get(root, [root])[0])}  from {where}")


def check_imports(files: list[Path]) -> tuple[list[str], set[str]]:
    """Import every library module and every module the files import; failures, and the
    top-level names that imported."""
    failures: list[str] = []
    modules = set(imported_modules(files))
    for pkg in ("worker.sipat", "runconfig"):
        path = ROOT / pkg.replace(".", "/")
        modules |= {f"{pkg}.{m.name}" for m in pkgutil.iter_modules([str(path)])}
    importable: set[str] = set()
    for module in sorted(modules):
        if module.split(".")[0] in ("tests", "conftest", "__future__"):
            continue
        if module.endswith(".__main__"):  # the command line: importing it runs it
            continue
        try:
            importlib.import_module(module)
            importable.add(module.split(".")[0])
        except Exception as exc:  # noqa: BLE001 - every failure is reported
            failures.append(f"import {module}: {type(exc).__name__}: {exc}")
    print(f"imports: {len(modules)} modules, {len(failures)} failed")
    return failures, importable


def smoke() -> list[str]:
    """The GPU steps' code paths on the CPU, tiny; failures."""
    import torch

    from worker.sipat import TrainConfig, bench_loader, train
    from worker.sipat.bench import bench_methods
    from worker.sipat.benchmark_data import salience_benchmark
    from worker.sipat.models import build_model
    from worker.sipat.robustness import autoattack

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    failures: list[str] = []

    def step(name, fn):
        t0 = time.perf_counter()
        try:
            fn()
            print(f"smoke {name}: ok ({time.perf_counter() - t0:.1f} s)", flush=True)
        except Exception:  # noqa: BLE001 - every failure is reported
            failures.append(f"smoke {name}:\n{traceback.format_exc()}")
            print(f"smoke {name}: FAILED", flush=True)

    def bench():
        lines = bench_methods("small_cnn", 16, 8, batches=1, rounds=1, steps=2)
        methods = {line["method"] for line in lines}
        assert "pgd_at_torchattacks" in methods and "pgd_at" in methods, methods

    def training():
        data = salience_benchmark(n_train=32, n_test=16, image_size=12, region=4, seed=1)
        cfg = TrainConfig(
            method="sip_at",
            model="small_cnn",
            epochs=1,
            batch_size=16,
            steps=2,
            eval_subset=8,
            eval_steps=2,
            eval_eps=[8 / 255],
            autoattack_n=0,
            device="cpu",
        )
        with tempfile.TemporaryDirectory() as tmp:
            r = train(cfg, Path(tmp), data=data, progress=True)
        assert len(r["history"]) == 1, r["history"]
        # the run's final AutoAttack, on an untrained model (a trained one can resist long)
        torch.manual_seed(0)
        model = build_model("small_cnn", data.num_classes, 3, 12).eval()
        report = autoattack(model, data.test.subset(torch.arange(2)), 8 / 255, data.num_classes)
        assert report["n"] == 2, report

    def loader():
        args = ["--images", "8", "--image-size", "32", "--batch-size", "4", "--workers", "2"]
        args += ["--epochs", "1", "--rounds", "1", "--steps", "1", "--device", "cpu"]
        assert bench_loader.main(args) == 0
        if importlib.util.find_spec("foolbox"):
            assert bench_loader._photographs()[1] == "foolbox imagenet samples"

    step("bench (small_cnn, 16 px, the torchattacks line)", bench)
    step("train (sip_at, 1 epoch) and AutoAttack (2 images)", training)
    step("bench_loader (8 files, 32 px)", loader)
    return failures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="the GPU check's part that needs no GPU")
    p.add_argument("--smoke", action="store_true", help="also run the tiny CPU smoke")
    args = p.parse_args(argv)
    files = scanned_files()
    roots = set(third_party(files))
    print_versions(roots)
    failures, importable = check_imports(files)
    differences = api_differences(files, importable)
    print(f"API: {len(api_uses(files))} third-party names used, {len(differences)} missing here")
    for line in differences:
        print(f"  DIFFERS {line}")
    if not failures and args.smoke:
        failures += smoke()
    for line in failures:
        print(f"FAILED {line}")
    if failures:
        return 1
    return 3 if differences else 0


if __name__ == "__main__":
    raise SystemExit(main())
