"""The run configuration lives in one place (runconfig/): every setting declares its unit,
bounds, methods, stage, source and whether a sweep may vary it, and everything else derives
from those declarations. Older runs keep their fingerprint (they resume), one pass names
every bad field, and no API schema, service or page writes a setting's name itself."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import runconfig
from runconfig import SETTINGS, TrainConfig
from tests.conftest import ROOT

# Fingerprints of these configs as runs stored them before runconfig existed (worker/contract.py
# at c6c3939): a checkpoint resumes only under the same one.
FINGERPRINTS = [
    ({}, "cd648bf6ed2faec3"),
    ({"method": "sip_at", "mask_fraction": 0.5, "seed": 3}, "9b9af4f1f1990a94"),
    ({"method": "fast_sip_at", "fast_attack": "fgsm_rs"}, "bf16c83fa03270e6"),
    (
        {"method": "part", "eps": 16 / 255, "part_eps_low": 4 / 255, "precision": "bf16"},
        "7499386672528a0f",
    ),
    (
        {
            "method": "igd",
            "igd_teacher": "/t.pt",
            "eps_warmup_epochs": 2,
            "sync_batchnorm": True,
            "gpus": 2,
        },
        "76ca9e66224c696c",
    ),  # fmt: skip
    # the final evaluation and where it computes leave it as it was
    (
        {"eval_eps": [1 / 255], "autoattack_n": 0, "device": "cuda:0", "data_loader": "stream"},
        "cd648bf6ed2faec3",
    ),
]


@pytest.mark.parametrize(("config", "fingerprint"), FINGERPRINTS)
def test_older_runs_keep_their_fingerprint(config, fingerprint):
    assert TrainConfig.from_dict(config).fingerprint() == fingerprint


def test_the_field_lists_are_derived_from_the_declarations():
    assert runconfig.EVAL_ONLY == ("eval_eps", "eval_steps", "eval_restarts", "autoattack_n")
    assert set(runconfig.RUNTIME_ONLY) == {
        "device", "gpus", "threads", "compile", "compile_backend", "deterministic",
        "data_loader", "loader_workers",
    }  # fmt: skip
    assert set(runconfig.WORKER_FIELDS) == {
        "data_dir", "auto_mask_model", "igd_teacher", "device", "threads",
    }  # fmt: skip
    assert len(runconfig.LIBRARY_FIELDS) == 34
    assert {"mask_fraction", "eps", "alpha", "steps", "mask_threshold", "lr"} <= set(
        runconfig.SWEEPABLE
    )
    for name, spec in SETTINGS.items():
        assert spec.label and spec.doc, name
        if spec.source == runconfig.FORM:
            assert spec.section in {s.key for s in runconfig.SECTIONS}, name
        assert set(spec.methods) <= set(runconfig.METHODS), name
        if spec.when is not None:
            assert spec.when[0] in SETTINGS, name


def test_a_reference_applies_where_the_setting_it_stands_for_does():
    for ref in runconfig.REFS:
        assert ref.section in {s.key for s in runconfig.SECTIONS}
        if ref.fills:
            spec = SETTINGS[ref.fills]
            assert (ref.methods, ref.when) == (spec.methods, spec.when), ref.name


def test_one_pass_names_every_bad_field():
    checked = runconfig.check_form(
        {"eps": 2, "epochs": 0, "schedule": "x", "gpus": 9, "eval_eps": [], "bogus": 1}
    )
    assert {e.field: e.message for e in checked.errors} == {
        "bogus": "unknown field",
        "eps": "must be between 0/255 and 255/255; got 510/255",
        "epochs": "must be >= 1",
        "schedule": "must be one of none, step, cosine",
        "gpus": "must be a whole number of GPUs from 1 to 8 (one process each); got 9",
        "eval_eps": "give between 1 and 16 epsilons",
    }
    # the form's own limits are the form's: the library takes a longer run
    assert runconfig.check_form({"epochs": 2000}).refused == {"epochs"}
    assert TrainConfig.from_dict({"epochs": 2000}).epochs == 2000


def test_a_low_budget_left_unset_follows_eps_down():
    assert TrainConfig.from_dict({"eps": 2 / 255}).part_eps_low == pytest.approx(2 / 255)
    with pytest.raises(runconfig.ConfigError) as e:
        TrainConfig.from_dict({"eps": 2 / 255, "part_eps_low": 4 / 255})
    assert e.value.field == "part_eps_low"


def test_the_form_is_described_with_what_a_page_needs():
    d = runconfig.describe()
    fields = {f["name"]: f for f in d["fields"]}
    assert set(fields) == set(runconfig.FORM_FIELDS)
    eps = fields["eps"]
    assert eps["budget"] and eps["minimum"] == 0 and eps["maximum"] == 1 and eps["sweep"]
    assert eps["by_method"]["standard"]["form_label"].startswith("Evaluation ε (/255")
    assert fields["alpha"]["methods"] == ["pgd_at", "sip_at", "part", "igd"]
    assert fields["sync_batchnorm"]["when"] == {"field": "gpus", "values": list(range(2, 9))}
    assert fields["autoattack_n"]["type"] == "int?" and fields["eval_eps"]["type"] == "list[float]"
    assert d["method_setting"] == "method"
    assert [r["name"] for r in d["refs"]] == list(runconfig.APP_REFS)


def test_the_api_schema_is_built_from_the_settings():
    from backend.schemas.runs import RunCreate

    own = {"dataset_id", "name", "tags", "seeds"}
    assert set(RunCreate.model_fields) == own | set(runconfig.FORM_FIELDS) | set(runconfig.APP_REFS)


# Setting names that are also ordinary words of the app with other meanings (a study's attack
# has its eps and steps, a participant a device, a dataset an image size, a run a method and a
# model, a psychometric function its guess rate gamma, as psignifit names it, and a dataset
# import the test_fraction of its split): a literal of these says nothing about run settings.
COMMON_WORDS = {"method", "model", "seed", "eps", "steps", "image_size", "device"}
COMMON_WORDS |= {"gamma", "test_fraction"}
# Where a setting's name is derived, never written: the API's schemas, routes and services,
# and the frontend (pages, components, helpers).
DERIVED = ["backend/schemas", "backend/routers", "backend/services", "frontend"]
_JS_STRING = re.compile(r"""(["'`])([a-z0-9_]+)\1""")


def _literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string literal that is a bare identifier."""
    text = path.read_text()
    if path.suffix == ".py":
        return [
            (node.lineno, node.value)
            for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        ]
    # comments out (a usage line may quote a name), line numbers kept
    code = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group().count("\n"), text, flags=re.S)
    code = re.sub(r"^\s*//.*$", "", code, flags=re.M)
    return [(code[: m.start()].count("\n") + 1, m.group(2)) for m in _JS_STRING.finditer(code)]


def test_no_schema_service_or_page_writes_a_setting_name():
    names = set(SETTINGS) - COMMON_WORDS
    bad = []
    for folder in DERIVED:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".py", ".js"):
                continue
            bad += [
                f"{path.relative_to(ROOT)}:{line}: {text!r}"
                for line, text in _literals(path)
                if text in names
            ]
    assert bad == [], "derive these from runconfig:\n" + "\n".join(bad)
