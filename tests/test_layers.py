"""Dependencies point one way (docs/architecture.md): the API never loads torch or the
worker's code, the training library imports nothing of the app, and the run configuration
both read (runconfig/) imports nothing but the standard library."""

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

APP_PACKAGES = {"backend", "celery", "sqlalchemy", "fastapi", "alembic", "redis", "kombu"}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file; relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if module == "worker":  # from worker import ranks
                out += [(node.lineno, f"worker.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, module))
    return out


def _violations(folder: str, allowed) -> list[str]:
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for line, module in _imports(path):
            if not allowed(module):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return bad


def test_backend_never_imports_torch_or_the_worker():
    """backend/ never imports torch or worker/: it validates launch forms with the run
    configuration package (runconfig/), and run states and task names belong to the app (the
    tasks import them from backend, downwards)."""
    bad = []
    for path in sorted((ROOT / "backend").rglob("*.py")):
        for line, module in _imports(path):
            if module.split(".")[0] in ("torch", "torchvision", "worker"):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert bad == []


def test_the_training_library_imports_nothing_of_the_app():
    """Of the rest of the repository, worker/sipat/ reads only the run configuration."""

    def allowed(module: str) -> bool:
        top = module.split(".")[0]
        if top == "worker":
            return module.startswith("worker.sipat")
        return top not in APP_PACKAGES

    assert _violations("worker/sipat", allowed) == []


def test_the_run_configuration_needs_only_the_standard_library():
    """runconfig/ imports the standard library and itself, nothing else."""
    bad = []
    for path in sorted((ROOT / "runconfig").rglob("*.py")):
        for line, module in _imports(path):
            top = module.split(".")[0]
            if top not in sys.stdlib_module_names and top not in ("__future__", "runconfig"):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert bad == []


def test_importing_the_run_configuration_loads_no_framework():
    """In a fresh interpreter: neither torch nor FastAPI nor pydantic, nor the app's code."""
    code = (
        "import sys, runconfig\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'torchvision', 'fastapi', 'pydantic', 'starlette', 'backend', 'worker'))\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_the_api_process_never_loads_torch_or_the_workers_code():
    """In a fresh interpreter: the app, every router and its services imported."""
    code = (
        "import sys, backend.main\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'torchvision', 'worker'))\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


# Exceptions a route may still catch: parsing its own input (int(), a JSON body it reads
# itself), never a service's refusal; those reach the one handler in backend/main.py.
PARSING_EXCEPTIONS = {"ValueError", "ValidationError"}


def test_services_know_nothing_of_http():
    bad = []
    for path in sorted((ROOT / "backend" / "services").rglob("*.py")):
        text = path.read_text()
        bad += [
            f"{path.relative_to(ROOT)}:{line}: imports {module}"
            for line, module in _imports(path)
            if module.split(".")[0] in {"fastapi", "starlette"}
        ]
        for word in ("status_code", "HTTPException"):
            if word in text:
                bad.append(f"{path.relative_to(ROOT)}: names {word}")
    assert not bad, "\n".join(bad)


def test_no_router_catches_a_service_exception():
    bad = []
    for path in sorted((ROOT / "backend" / "routers").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ExceptHandler):
                continue
            kinds = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
            names = {ast.unparse(k).split(".")[-1] for k in kinds if k is not None}
            if not names or not names <= PARSING_EXCEPTIONS:
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: except {names or 'all'}")
    assert not bad, "\n".join(bad)


def test_every_domain_error_has_one_status():
    from backend.core import errors
    from backend.main import STATUS_OF, http_status

    classes = [
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, errors.DomainError) and c is not errors.DomainError
    ]
    assert set(classes) == set(STATUS_OF), "every domain error is mapped, and nothing else"
    for cls in classes:
        assert 400 <= http_status(cls("x")) < 600
    assert len(set(STATUS_OF.values())) == len(STATUS_OF), "one class per status"
