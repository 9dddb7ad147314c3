"""The wheels that travel to a lent GPU machine (scripts/gpu-wheels.txt, `make gpu-wheels`)
cover what the training library, the CUDA tests and the GPU benchmark import: a new import
in worker/sipat fails here, not on the GPU machine. Cheap: the files' imports read with ast,
nothing installed or downloaded (the dry run, `make gpu-check-dry` in .ci/run, installs
them)."""

import importlib.metadata
import importlib.util
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


selfcheck = _load("gpu_selfcheck")
wheels = _load("gpu_wheels")

# import name -> distribution, where the two differ
DIST_OF = {"PIL": "pillow", "yaml": "pyyaml", "sklearn": "scikit-learn"}
# listed for their files or as what another listed package needs, not imported by our files
NOT_IMPORTED = {"foolbox", "pluggy", "iniconfig", "packaging", "pygments", "scipy"}


def _listed() -> dict[str, str]:
    return {wheels.dist_key(r.split("==")[0]): r.split("==")[1] for r in wheels.requirements()}


def test_every_third_party_import_of_the_gpu_path_travels_or_is_on_the_machine():
    files = selfcheck.scanned_files()
    assert {ROOT / "worker/sipat/bench.py", ROOT / "tests/sipat/test_cuda.py"} <= set(files)
    imported = selfcheck.third_party(files)
    assert {"torch", "tqdm", "pyautoattack", "torchattacks"} <= set(imported)
    listed = _listed()
    missing = {
        name: where[:3]
        for name, where in imported.items()
        if name not in selfcheck.LENT_BASE
        and wheels.dist_key(DIST_OF.get(name, name)) not in listed
    }
    assert not missing, f"add to scripts/gpu-wheels.txt (then make gpu-wheels): {missing}"
    # and nothing listed that no file needs
    used = {wheels.dist_key(DIST_OF.get(n, n)) for n in imported}
    extra = set(listed) - used - {wheels.dist_key(n) for n in NOT_IMPORTED}
    assert extra <= {"pytest_timeout"}, f"listed in gpu-wheels.txt, imported nowhere: {extra}"


def test_the_wheels_are_never_torch_and_are_the_versions_this_project_tests():
    listed = _listed()
    assert not {"torch", "torchvision", "numpy", "pillow"} & set(listed)
    pins = {}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dep in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", dep.replace(" ", ""))
        if m:
            pins[wheels.dist_key(m.group(1))] = m.group(2)
    for name, version in listed.items():
        if name in pins:
            assert version == pins[name], (
                f"gpu-wheels.txt {name}=={version}, pyproject {pins[name]}"
            )
    # the library's own packages: as installed here (tested by make test)
    for name in ("tqdm", "pyautoattack", "torchattacks", "mlxtend"):
        try:
            here = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        assert listed[name] == here, f"gpu-wheels.txt {name}=={listed[name]}, this venv {here}"


def test_the_api_scan_sees_chains_keywords_and_lazy_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text(
        "import torch\nimport torch.nn.functional as F\nfrom PIL import Image\n"
        "def f(x):\n    import tqdm\n    torch.backends.cudnn.benchmark = True\n"
        "    return F.cross_entropy(x, x, label_smoothing=0.1), Image.Transpose.FLIP_LEFT_RIGHT\n"
    )
    assert set(selfcheck.third_party([src])) == {"torch", "PIL", "tqdm"}
    uses = selfcheck.api_uses([src])
    assert "torch.backends.cudnn.benchmark" in uses
    assert "label_smoothing" in uses["torch.nn.functional.cross_entropy"]
    assert "PIL.Image.Transpose.FLIP_LEFT_RIGHT" in uses
    src.write_text(
        "import torch\nimport torch.nn.functional as F\nx = torch.no_such_thing_here\n"
        "F.cross_entropy(x, x, not_a_keyword=2)\n"
    )
    found = selfcheck.api_differences([src], {"torch"})
    assert len(found) == 2, found
    assert found[0].startswith("torch.nn.functional.cross_entropy(not_a_keyword=...)"), found
    assert found[1].startswith("torch.no_such_thing_here: missing"), found


def test_the_dry_run_is_wired_into_ci():
    ci = (ROOT / ".ci/run").read_text()
    assert "make gpu-check-dry" in ci and ci.index("make test") < ci.index("make gpu-check-dry")
    makefile = (ROOT / "Makefile").read_text()
    assert "scripts/gpu_check.sh --dry" in makefile and "scripts/gpu_wheels.py" in makefile
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "/gpu-wheels/" in ignored and "/.gpu-dry/" in ignored
