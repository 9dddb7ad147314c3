"""The all-pages check (test_demo_pages.PAGE_PROBLEMS) itself, on pages written here, so that
its rules can be tried in seconds rather than over the whole demo: it flags a "± 0.0" beside
"n=1" and raw JSON in a table cell, and passes the same figures written honestly."""

from __future__ import annotations

import pytest

from tests.browser.test_demo_pages import PAGE_PROBLEMS

pytestmark = pytest.mark.browser

BAD = """<table><tbody>
<tr><td class="num">15.0% ± 0.0% <span>n=1</span><br><span>95 %: –x</span></td></tr>
<tr><td>{"statuses": ["accepted"], "min_annotators": 1}</td></tr>
<tr><td>[1, 2, 3]</td></tr>
</tbody></table>"""

GOOD = """<table><tbody>
<tr><td class="num">15.0% <span>n=1, one run: no spread</span></td></tr>
<tr><td class="num">15.0% ± 0.0% <span>n=12</span></td></tr>
<tr><td class="num">15.0% ± 2.1% <span>n=3</span></td></tr>
<tr><td>statuses: accepted · min annotators: 1</td></tr>
<tr><td>[see the log]</td></tr>
<tr><td>{draft}</td></tr>
</tbody></table>"""


def test_page_problems_flags_a_spread_of_one_value_and_raw_json(chromium):
    page = chromium.new_page()
    try:
        page.set_content(f"<body>{BAD}</body>")
        problems = page.evaluate(PAGE_PROBLEMS)
        assert len([p for p in problems if p.startswith("a ± for one value")]) == 1, problems
        assert len([p for p in problems if p.startswith("raw JSON in a table cell")]) == 2, problems

        page.set_content(f"<body>{GOOD}</body>")
        assert page.evaluate(PAGE_PROBLEMS) == []
    finally:
        page.close()
