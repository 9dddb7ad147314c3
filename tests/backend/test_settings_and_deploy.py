"""Settings refuse unsafe values; the compose file is valid and wires the services as documented."""

import os
import shutil
import subprocess

import pytest
from pydantic import ValidationError

from backend.core.config import DEMO_SECRET, Settings
from tests.conftest import ROOT


@pytest.mark.parametrize("environment", ["production", "test"])
def test_default_secret_refused_outside_demo(environment):
    with pytest.raises(ValidationError, match="SECRET_KEY must be set"):
        Settings(environment=environment, secret_key=DEMO_SECRET)
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(environment=environment, secret_key="short")
    assert Settings(environment=environment, secret_key="x" * 32).secret_key == "x" * 32


def test_demo_allows_default_secret_and_embedded_services():
    s = Settings(
        environment="demo",
        secret_key=DEMO_SECRET,
        database_url="sqlite:///x.db",
        celery_broker_url="filesystem://",
    )
    assert s.is_sqlite


def test_unknown_environment_refused():
    with pytest.raises(ValidationError, match="ENVIRONMENT must be one of"):
        Settings(environment="staging")


def _compose(*args, env=None):
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose (Debian package) is required; `make test` installs it"
    return subprocess.run(
        [exe, "-f", str(ROOT / "docker-compose.yml"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )


def test_compose_file_validates_and_wires_services():
    env = dict(os.environ, SECRET_KEY="a-long-random-secret-for-the-test")
    result = _compose("config", env=env)
    assert result.returncode == 0, result.stderr
    import yaml

    cfg = yaml.safe_load(result.stdout)
    services = cfg["services"]
    assert set(services) == {"postgres", "redis", "objectstore", "api", "worker"}
    worker = services["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert (
        "-Q training" in " ".join(worker["command"])
        if isinstance(worker["command"], list)
        else "-Q training" in worker["command"]
    )
    for name in ("api", "worker"):
        env_vars = services[name]["environment"]
        assert env_vars["DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env_vars["CELERY_BROKER_URL"].startswith("redis://")
        # every file through the object store: no volume shared by the API and the worker
        assert env_vars["STORAGE_URL"].startswith("s3://")
        assert env_vars["S3_ENDPOINT_URL"] == "http://objectstore:8333"
        assert "objectstore" in services[name]["depends_on"]
    api_volumes = {str(v.get("source") if isinstance(v, dict) else v).split(":")[0]
                   for v in services["api"].get("volumes", [])}  # fmt: skip
    worker_volumes = {str(v.get("source") if isinstance(v, dict) else v).split(":")[0]
                      for v in worker.get("volumes", [])}  # fmt: skip
    assert not api_volumes & worker_volumes
    assert worker["environment"]["WORKER_CACHE_DIR"] == "/cache"


def test_compose_refuses_missing_secret():
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    result = _compose("config", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
