"""sipat: salience-preserving adversarial training and its baselines, as a plain library.

Tensors, configs and callbacks in; metrics and checkpoints out. No web app, database or
Celery import here (docs/training.md).
"""

# Imported eagerly: `train` is both a submodule and the function; binding the function
# here, after the submodule is loaded, keeps `from worker.sipat import train` the function
# while `from worker.sipat.train import train` also works.
from .attacks import fgsm_rs_attack, pgd_attack
from .checkpoint import load_model_from_checkpoint
from .config import METHODS, ConfigError, TrainConfig, TrainingCancelled
from .data import DataBundle, TensorSet, load_data
from .evaluate import evaluate_checkpoint, evaluate_model
from .models import build_model
from .train import train

__all__ = [
    "METHODS",
    "ConfigError",
    "DataBundle",
    "TensorSet",
    "TrainConfig",
    "TrainingCancelled",
    "build_model",
    "evaluate_checkpoint",
    "evaluate_model",
    "fgsm_rs_attack",
    "load_data",
    "load_model_from_checkpoint",
    "pgd_attack",
    "train",
]
