"""The tree stays lint-clean (ruff) and the web app type-checks (mypy), as the README promises."""

import subprocess
import sys

from tests.conftest import ROOT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_finds_nothing():
    result = _run("ruff", "check", "backend", "worker", "runconfig", "tests", "migrations")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_on_backend_finds_nothing():
    """Strict mypy (pyproject.toml [tool.mypy]) on the web app and the run configuration."""
    result = _run("mypy", "--strict", "backend", "runconfig")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # not even a note or a warning (about the configuration, say): one line, and it is this
    assert output.strip().startswith("Success: no issues found"), output
    assert len(output.strip().splitlines()) == 1, output
