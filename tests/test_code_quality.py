"""The tree stays lint-clean (ruff) and the web app type-checks (mypy), as the README promises."""

import subprocess
import sys

from tests.conftest import ROOT


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_finds_nothing():
    result = _run("ruff", "check", "backend", "worker", "tests", "migrations")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_on_backend_finds_nothing():
    result = _run("mypy", "backend")
    assert result.returncode == 0, result.stdout + result.stderr
