"""The launch form, derived from the settings: its parts, the app objects it names in place of
paths (Ref), its choices and defaults, the description GET /api/runs/defaults serves (the
page builds the form and reads a run's settings from it), and its one validation pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runconfig.settings import FORM, Setting, type_name
from runconfig.train_config import (
    AUTO_MASK_SOURCES,
    DEFAULTS,
    LIBRARY_FIELDS,
    METHOD,
    METHODS,
    SETTINGS,
    SIP_METHODS,
    TYPES,
    Checked,
    TrainConfig,
    check,
)


@dataclass(frozen=True)
class Section:
    """A part of the launch form (and of a run's settings as its page lists them, in this
    order); it shows while one of its settings applies."""

    key: str
    legend: str
    notes: tuple[str, ...] = ()


SECTIONS = (
    Section("what", "What"),
    Section("attack", "Attack (ε, step in grey levels /255)"),
    Section("masks", "SIP-AT masks"),
    Section("fast", "Fast SIP-AT"),
    Section("part", "PART"),
    Section("igd", "IGD"),
    Section("optimisation", "Optimisation"),
    Section("evaluation", "Evaluation (AutoAttack at the training ε, PGD over an ε grid)"),
    Section(
        "compute",
        "Compute (on the worker's GPUs when it has them)",
        (
            "More than one GPU: one process per GPU (DistributedDataParallel) on one worker "
            "host, each with its share of every batch; the batch size stays the global one.",
            "The final evaluation (PGD, AutoAttack) always runs in fp32.",
        ),
    ),
)


@dataclass(frozen=True)
class Ref:
    """A launch-form field that names one of the app's objects (a frozen mask set, a finished
    run) where the library takes a path: the worker turns it into one. Stored with the run
    under its own name; a form gives its id."""

    name: str
    label: str  # how a run's page names it
    form_label: str
    doc: str
    section: str
    methods: tuple[str, ...]
    when: tuple[str, tuple[Any, ...]] | None = None
    fills: str = ""  # the setting the worker makes of it, if one


REFS = (
    Ref(
        "mask_set_id",
        "mask set",
        "Mask set",
        "A frozen mask set of the dataset: the human masks SIP-AT trains with.",
        "masks",
        SIP_METHODS,
        ("mask_source", ("human",)),
    ),
    Ref(
        "auto_mask_run_id",
        "maps from run",
        "Model for automatic maps (finished run)",
        "A finished run of the dataset whose model makes the automatic maps.",
        "masks",
        SIP_METHODS,
        ("mask_source", AUTO_MASK_SOURCES),
        fills="auto_mask_model",
    ),
    Ref(
        "igd_teacher_run_id",
        "teacher run",
        "Teacher (finished standard run)",
        "A finished standard run of the same model and dataset: IGD's teacher.",
        "igd",
        ("igd",),
        fills="igd_teacher",
    ),
)
APP_REFS = tuple(ref.name for ref in REFS)


def choices() -> dict[str, list[Any]]:
    """The values the run form offers for each field with a fixed set."""
    return {
        name: list(spec.choices)
        for name, spec in SETTINGS.items()
        if spec.choices and spec.source == FORM
    }


def library_defaults() -> dict[str, Any]:
    """The library's default value of every launch-form setting stored with a run."""
    return {name: DEFAULTS[name] for name in LIBRARY_FIELDS}


def check_form(given: Mapping[str, Any]) -> Checked:
    """A launch form's settings in one pass: every refusal, one per field."""
    return check(given, form=True)


def from_stored(config: Mapping[str, Any]) -> TrainConfig:
    """A run's stored config (the form's settings, its seed and the app references) as the
    library reads it, before the worker fills in paths and hardware. Raises ConfigError."""
    return check_form({k: v for k, v in config.items() if k not in APP_REFS}).config()


def _field(name: str, spec: Setting) -> dict[str, Any]:
    return {
        "name": name,
        "type": type_name(TYPES[name]),
        "default": DEFAULTS[name],
        "unit": spec.unit,
        "budget": spec.budget,
        "label": spec.label,
        "form_label": spec.form_label or spec.label[:1].upper() + spec.label[1:],
        "doc": spec.doc,
        "minimum": spec.minimum,
        "maximum": spec.maximum,
        "min_exclusive": spec.min_exclusive,
        "max_exclusive": spec.max_exclusive,
        "at_most": spec.at_most or None,
        "form_max": spec.form_max,
        "form_items": list(spec.form_items) if spec.form_items else None,
        "choices": list(spec.choices) if spec.choices else None,
        "choice_labels": {str(value): text for value, text in spec.choice_labels},
        "methods": list(spec.methods or METHODS),
        "when": _when(spec.when),
        "by_method": {m: {"label": a, "form_label": b} for m, a, b in spec.by_method},
        "stage": spec.stage,
        "source": spec.source,
        "per_run": spec.per_run,
        "sweep": spec.sweep,
        "section": spec.section,
        "none_means": spec.none_means or None,
        "zero_means": spec.zero_means or None,
    }


def _when(when: tuple[str, tuple[Any, ...]] | None) -> dict[str, Any] | None:
    return None if when is None else {"field": when[0], "values": list(when[1])}


def describe() -> dict[str, Any]:
    """The launch form as data (GET /api/runs/defaults): its sections in order; every
    setting it gives with its type, unit, bounds, default, choices, the methods it applies
    to, its stage (training, evaluation, runtime) and whether a sweep may vary it; the
    references to app objects, with where they apply; and which setting is the method."""
    return {
        "method_setting": METHOD,
        "sections": [{"key": s.key, "legend": s.legend, "notes": list(s.notes)} for s in SECTIONS],
        "fields": [_field(name, spec) for name, spec in SETTINGS.items() if spec.source == FORM],
        "refs": [
            {
                "name": ref.name,
                "label": ref.label,
                "form_label": ref.form_label,
                "doc": ref.doc,
                "section": ref.section,
                "methods": list(ref.methods),
                "when": _when(ref.when),
                "fills": ref.fills or None,
            }
            for ref in REFS
        ],
        # fields of a run's reproducibility record that belong to a setting of another name:
        # they apply where that setting does
        "record_owners": {"mask_set_hash": "mask_set_id", "train_images_with_map": "mask_fraction"},
    }
