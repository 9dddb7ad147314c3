"""CSV exports are safe to open in a spreadsheet: a cell a participant (or anyone) could
write that begins with = + - @ or a tab or CR is prefixed with a single quote (OWASP's CSV
injection advice), so that Excel, LibreOffice or Sheets show it as text instead of
evaluating it; genuine numbers stay numbers."""

from __future__ import annotations

import csv
import io

import pytest

from backend.services import csv_export
from backend.services.studies import analysis

PAYLOADS = [
    '=HYPERLINK("https://evil.example/x","open")',
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "+1+1",
    "-2+3",
    "=1+1\r\n",
    "\r\n=1+1",
    "\t=1+1",
    "＝1+1",  # a full-width equals sign, which some spreadsheets read as "="
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_formula_like_text_cell_is_quoted(payload):
    assert csv_export.safe_cell(payload) == "'" + payload


@pytest.mark.parametrize(
    ("value", "cell"),
    [(-2, -2), (-2.5, -2.5), ("-2", "-2"), ("+3.5e-2", "+3.5e-2"), (0, 0), ("p-2", "p-2"),
     (None, ""), (True, 1), ("", "")],
)  # fmt: skip
def test_numbers_and_plain_text_are_kept(value, cell):
    assert csv_export.safe_cell(value) == cell


def test_the_trials_csv_quotes_a_participants_formula(monkeypatch):
    """PROLIFIC_PID is any text a participant sends: in trials.csv it arrives quoted, every
    number of the row as it was."""
    row = {
        "participant": PAYLOADS[0],
        "prolific_pid": PAYLOADS[0],
        "session_id": 7,
        "condition_index": 0,
        "trial_index": 0,
        "trial_id": "-abc",  # opaque ids are urlsafe base64: they may begin with "-"
        "phase": "main",
        "left_stimulus": "@x",
        "right_stimulus": None,
        "run_id": 3,
        "epsilon": 4 / 255,
        "epsilon_255": 4.0,
        "correct_answer": "left",
        "answer": "left",
        "correct": True,
        "rt_ms": 512.0,
        "display_scale": 2,
        "shown_at": None,
        "answered_at": "2026-12-01T10:00:00+00:00",
    }
    monkeypatch.setattr(analysis, "_trial_rows", lambda _db, _study: [row])
    monkeypatch.setattr(analysis, "exclusions", lambda _study, _rows: {7: "+1+1"})
    (out,) = list(csv.DictReader(io.StringIO(analysis.trials_csv(None, None))))
    assert out["participant"] == out["prolific_pid"] == "'" + PAYLOADS[0]
    assert out["trial_id"] == "'-abc" and out["left_stimulus"] == "'@x"
    assert out["exclusion_reason"] == "'+1+1"
    assert out["rt_ms"] == "512.0" and out["epsilon_255"] == "4" and out["run_id"] == "3"
    assert out["correct"] == "1" and out["excluded"] == "1"


def test_public_ids_never_start_with_a_formula_character():
    """A trial's or stimulus's id starting with "-" came back from trials.csv escaped (as
    "'-..."), so it no longer matched the id the API gave (a KeyError in a CSV test, 1 run in
    about 60): public ids are drawn so that an export never needs to escape them."""
    from backend.services.studies.common import public_id

    drawn = [public_id(16) for _ in range(3000)]
    assert not [d for d in drawn if d[0] in "-+=@"]
    assert len(set(drawn)) == len(drawn) and all(len(d) >= 21 for d in drawn)
