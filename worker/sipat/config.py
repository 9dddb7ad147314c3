"""The run configuration as the library uses it. It is defined once, without torch, in the
runconfig package (shared with the API and the Celery tasks); this module names it for the
library's own modules."""

from runconfig import (
    AUTOATTACK_N_CPU,
    AUTOATTACK_N_GPU,
    DATA_LOADERS,
    EVAL_ONLY,
    FAST_ATTACKS,
    MASK_SOURCES,
    METHODS,
    MODELS,
    PRECISIONS,
    RUNTIME_ONLY,
    SCHEDULES,
    STREAM_ABOVE_BYTES,
    ConfigError,
    TrainConfig,
    TrainingCancelled,
)

__all__ = [
    "AUTOATTACK_N_CPU",
    "AUTOATTACK_N_GPU",
    "DATA_LOADERS",
    "EVAL_ONLY",
    "FAST_ATTACKS",
    "MASK_SOURCES",
    "METHODS",
    "MODELS",
    "PRECISIONS",
    "RUNTIME_ONLY",
    "SCHEDULES",
    "STREAM_ABOVE_BYTES",
    "ConfigError",
    "TrainConfig",
    "TrainingCancelled",
]
