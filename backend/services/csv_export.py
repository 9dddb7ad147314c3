"""CSV that is safe to open in a spreadsheet.

A spreadsheet evaluates a cell that begins with =, +, -, @ (or their full-width forms), or
with a tab, a carriage return or a line feed before one of them, as a formula: a
participant's PROLIFIC_PID of `=HYPERLINK(...)` would become a link, or a command, on the
researcher's machine. Every text cell of every CSV export goes through `safe_cell`, which
prefixes such a cell with a single quote (OWASP, "CSV Injection"); the spreadsheet shows the
text, without the quote. Numbers stay numbers, whether given as numbers or as the text of a
plain decimal number ("-2", "3.5e-2"), since no spreadsheet reads those as formulas.

JSON exports (COCO masks, masks.json, a study's results) keep every value exactly as stored:
they are read by programs (pycocotools, the mask import, analysis scripts) and by the
researcher who pays participants by their exact PROLIFIC_PID, and no spreadsheet evaluates a
JSON file's values on opening it. A value copied out of them into a spreadsheet is the
copier's to paste as text.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence

# what a spreadsheet takes as the start of a formula
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")
PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def safe_cell(value: object) -> object:
    """A CSV cell for `value`: None is empty, a bool 0 or 1, a number itself, and text that
    a spreadsheet would evaluate is prefixed with a single quote."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    text = str(value)
    if text.startswith(FORMULA_STARTS) and not PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A CSV document (one header line, then the rows), every cell through safe_cell."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([safe_cell(h) for h in header])
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
    return buf.getvalue()
