"""What a run setting declares about itself (Setting), the refusal that names it
(ConfigError), and the checks one value gets from its declaration alone.

A TrainConfig field carries its Setting in its metadata (`setting()` writes both); the
field's own annotation and default are its type and default. Everything else that knows
about run settings (the API's schema, the launch form, the worker) reads them from there.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

# The metadata key under which a dataclass field keeps its Setting.
SETTING = "setting"

# Budgets are stored in pixel units ([0, 1] scale) but people read and type them in grey
# levels (x/255): a setting with this unit is shown and entered so.
PIXELS = "pixel units ([0, 1] scale)"

# When a setting acts: on the training itself (and so on its checkpoint and fingerprint),
# only on the final evaluation after the last epoch, or only on where and how it computes.
TRAINING = "training"
EVALUATION = "evaluation"
RUNTIME = "runtime"
STAGES = (TRAINING, EVALUATION, RUNTIME)

# Who gives it: the launch form (stored with the run), the worker (paths and hardware of
# the host that trains), or only a config file or the library's command line.
FORM = "form"
WORKER = "worker"
LIBRARY = "library"
SOURCES = (FORM, WORKER, LIBRARY)

# What a run's fingerprint (the identity a checkpoint resumes under) holds of it: always;
# only away from its default (added after runs existed: at the default, the old behaviour,
# older runs keep their fingerprint); or only on runs of its own methods (the same reason).
ALWAYS = "always"
UNLESS_DEFAULT = "unless_default"
OWN_METHODS = "own_methods"


class ConfigError(ValueError):
    """A configuration value is wrong; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class TrainingCancelled(RuntimeError):
    """should_stop() returned true; the epoch in progress was discarded."""


def grey_levels(pixel_units: float) -> str:
    """A budget in pixel units as people read it: 8/255 -> "8/255", 0.0098 -> "2.5/255"
    (at most two decimals, trailing zeros dropped)."""
    levels = round(pixel_units * 255, 2)
    text = f"{levels:.2f}".rstrip("0").rstrip(".")
    return f"{'0' if text == '-0' else text}/255"


@dataclass(frozen=True)
class Setting:
    """One run setting, beside its field's type and default."""

    unit: str  # what one unit of it is ("epochs", "images", PIXELS); "" for a name or a switch
    label: str  # how a run's page names it
    doc: str  # one or two sentences: what it does
    form_label: str = ""  # the launch form's prompt; "" = the label, capitalised
    minimum: float | None = None
    maximum: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    at_most: str = ""  # another setting it may not exceed; left unset, it follows that one down
    choices: tuple[Any, ...] = ()  # the values it may take; () = any within its bounds
    choice_labels: tuple[tuple[Any, str], ...] = ()  # how people read some of those values
    form_max: int | None = None  # the most a launch form may ask (the library takes more)
    form_items: tuple[int, int] | None = None  # a list: how few and how many a form may give
    item_name: str = "values"  # what the list's items are, in the refusal
    methods: tuple[str, ...] = ()  # the methods it applies to; () = every method
    when: tuple[str, tuple[Any, ...]] | None = None  # ...and only while that setting is one of
    by_method: tuple[tuple[str, str, str], ...] = ()  # (method, label, form_label) on a method
    # that uses it differently
    required: str = ""  # where it applies it must be given; this sentence says so
    message: str = ""  # the refusal of a value outside its bounds or choices ({value})
    stage: str = TRAINING
    source: str = FORM
    per_run: bool = False  # the form gives one value per run of a group (the seeds)
    sweep: bool = False  # a sweep may vary it over a list of values
    fingerprint: str = ALWAYS
    section: str = ""  # the launch form's part it sits in (SECTIONS)
    none_means: str = ""  # how an unset value reads ("as stored")
    zero_means: str = ""  # how 0 reads, where 0 means something ("off", "all")

    def __post_init__(self) -> None:
        assert self.stage in STAGES and self.source in SOURCES, self
        assert self.fingerprint in (ALWAYS, UNLESS_DEFAULT, OWN_METHODS), self

    @property
    def budget(self) -> bool:
        return self.unit == PIXELS

    def reads(self, value: float) -> str:
        """A number as the refusals write it: budgets in grey levels."""
        return grey_levels(value) if self.budget else f"{value:g}"

    def refusal(self, value: Any) -> str | None:
        """Why this value is outside the setting's choices or bounds; None when it is not.
        The value has its field's type already (check_type), and is not None."""
        if self.choices and value not in self.choices:
            return self.message.format(value=value) or f"must be one of {_listed(self.choices)}"
        if isinstance(value, list):
            wrong = [v for v in value if self.refusal(v) is not None]
            if not wrong:
                return None
            # every listed value with a range has both bounds (the eval_eps grid)
            lowest, highest = self.reads(self.minimum or 0), self.reads(self.maximum or 0)
            return f"every value must be between {lowest} and {highest}; got " + ", ".join(
                self.reads(v) for v in wrong
            )
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return None
        low, high = self.minimum, self.maximum
        below = low is not None and (value <= low if self.min_exclusive else value < low)
        above = high is not None and (value >= high if self.max_exclusive else value > high)
        if not (below or above):
            return None
        if self.message:
            return self.message.format(value=value)
        if low is not None and high is not None:
            if self.min_exclusive or self.max_exclusive:
                opening = "(" if self.min_exclusive else "["
                closing = ")" if self.max_exclusive else "]"
                return f"must be in {opening}{low:g}, {high:g}{closing}"
            return (
                f"must be between {self.reads(low)} and {self.reads(high)}; got {self.reads(value)}"
            )
        if low is not None:
            return f"must be {'>' if self.min_exclusive else '>='} {low:g}"
        assert high is not None
        return f"must be {'<' if self.max_exclusive else '<='} {high:g}"

    def form_refusal(self, value: Any) -> str | None:
        """What a launch form may not ask beyond what the library takes; None if it may."""
        if self.form_items is not None and isinstance(value, list):
            fewest, most = self.form_items
            if not fewest <= len(value) <= most:
                return f"give between {fewest} and {most} {self.item_name}"
        if self.form_max is not None and isinstance(value, int) and value > self.form_max:
            return f"must be at most {self.form_max}"
        return None


def _listed(values: tuple[Any, ...]) -> str:
    return ", ".join(str(v) for v in values)


def setting(default: Any, spec: Setting) -> Any:
    """A TrainConfig field: its default, and its Setting in the field's metadata."""
    if isinstance(default, list):
        items = list(default)
        return dataclasses.field(default_factory=lambda: list(items), metadata={SETTING: spec})
    return dataclasses.field(default=default, metadata={SETTING: spec})


def spec_of(f: dataclasses.Field[Any]) -> Setting:
    spec = f.metadata[SETTING]
    assert isinstance(spec, Setting), f.name
    return spec


def check_type(name: str, value: Any, hint: Any) -> Any:
    """A JSON value checked against a field's type; ints are accepted for floats (and become
    floats). Raises ConfigError."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if value is None:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(name, f"must be a list, got {type(value).__name__}")
        return [check_type(name, v, args[0]) for v in value]
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


def type_name(hint: Any) -> str:
    """A field's type as the form description writes it: int, float, bool, str, list[float],
    with "?" when it may be unset (None)."""
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        (hint,) = [a for a in args if a is not type(None)]
    if typing.get_origin(hint) is list:
        text = f"list[{typing.get_args(hint)[0].__name__}]"
    else:
        text = hint.__name__
    return text + ("?" if optional else "")
