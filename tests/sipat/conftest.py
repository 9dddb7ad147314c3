"""Shared fixtures: tiny models and data, CPU only."""

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the repo root holds the worker package
    sys.path.insert(0, str(ROOT))

from worker.sipat.benchmark_data import salience_benchmark  # noqa: E402
from worker.sipat.models import build_model  # noqa: E402

# two threads on the 2-core machine; one per process when make test runs several side by side
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return build_model("small_cnn", 4, 3, 12)


@pytest.fixture(scope="session")
def tiny_data():
    return salience_benchmark(n_train=96, n_test=48, image_size=12, region=4, seed=1)
