"""The tree stays lint-clean and formatted (ruff) and the web app type-checks (mypy), as the
README promises."""

import subprocess
import sys

from tests.conftest import ROOT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_finds_nothing():
    result = _run("ruff", "check", *PYTHON_FOLDERS)
    assert result.returncode == 0, result.stdout + result.stderr


# every folder of Python the project keeps
PYTHON_FOLDERS = ("backend", "worker", "runconfig", "tests", "migrations")


def test_ruff_format_finds_nothing():
    """`ruff format --check`: the tree is as the formatter writes it (run `ruff format`)."""
    result = _run("ruff", "format", "--check", *PYTHON_FOLDERS)
    assert result.returncode == 0, result.stdout + result.stderr


# the worker's modules around the training library: its tasks and what they use
WORKER_MODULES = (
    "worker/training_tasks.py",
    "worker/evaluation_tasks.py",
    "worker/study_tasks.py",
    "worker/label_stimuli.py",
    "worker/run_files.py",
    "worker/ranks.py",
    "worker/gpu_leases.py",
    "worker/training_export.py",
    "worker/celery_app.py",
    "worker/recovery.py",
)


def test_mypy_on_backend_finds_nothing():
    """Strict mypy (pyproject.toml [tool.mypy]) on the web app, the run configuration and
    the worker's task modules (pyproject.toml lists the same files)."""
    result = _run("mypy", "--strict", "backend", "runconfig", *WORKER_MODULES)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # not even a note or a warning (about the configuration, say): one line, and it is this
    assert output.strip().startswith("Success: no issues found"), output
    assert len(output.strip().splitlines()) == 1, output


def test_plain_mypy_checks_the_same_files():
    """`mypy` alone (pyproject.toml's files) checks what this test does."""
    import tomllib

    files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["files"]
    assert files == ["backend", "runconfig", *WORKER_MODULES]
