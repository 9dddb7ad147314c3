"""sipat: salience-preserving adversarial training and its baselines, as a plain library.

Tensors, configs and callbacks in; metrics and checkpoints out. No web app, database or
Celery import here (docs/training.md). Names are imported lazily so that the config and
the CLI's error path do not pay for importing torch.
"""

from importlib import import_module
from typing import Any

from .config import METHODS, ConfigError, TrainConfig, TrainingCancelled

_LAZY = {
    "pgd_attack": "attacks",
    "fgsm_rs_attack": "attacks",
    "load_model_from_checkpoint": "checkpoint",
    "DataBundle": "data",
    "TensorSet": "data",
    "load_data": "data",
    "evaluate_checkpoint": "evaluate",
    "evaluate_model": "evaluate",
    "build_model": "models",
    "train": "train",
}

__all__ = ["METHODS", "ConfigError", "TrainConfig", "TrainingCancelled", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
