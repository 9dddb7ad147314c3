"""TrainConfig: what a run is. One dataclass; every field declares its type and default, and
in its metadata its Setting (unit, bounds, the methods it applies to, who gives it, whether a
sweep may vary it: runconfig/settings.py). One pass (check) validates a whole config and
returns every refusal at once; from_dict raises the first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from runconfig.settings import (
    EVALUATION,
    FORM,
    LIBRARY,
    OWN_METHODS,
    PIXELS,
    RUNTIME,
    TRAINING,
    UNLESS_DEFAULT,
    WORKER,
    ConfigError,
    Setting,
    check_type,
    setting,
    spec_of,
)

# The names a setting may take.
METHODS = ("standard", "pgd_at", "sip_at", "part", "igd", "fast_sip_at")
MODELS = (
    "small_cnn",
    "preact_resnet18",
    "wrn34_10",
    "resnet18",
    "resnet50",
    "densenet121",
    "inception_v3",
)
FAST_ATTACKS = ("n_fgsm", "fgsm_rs")
MASK_SOURCES = ("human", "gradcam", "input_gradient")
SCHEDULES = ("none", "step", "cosine")
PRECISIONS = ("fp32", "bf16", "fp16")
DATA_LOADERS = ("auto", "memory", "stream")
IGD_GRAD_POINTS = ("clean", "adv")

# Which methods use what: a multi-step PGD attack in training; any attack at all; salience maps.
PGD_TRAINED = ("pgd_at", "sip_at", "part", "igd")
ADVERSARIAL = tuple(m for m in METHODS if m != "standard")
SIP_METHODS = ("sip_at", "fast_sip_at")
AUTO_MASK_SOURCES = tuple(s for s in MASK_SOURCES if s != "human")

# data_loader "auto" streams from storage when the decoded images would take more than this
STREAM_ABOVE_BYTES = 2 * 2**30
# AutoAttack's default image count: on a GPU, enough for a +-3 point interval; on a CPU,
# what keeps it to minutes (its cost there is mostly per iteration, not per image)
AUTOATTACK_N_GPU = 1000
AUTOATTACK_N_CPU = 200
# The most processes (one per GPU) one run may ask for: one host's usual complement.
MAX_GPUS = 8

# The setting that decides which others apply.
METHOD = "method"


@dataclass
class TrainConfig:
    method: str = setting(
        "pgd_at",
        Setting(
            "",
            "method",
            "The training method (docs/training.md).",
            choices=METHODS,
            choice_labels=(
                ("standard", "Standard"),
                ("pgd_at", "PGD-AT"),
                ("sip_at", "SIP-AT"),
                ("part", "PART"),
                ("igd", "IGD"),
                ("fast_sip_at", "Fast SIP-AT"),
            ),
            section="what",
        ),
    )
    model: str = setting(
        "small_cnn",
        Setting("", "model", "The network, by its registry name.", choices=MODELS, section="what"),
    )
    data_dir: str | None = setting(
        None,
        Setting(
            "",
            "data folder",
            "An export folder (manifest.json) or an ImageFolder root; None with train(data=).",
            source=WORKER,
        ),
    )
    image_size: int | None = setting(
        None,
        Setting(
            "pixels per side",
            "image size (px)",
            "Pixels per side to resize to; unset, the images must share a size.",
            form_label="Image size (px, blank = as stored)",
            minimum=8,
            form_max=1024,
            none_means="as stored",
            section="optimisation",
        ),
    )
    test_fraction: float = setting(
        0.2,
        Setting(
            "share of images",
            "test share",
            "Share of images held out when the data has no split.",
            minimum=0,
            maximum=1,
            min_exclusive=True,
            max_exclusive=True,
            source=LIBRARY,
        ),
    )
    epochs: int = setting(
        10,
        Setting(
            "epochs",
            "epochs",
            "Passes over the training set.",
            minimum=1,
            form_max=1000,
            section="optimisation",
        ),
    )
    batch_size: int = setting(
        128,
        Setting(
            "images",
            "batch size",
            "Images per optimiser step (the global batch, over every GPU).",
            minimum=1,
            form_max=4096,
            section="optimisation",
        ),
    )
    lr: float = setting(
        0.1,
        Setting(
            "",
            "learning rate",
            "SGD learning rate at epoch 0.",
            minimum=0,
            min_exclusive=True,
            sweep=True,
            section="optimisation",
        ),
    )
    momentum: float = setting(
        0.9,
        Setting(
            "",
            "momentum",
            "SGD momentum.",
            minimum=0,
            maximum=1,
            sweep=True,
            section="optimisation",
        ),
    )
    weight_decay: float = setting(
        5e-4,
        Setting(
            "",
            "weight decay",
            "L2 coefficient on all parameters.",
            minimum=0,
            sweep=True,
            section="optimisation",
        ),
    )
    schedule: str = setting(
        "step",
        Setting(
            "",
            "schedule",
            "Learning-rate schedule, per epoch: none, step or cosine.",
            choices=SCHEDULES,
            section="optimisation",
        ),
    )
    step_size: int = setting(
        10,
        Setting(
            "epochs",
            "step size",
            'Epochs between decays of the "step" schedule.',
            minimum=1,
            source=LIBRARY,
        ),
    )
    gamma: float = setting(
        0.75,
        Setting(
            "",
            "decay",
            'Multiplicative decay of the "step" schedule.',
            minimum=0,
            min_exclusive=True,
            source=LIBRARY,
        ),
    )
    augment: bool = setting(
        True,
        Setting(
            "",
            "random crop",
            "Random crop (after zero padding), image and map alike.",
            form_label="Augment: random crop",
            section="optimisation",
        ),
    )
    crop_padding: int = setting(
        4,
        Setting(
            "pixels",
            "crop padding",
            "Pixels of zero padding before the random crop.",
            minimum=0,
            source=LIBRARY,
        ),
    )
    hflip: bool = setting(
        True,
        Setting(
            "",
            "horizontal flip",
            "Random horizontal flip with the crop (turn off for digits and text).",
            form_label="…and horizontal flip (off for digits, text)",
            when=("augment", (True,)),
            section="optimisation",
        ),
    )
    eps: float = setting(
        8 / 255,
        Setting(
            PIXELS,
            "training ε",
            "L-inf training budget (a standard run is evaluated at it).",
            form_label="Training ε (/255)",
            minimum=0,
            maximum=1,
            by_method=(
                (
                    "standard",
                    "evaluation ε (AutoAttack, per-epoch check)",
                    "Evaluation ε (/255; AutoAttack, per-epoch check)",
                ),
            ),
            sweep=True,
            section="attack",
        ),
    )
    alpha: float = setting(
        2 / 255,
        Setting(
            PIXELS,
            "PGD step α",
            "PGD step size.",
            form_label="Step α (/255)",
            minimum=0,
            maximum=1,
            methods=PGD_TRAINED,
            sweep=True,
            section="attack",
        ),
    )
    steps: int = setting(
        10,
        Setting(
            "iterations",
            "PGD steps",
            "PGD iterations K during training.",
            minimum=1,
            form_max=1000,
            methods=PGD_TRAINED,
            sweep=True,
            section="attack",
        ),
    )
    eps_warmup_epochs: float = setting(
        0.0,
        Setting(
            "epochs",
            "ε warm-up (epochs)",
            "Epochs over which every training budget (eps, alpha, part_eps_low) rises "
            "linearly, batch by batch, from 1/(this * batches per epoch) of its value to all "
            "of it; 0 = the full budget from the first batch. The same for every "
            "adversarial method.",
            form_label="ε warm-up (epochs, 0 = off)",
            minimum=0,
            at_most="epochs",
            message="must be in [0, epochs] (epochs), got {value}",
            methods=ADVERSARIAL,
            zero_means="off",
            fingerprint=UNLESS_DEFAULT,
            sweep=True,
            section="attack",
        ),
    )
    fast_attack: str = setting(
        "n_fgsm",
        Setting(
            "",
            "single step",
            "fast_sip_at's single step: n_fgsm (de Jorge et al. 2022: noise of "
            "n_fgsm_noise_ratio * eps, step n_fgsm_alpha_ratio * eps, no eps clipping) or "
            "fgsm_rs (Wong et al. 2020: start inside eps, step fast_alpha_ratio * eps, "
            "clipped to eps; overfits catastrophically at large budgets, "
            "docs/benchmark-results.md).",
            choices=FAST_ATTACKS,
            choice_labels=(("n_fgsm", "N-FGSM"), ("fgsm_rs", "FGSM-RS (Wong et al.)")),
            methods=("fast_sip_at",),
            fingerprint=OWN_METHODS,
            section="fast",
        ),
    )
    fast_alpha_ratio: float = setting(
        1.25,
        Setting(
            "multiples of eps",
            "FGSM-RS step",
            "fgsm_rs step size as a multiple of eps (Wong et al.).",
            minimum=0,
            min_exclusive=True,
            methods=("fast_sip_at",),
            source=LIBRARY,
        ),
    )
    n_fgsm_noise_ratio: float = setting(
        2.0,
        Setting(
            "multiples of eps",
            "N-FGSM noise",
            "n_fgsm noise box half-width as a multiple of eps.",
            minimum=0,
            methods=("fast_sip_at",),
            fingerprint=OWN_METHODS,
            source=LIBRARY,
        ),
    )
    n_fgsm_alpha_ratio: float = setting(
        1.0,
        Setting(
            "multiples of eps",
            "N-FGSM step",
            "n_fgsm step size as a multiple of eps.",
            minimum=0,
            min_exclusive=True,
            methods=("fast_sip_at",),
            fingerprint=OWN_METHODS,
            source=LIBRARY,
        ),
    )
    mask_source: str = setting(
        "human",
        Setting(
            "",
            "mask source",
            "Where SIP-AT's maps come from: human (the data's masks), or made by a trained "
            "model (gradcam, input_gradient).",
            choices=MASK_SOURCES,
            choice_labels=(
                ("human", "human (mask set)"),
                ("gradcam", "automatic: Grad-CAM"),
                ("input_gradient", "automatic: input gradient"),
            ),
            methods=SIP_METHODS,
            section="masks",
        ),
    )
    auto_mask_model: str | None = setting(
        None,
        Setting(
            "",
            "model of the automatic maps",
            "Checkpoint path of the model that makes automatic maps.",
            methods=SIP_METHODS,
            when=("mask_source", AUTO_MASK_SOURCES),
            required="automatic masks need a checkpoint path",
            source=WORKER,
        ),
    )
    mask_threshold: float = setting(
        0.5,
        Setting(
            "",
            "binarise threshold",
            "Binarise threshold on salience in [0, 1].",
            minimum=0,
            maximum=1,
            methods=SIP_METHODS,
            sweep=True,
            section="masks",
        ),
    )
    mask_fraction: float = setting(
        1.0,
        Setting(
            "share of images",
            "share of images with a map",
            "Share of training images that keep their map, chosen by the seed.",
            form_label="Share of images with a map (0–1)",
            minimum=0,
            maximum=1,
            methods=SIP_METHODS,
            sweep=True,
            section="masks",
        ),
    )
    part_warmup_epochs: int = setting(
        1,
        Setting(
            "epochs",
            "PART warm-up (epochs)",
            "PART: epochs of plain PGD-AT before the CAM budget map.",
            form_label="Warm-up epochs (PGD-AT)",
            minimum=0,
            methods=("part",),
            sweep=True,
            section="part",
        ),
    )
    part_eps_low: float = setting(
        7 / 255,
        Setting(
            PIXELS,
            "PART low budget ε",
            "PART: the budget outside the CAM's salient region; left unset, it is at most eps.",
            form_label="Low budget ε (/255)",
            minimum=0,
            maximum=1,
            at_most="eps",
            methods=("part",),
            sweep=True,
            section="part",
        ),
    )
    igd_lambda: float = setting(
        1.0,
        Setting(
            "",
            "IGD λ",
            "IGD: weight of the cosine distillation term.",
            form_label="λ (distillation weight)",
            minimum=0,
            methods=("igd",),
            sweep=True,
            section="igd",
        ),
    )
    igd_teacher: str | None = setting(
        None,
        Setting(
            "",
            "teacher",
            "IGD: checkpoint path of the standard-trained teacher.",
            methods=("igd",),
            required="igd needs a standard-trained teacher checkpoint",
            source=WORKER,
        ),
    )
    igd_grad_point: str = setting(
        "clean",
        Setting(
            "",
            "IGD gradient at",
            "IGD: where the student's gradient is taken: clean or adv(ersarial) images.",
            choices=IGD_GRAD_POINTS,
            message="must be clean or adv",
            methods=("igd",),
            section="igd",
        ),
    )
    eval_eps: list[float] = setting(
        [2 / 255, 4 / 255, 8 / 255],
        Setting(
            PIXELS,
            "PGD evaluation at ε",
            "The final evaluation's grid of PGD budgets.",
            form_label="PGD at ε (/255)",
            minimum=0,
            maximum=1,
            form_items=(1, 16),
            item_name="epsilons",
            stage=EVALUATION,
            section="evaluation",
        ),
    )
    eval_subset: int = setting(
        500,
        Setting(
            "images",
            "PGD test images",
            "Test images attacked by PGD (spread over the classes), per epoch and at the "
            "end; 0 = all.",
            minimum=0,
            zero_means="all",
            section="evaluation",
        ),
    )
    eval_steps: int = setting(
        20,
        Setting(
            "iterations",
            "PGD steps (final)",
            "PGD steps of the final evaluation (alpha = eps / 4).",
            form_label="PGD steps",
            minimum=1,
            form_max=1000,
            stage=EVALUATION,
            section="evaluation",
        ),
    )
    eval_restarts: int = setting(
        1,
        Setting(
            "restarts",
            "PGD restarts (final)",
            "PGD random restarts of the final evaluation (the worst case per image).",
            form_label="PGD restarts",
            minimum=1,
            form_max=100,
            stage=EVALUATION,
            section="evaluation",
        ),
    )
    epoch_eval_steps: int = setting(
        10,
        Setting(
            "iterations",
            "PGD steps (per-epoch check)",
            "PGD steps of the cheap per-epoch check (1 restart, at eps).",
            form_label="Per-epoch PGD steps (cheap check)",
            minimum=1,
            form_max=1000,
            section="evaluation",
        ),
    )
    autoattack_n: int | None = setting(
        None,
        Setting(
            "images",
            "AutoAttack images",
            "Test images (spread over the classes) AutoAttack runs on at the end, at eps; "
            "0 = skip it; unset = AUTOATTACK_N_GPU on CUDA, AUTOATTACK_N_CPU otherwise "
            "(docs/training.md says why).",
            form_label="AutoAttack images (empty: 1000 on a GPU, 200 on a CPU; 0 = skip)",
            minimum=0,
            message="must be >= 0 (0 skips AutoAttack; leave it empty for the device's default)",
            form_max=100_000,
            none_means=f"device default ({AUTOATTACK_N_GPU} on a GPU, {AUTOATTACK_N_CPU} on a CPU)",
            zero_means="skipped",
            stage=EVALUATION,
            section="evaluation",
        ),
    )
    seed: int = setting(
        0,
        Setting(
            "",
            "seed",
            "Seeds model init, data order, augmentation, masks and attacks.",
            minimum=0,
            per_run=True,
            section="what",
        ),
    )
    device: str = setting(
        "cpu",
        Setting(
            "",
            "device",
            "torch device string, e.g. cpu or cuda:0.",
            source=WORKER,
            stage=RUNTIME,
        ),
    )
    gpus: int = setting(
        1,
        Setting(
            "processes",
            "GPUs",
            "Processes of the run, one per GPU: with more than one the Celery task leases "
            "that many GPUs of its host and starts the library under torchrun "
            "(DistributedDataParallel); on a host without CUDA, that many gloo processes. "
            "The library itself follows torchrun's WORLD_SIZE (worker/sipat/distributed.py).",
            choices=tuple(range(1, MAX_GPUS + 1)),
            choice_labels=tuple(
                (n, f"{n} (one process each, DistributedDataParallel)")
                for n in range(2, MAX_GPUS + 1)
            ),
            message=(
                f"must be a whole number of GPUs from 1 to {MAX_GPUS} (one process each); "
                "got {value}"
            ),
            stage=RUNTIME,
            section="compute",
        ),
    )
    sync_batchnorm: bool = setting(
        False,
        Setting(
            "",
            "SyncBatchNorm",
            "With several processes: BatchNorm statistics over the whole global batch "
            "(SyncBatchNorm) instead of each rank's share; ignored on one process.",
            form_label="SyncBatchNorm: BatchNorm statistics over the whole batch, not each "
            "GPU's share",
            when=("gpus", tuple(range(2, MAX_GPUS + 1))),
            fingerprint=UNLESS_DEFAULT,
            section="compute",
        ),
    )
    threads: int = setting(
        0,
        Setting(
            "threads",
            "CPU threads",
            "torch CPU threads; 0 leaves torch's default.",
            minimum=0,
            source=WORKER,
            stage=RUNTIME,
        ),
    )
    precision: str = setting(
        "fp32",
        Setting(
            "",
            "precision",
            "The dtype of the model's forward and backward in training and in the training "
            "attacks, through autocast (fp16 with a gradient scaler); images, perturbations "
            "and losses stay fp32. The final evaluation always runs in fp32.",
            choices=PRECISIONS,
            choice_labels=(
                ("bf16", "bf16 (autocast; GPUs since Ampere)"),
                ("fp16", "fp16 (autocast + gradient scaler)"),
            ),
            fingerprint=UNLESS_DEFAULT,
            section="compute",
        ),
    )
    compile: bool = setting(
        False,
        Setting(
            "",
            "torch.compile",
            "torch.compile the model; falls back to eager with a logged reason.",
            form_label="torch.compile the model (falls back to eager, with the reason in the log)",
            stage=RUNTIME,
            section="compute",
        ),
    )
    compile_backend: str = setting(
        "inductor",
        Setting(
            "",
            "compile backend",
            "torch.compile's backend (e.g. aot_eager: no code generation).",
            stage=RUNTIME,
            source=LIBRARY,
        ),
    )
    deterministic: bool = setting(
        False,
        Setting(
            "",
            "deterministic",
            "CUDA: deterministic algorithms instead of cudnn.benchmark (bit-exact resume on "
            "a GPU, at some speed).",
            stage=RUNTIME,
            source=LIBRARY,
        ),
    )
    data_loader: str = setting(
        "auto",
        Setting(
            "",
            "training images",
            "memory (decode everything once), stream (decode per batch in loader_workers "
            "processes) or auto (stream above STREAM_ABOVE_BYTES of decoded images).",
            choices=DATA_LOADERS,
            choice_labels=(
                ("auto", "auto (stream above 2 GiB decoded)"),
                ("memory", "decoded once into memory"),
                ("stream", "streamed from storage by loader workers"),
            ),
            stage=RUNTIME,
            section="compute",
        ),
    )
    loader_workers: int = setting(
        4,
        Setting(
            "processes",
            "loader workers",
            "DataLoader worker processes of the stream path (0 = in process).",
            minimum=0,
            stage=RUNTIME,
            source=LIBRARY,
        ),
    )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build and validate; raises ConfigError naming the first bad field."""
        if not isinstance(d, dict):
            raise ConfigError("config", "must be a JSON object")
        return check(d).config()

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
        Settings added later are left out where they keep the old behaviour, so that older
        runs resume (Setting.fingerprint).
        """
        d = self.to_dict()
        for name, spec in SETTINGS.items():
            if (
                spec.stage != TRAINING
                or (spec.fingerprint == UNLESS_DEFAULT and d[name] == DEFAULTS[name])
                or (spec.fingerprint == OWN_METHODS and self.method not in spec.methods)
            ):
                d.pop(name)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def autoattack_images(self) -> int:
        """autoattack_n, or the default for this run's device when it is None."""
        if self.autoattack_n is not None:
            return self.autoattack_n
        return AUTOATTACK_N_GPU if self.device.startswith("cuda") else AUTOATTACK_N_CPU

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""
        check(self.to_dict()).config()


SETTINGS: dict[str, Setting] = {f.name: spec_of(f) for f in dataclasses.fields(TrainConfig)}
TYPES: dict[str, Any] = typing.get_type_hints(TrainConfig)
DEFAULTS: dict[str, Any] = TrainConfig().to_dict()


def applies(
    methods: tuple[str, ...],
    when: tuple[str, tuple[Any, ...]] | None,
    values: Mapping[str, Any],
    refused: AbstractSet[str] = frozenset(),
) -> bool | None:
    """Whether something declared for these methods (and while `when` holds) applies to a
    config; None when a setting it depends on was refused, so nobody can say."""
    if methods:
        if METHOD in refused:
            return None
        if values[METHOD] not in methods:
            return False
    if when is not None:
        name, allowed = when
        if name in refused:
            return None
        return values[name] in allowed
    return True


@dataclass
class Checked:
    """One pass over a config: every refusal, and the values (each given value that passed,
    else the default)."""

    values: dict[str, Any]
    errors: list[ConfigError]

    @property
    def refused(self) -> set[str]:
        return {e.field for e in self.errors}

    def applies(
        self, methods: tuple[str, ...], when: tuple[str, tuple[Any, ...]] | None
    ) -> bool | None:
        return applies(methods, when, self.values, self.refused)

    def config(self) -> TrainConfig:
        """The TrainConfig; raises the first refusal if there was one."""
        if self.errors:
            raise self.errors[0]
        return TrainConfig(**self.values)


def check(given: Mapping[str, Any], *, form: bool = False) -> Checked:
    """Validate a config (the fields given; the rest take their defaults) in one pass and
    return every refusal, one per field.

    form: a launch form's values. The settings the worker fills in (paths, the device) are
    not asked for, and the form's own limits apply too (Setting.form_max, form_items).
    A setting left unset that may not exceed another (Setting.at_most) follows it down.
    """
    errors: list[ConfigError] = []
    refused: set[str] = set()

    def refuse(name: str, message: str) -> None:
        if name not in refused:
            errors.append(ConfigError(name, message))
            refused.add(name)

    values: dict[str, Any] = {k: list(v) if isinstance(v, list) else v for k, v in DEFAULTS.items()}
    for name, value in given.items():
        if name not in SETTINGS:
            refuse(name, "unknown field")
            continue
        try:
            values[name] = check_type(name, value, TYPES[name])
        except ConfigError as e:
            refuse(name, e.message)
    for name, spec in SETTINGS.items():
        value = values[name]
        if name in refused or value is None:
            continue
        reason = spec.refusal(value) or (spec.form_refusal(value) if form else None)
        if reason:
            refuse(name, reason)
    for name, spec in SETTINGS.items():
        other = spec.at_most
        if not other or name in refused or other in refused or values[name] <= values[other]:
            continue
        if name not in given:
            values[name] = values[other]
        else:
            got, limit = values[name], values[other]
            refuse(
                name,
                spec.message.format(value=got)
                or f"must not exceed {other} ({spec.reads(limit)}); got {spec.reads(got)}",
            )
    for name, spec in SETTINGS.items():
        if not spec.required or name in refused or (form and spec.source == WORKER):
            continue
        if applies(spec.methods, spec.when, values, refused) and not values[name]:
            refuse(name, spec.required)
    return Checked(values, errors)


def names(*, stage: str | None = None, source: str | None = None) -> tuple[str, ...]:
    """The settings of one stage and/or source, in their order."""
    return tuple(
        name
        for name, spec in SETTINGS.items()
        if (stage is None or spec.stage == stage) and (source is None or spec.source == source)
    )


# Settings read only by the final evaluation (evaluate_model), after the last epoch.
EVAL_ONLY = names(stage=EVALUATION)
# Settings of where and how a run computes, not of what it computes.
RUNTIME_ONLY = names(stage=RUNTIME)
# Settings the worker fills in (paths and hardware), never stored from the form.
WORKER_FIELDS = names(source=WORKER)
# Settings in pixel units ([0, 1] scale) that people read and type in grey levels (x/255).
BUDGET_FIELDS = tuple(name for name, spec in SETTINGS.items() if spec.budget)
# Settings a sweep may vary over a list of values.
SWEEPABLE = tuple(name for name, spec in SETTINGS.items() if spec.sweep)
# Settings the launch form gives, stored with the run under the same name (the seed apart:
# a form may give several, one run each).
LIBRARY_FIELDS = tuple(
    name for name, spec in SETTINGS.items() if spec.source == FORM and not spec.per_run
)
FORM_FIELDS = names(source=FORM)
