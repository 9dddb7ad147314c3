# Generated from worker/contract.py by `make contract` (scripts/sync_contract.py): do not
# edit here. The API's copy of the run configuration, so that backend/ never imports
# worker/; tests/test_layers.py fails when the two differ.
"""The run configuration, the one thing the API and the training library must agree on,
without torch.

What a run is (TrainConfig: one dataclass, every field with its unit, validated on load) and
the names its fields may take (methods, models, mask sources, precisions, data paths). The
training library reads it; the API validates launch forms with it and offers its choices,
in one place (backend/services/runs.py), so the two cannot disagree. It imports nothing but
the standard library, so the API process never loads torch (docs/architecture.md). Run
states and Celery task names are the app's: they live in backend/ (models, core/queue).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any

FAST_ATTACKS = ("n_fgsm", "fgsm_rs")
METHODS = ("standard", "pgd_at", "sip_at", "part", "igd", "fast_sip_at")
MASK_SOURCES = ("human", "gradcam", "input_gradient")
SCHEDULES = ("none", "step", "cosine")
PRECISIONS = ("fp32", "bf16", "fp16")
DATA_LOADERS = ("auto", "memory", "stream")
# data_loader "auto" streams from storage when the decoded images would take more than this
STREAM_ABOVE_BYTES = 2 * 2**30
MODELS = (
    "small_cnn",
    "preact_resnet18",
    "wrn34_10",
    "resnet18",
    "resnet50",
    "densenet121",
    "inception_v3",
)
# AutoAttack's default image count: on a GPU, enough for a +-3 point interval; on a CPU,
# what keeps it to minutes (its cost there is mostly per iteration, not per image)
AUTOATTACK_N_GPU = 1000
AUTOATTACK_N_CPU = 200
# Settings read only by the final evaluation (evaluate_model), after the last epoch.
EVAL_ONLY = ("eval_eps", "eval_steps", "eval_restarts", "autoattack_n")
# The most processes (one per GPU) one run may ask for: one host's usual complement.
MAX_GPUS = 8
# Settings of where and how a run computes, not of what it computes.
RUNTIME_ONLY = (
    "device",
    "gpus",
    "threads",
    "compile",
    "compile_backend",
    "deterministic",
    "data_loader",
    "loader_workers",
)


# Fields in pixel units ([0, 1] scale) that people read and type in grey levels (x/255).
BUDGET_FIELDS = ("eps", "alpha", "part_eps_low")


def grey_levels(pixel_units: float) -> str:
    """A budget in pixel units as people read it: 8/255 -> "8/255", 0.0098 -> "2.5/255"
    (at most two decimals, trailing zeros dropped)."""
    levels = round(pixel_units * 255, 2)
    text = f"{levels:.2f}".rstrip("0").rstrip(".")
    return f"{'0' if text == '-0' else text}/255"


def choices() -> dict[str, list[Any]]:
    """The values the run form offers for each field with a fixed set (GET /api/runs/defaults)."""
    return {
        "gpus": list(range(1, MAX_GPUS + 1)),
        "method": list(METHODS),
        "model": list(MODELS),
        "mask_source": list(MASK_SOURCES),
        "schedule": list(SCHEDULES),
        "fast_attack": list(FAST_ATTACKS),
        "precision": list(PRECISIONS),
        "data_loader": list(DATA_LOADERS),
    }


class ConfigError(ValueError):
    """A configuration value is wrong; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class TrainingCancelled(RuntimeError):
    """should_stop() returned true; the epoch in progress was discarded."""


@dataclass
class TrainConfig:
    method: str = "pgd_at"  # one of METHODS
    model: str = "small_cnn"  # registry name, see models.MODEL_NAMES
    data_dir: str | None = None  # export dir (manifest.json) or ImageFolder root; None with data=
    image_size: int | None = None  # pixels per side to resize to; None = images share a size
    test_fraction: float = 0.2  # share of images held out when the data has no split (0..1)
    epochs: int = 10  # passes over the training set
    batch_size: int = 128  # images per optimiser step
    lr: float = 0.1  # SGD learning rate at epoch 0
    momentum: float = 0.9  # SGD momentum (0..1)
    weight_decay: float = 5e-4  # L2 coefficient on all parameters
    schedule: str = "step"  # learning-rate schedule, per epoch: none, step or cosine
    step_size: int = 10  # epochs between decays of the "step" schedule
    gamma: float = 0.75  # multiplicative decay of the "step" schedule
    augment: bool = True  # random crop (zero padding) and horizontal flip, image and map alike
    crop_padding: int = 4  # pixels of zero padding before the random crop
    hflip: bool = True  # random horizontal flip (turn off for digits)
    eps: float = 8 / 255  # L-inf training budget in pixel units ([0, 1] scale)
    alpha: float = 2 / 255  # PGD step size in pixel units
    steps: int = 10  # PGD iterations K during training
    eps_warmup_epochs: float = 0.0  # epochs over which every training budget (eps, alpha,
    # part_eps_low) rises linearly, batch by batch, from 1/(this * batches per epoch) of its
    # value to all of it; 0 = full budget from the first batch. Same for every adversarial method
    fast_attack: str = "n_fgsm"  # fast_sip_at's single step: n_fgsm (de Jorge et al. 2022:
    # noise of n_fgsm_noise_ratio * eps, step n_fgsm_alpha_ratio * eps, no eps clipping) or
    # fgsm_rs (Wong et al. 2020: start inside eps, step fast_alpha_ratio * eps, clipped to eps;
    # overfits catastrophically at large budgets, docs/benchmark-results.md)
    fast_alpha_ratio: float = 1.25  # fgsm_rs step size as a multiple of eps (Wong et al.)
    n_fgsm_noise_ratio: float = 2.0  # n_fgsm noise box half-width as a multiple of eps
    n_fgsm_alpha_ratio: float = 1.0  # n_fgsm step size as a multiple of eps
    mask_source: str = "human"  # sip_at maps: human (the data's masks), gradcam, input_gradient
    auto_mask_model: str | None = None  # checkpoint path of the model that makes automatic maps
    mask_threshold: float = 0.5  # binarise threshold on salience in [0, 1]
    mask_fraction: float = 1.0  # share of training images that keep their map (0..1), by seed
    part_warmup_epochs: int = 1  # PART: epochs of plain PGD-AT before the CAM budget map
    part_eps_low: float = 7 / 255  # PART: budget outside the CAM's salient region, pixel units
    igd_lambda: float = 1.0  # IGD: weight of the cosine distillation term
    igd_teacher: str | None = None  # IGD: checkpoint path of the standard-trained teacher
    igd_grad_point: str = "clean"  # IGD: where the student's gradient is taken: clean or adv
    eval_eps: list[float] = field(
        default_factory=lambda: [2 / 255, 4 / 255, 8 / 255]
    )  # pixel units
    eval_subset: int = 500  # test images attacked by PGD (spread over the classes); 0 = all
    eval_steps: int = 20  # PGD steps of the final evaluation (alpha = eps / 4)
    eval_restarts: int = 1  # PGD random restarts of the final evaluation (worst case per image)
    epoch_eval_steps: int = 10  # PGD steps of the cheap per-epoch check (1 restart, at eps)
    autoattack_n: int | None = None  # test images (spread over the classes) AutoAttack runs
    # on at the end, at eps; 0 = skip it; None = AUTOATTACK_N_GPU on CUDA, AUTOATTACK_N_CPU
    # otherwise (docs/training.md says why)
    seed: int = 0  # seeds model init, data order, augmentation, masks and attacks
    device: str = "cpu"  # torch device string, e.g. cpu or cuda:0
    gpus: int = 1  # processes of the run, one per GPU (1..MAX_GPUS): with more than one the
    # Celery task leases that many GPUs of its host and starts the library under torchrun
    # (DistributedDataParallel); on a host without CUDA, that many gloo processes. The
    # library itself follows torchrun's WORLD_SIZE (worker/sipat/distributed.py)
    sync_batchnorm: bool = False  # with several processes: BatchNorm statistics over the
    # whole global batch (SyncBatchNorm) instead of each rank's share; ignored on one process
    threads: int = 0  # torch CPU threads; 0 leaves torch's default
    precision: str = "fp32"  # fp32, bf16 or fp16 (with a gradient scaler): the dtype of the
    # model's forward and backward in training and in the training attacks, through autocast;
    # images, perturbations and losses stay fp32. The final evaluation always runs in fp32
    compile: bool = False  # torch.compile the model; falls back to eager with a logged reason
    compile_backend: str = "inductor"  # torch.compile's backend (e.g. aot_eager: no codegen)
    deterministic: bool = False  # CUDA: deterministic algorithms instead of cudnn.benchmark
    # (bit-exact resume on a GPU, at some speed)
    data_loader: str = "auto"  # memory (decode everything once), stream (decode per batch in
    # loader_workers processes) or auto (stream above STREAM_ABOVE_BYTES of decoded images)
    loader_workers: int = 4  # DataLoader worker processes of the stream path (0 = in process)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build and validate; raises ConfigError naming the first bad field."""
        if not isinstance(d, dict):
            raise ConfigError("config", "must be a JSON object")
        known = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            if key not in known:
                raise ConfigError(key, "unknown field")
            kwargs[key] = _coerce(key, value, hints[key])
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    @classmethod
    def from_json(cls, path: str) -> TrainConfig:
        with open(path) as fh:
            try:
                d = json.load(fh)
            except json.JSONDecodeError as e:
                raise ConfigError("config", f"not valid JSON ({e})") from e
        return cls.from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """Hash of everything that changes the training and its per-epoch record.

        Not where and how it computes (RUNTIME_ONLY), and not the final evaluation's settings
        (EVAL_ONLY): a finished run evaluated again with other settings keeps its checkpoint.
        """
        d = self.to_dict()
        # how and where it computes, not what: a resumed run may change these (the data
        # path it was trained on is checked at resume from the checkpoint instead)
        for name in (*RUNTIME_ONLY, *EVAL_ONLY):
            d.pop(name)
        if d["precision"] == "fp32":  # added later: fp32 = the old behaviour, old runs resume
            d.pop("precision")
        if d["eps_warmup_epochs"] == 0:  # added later: off = the old behaviour, old runs resume
            d.pop("eps_warmup_epochs")
        if not d["sync_batchnorm"]:  # added later: off = the old behaviour, old runs resume
            d.pop("sync_batchnorm")
        if d["method"] != "fast_sip_at":  # added later and used by fast_sip_at only
            for name in ("fast_attack", "n_fgsm_noise_ratio", "n_fgsm_alpha_ratio"):
                d.pop(name)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def autoattack_images(self) -> int:
        """autoattack_n, or the default for this run's device when it is None."""
        if self.autoattack_n is not None:
            return self.autoattack_n
        return AUTOATTACK_N_GPU if self.device.startswith("cuda") else AUTOATTACK_N_CPU

    def validate(self) -> None:
        def need(ok: bool, name: str, msg: str) -> None:
            if not ok:
                raise ConfigError(name, msg)

        need(self.method in METHODS, "method", f"must be one of {', '.join(METHODS)}")
        need(self.model in MODELS, "model", f"must be one of {', '.join(MODELS)}")
        need(
            self.mask_source in MASK_SOURCES,
            "mask_source",
            f"must be one of {', '.join(MASK_SOURCES)}",
        )
        need(self.schedule in SCHEDULES, "schedule", f"must be one of {', '.join(SCHEDULES)}")
        need(
            self.precision in PRECISIONS,
            "precision",
            f"must be one of {', '.join(PRECISIONS)}",
        )
        need(
            self.data_loader in DATA_LOADERS,
            "data_loader",
            f"must be one of {', '.join(DATA_LOADERS)}",
        )
        need(self.loader_workers >= 0, "loader_workers", "must be >= 0")
        need(self.igd_grad_point in ("clean", "adv"), "igd_grad_point", "must be clean or adv")
        for name in (
            "epochs",
            "batch_size",
            "steps",
            "step_size",
            "eval_steps",
            "eval_restarts",
            "epoch_eval_steps",
        ):
            need(getattr(self, name) >= 1, name, "must be >= 1")
        # budgets are stored in pixel units but people read and type them in grey levels
        for name in BUDGET_FIELDS:
            v = getattr(self, name)
            need(0 <= v <= 1, name, f"must be between 0/255 and 255/255; got {grey_levels(v)}")
        for name in ("mask_threshold", "mask_fraction", "momentum"):
            v = getattr(self, name)
            need(0 <= v <= 1, name, f"must be between 0 and 1; got {v:g}")
        need(0 < self.test_fraction < 1, "test_fraction", "must be in (0, 1)")
        need(self.lr > 0, "lr", "must be > 0")
        need(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        need(self.gamma > 0, "gamma", "must be > 0")
        need(
            self.fast_attack in FAST_ATTACKS,
            "fast_attack",
            f"must be one of {', '.join(FAST_ATTACKS)}",
        )
        need(self.fast_alpha_ratio > 0, "fast_alpha_ratio", "must be > 0")
        need(self.n_fgsm_noise_ratio >= 0, "n_fgsm_noise_ratio", "must be >= 0")
        need(self.n_fgsm_alpha_ratio > 0, "n_fgsm_alpha_ratio", "must be > 0")
        need(self.igd_lambda >= 0, "igd_lambda", "must be >= 0")
        need(self.part_warmup_epochs >= 0, "part_warmup_epochs", "must be >= 0")
        need(
            0 <= self.eps_warmup_epochs <= self.epochs,
            "eps_warmup_epochs",
            f"must be in [0, epochs] (epochs), got {self.eps_warmup_epochs}",
        )
        need(
            self.part_eps_low <= self.eps,
            "part_eps_low",
            f"must not exceed eps ({grey_levels(self.eps)}); got {grey_levels(self.part_eps_low)}",
        )
        need(self.crop_padding >= 0, "crop_padding", "must be >= 0")
        need(self.eval_subset >= 0, "eval_subset", "must be >= 0")
        need(
            self.autoattack_n is None or self.autoattack_n >= 0,
            "autoattack_n",
            "must be >= 0 (0 skips AutoAttack; leave it empty for the device's default)",
        )
        need(self.threads >= 0, "threads", "must be >= 0")
        need(
            1 <= self.gpus <= MAX_GPUS,
            "gpus",
            f"must be a whole number of GPUs from 1 to {MAX_GPUS} (one process each); "
            f"got {self.gpus}",
        )
        need(self.image_size is None or self.image_size >= 8, "image_size", "must be >= 8")
        wrong_eval = [e for e in self.eval_eps if not 0 <= e <= 1]
        need(
            not wrong_eval,
            "eval_eps",
            "every value must be between 0/255 and 255/255; got "
            + ", ".join(grey_levels(e) for e in wrong_eval),
        )
        if self.method in ("sip_at", "fast_sip_at") and self.mask_source != "human":
            need(
                bool(self.auto_mask_model),
                "auto_mask_model",
                "automatic masks need a checkpoint path",
            )
        if self.method == "igd":
            need(
                bool(self.igd_teacher),
                "igd_teacher",
                "igd needs a standard-trained teacher checkpoint",
            )


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Check a JSON value against a field's type; ints are accepted for floats."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if (
        origin in (typing.Union, getattr(__import__("types"), "UnionType", None))
        and type(None) in args
    ):
        if value is None:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(name, f"must be a list, got {type(value).__name__}")
        return [_coerce(name, v, args[0]) for v in value]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(name, f"must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(name, f"must be an integer, got {value!r}")
        return value
    if hint is float:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ConfigError(name, f"must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(name, f"must be a string, got {value!r}")
        return value
    return value
