"""CSV cells: formula-like values of every kind open as text; the table is also run through the
dashboard's own `csvCell` in Chromium (tests/web/test_dashboard_session_browser.py)."""

from __future__ import annotations

import pytest

from calltracking.core.spreadsheet import csv_cell, csv_line

# (value as the API gives it, the cell written)
CELLS: list[tuple[object, str]] = [
    ("=1+1", "'=1+1"),
    ('=HYPERLINK("http://x.invalid","y")', '"\'=HYPERLINK(""http://x.invalid"",""y"")"'),
    ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
    ("-2+3", "'-2+3"),
    ("-2", "'-2"),
    ("+74951110001", "'+74951110001"),  # E.164 arrives as text, its + kept
    ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
    ("\t=1+1", "'\t=1+1"),
    ("\r=1+1", '"\'\r=1+1"'),
    ("\n=1+1", '"\'\n=1+1"'),
    ("+", "'+"),
    ("-", "'-"),
    ("newsletter", "newsletter"),
    ("a=b", "a=b"),
    (" =1+1", " =1+1"),  # not at the start: a spreadsheet reads text
    ("cpc;spring", '"cpc;spring"'),
    ("a,b", '"a,b"'),
    ('say "hi"', '"say ""hi"""'),
    ("-1,5", '"\'-1,5"'),
    (42, "42"),
    (0.75, "0.75"),
    (None, ""),
    (True, "true"),
    ("", ""),
]


@pytest.mark.parametrize(("value", "cell"), CELLS)
def test_formula_like_cells_are_neutralised_and_others_kept(value: object, cell: str) -> None:
    assert csv_cell(value) == cell


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r", "\n"])
@pytest.mark.parametrize("rest", ["", "1", "1+1", "cmd|' /C calc'!A0", "SUM(A1)"])
def test_every_formula_start_is_neutralised_whatever_follows(start: str, rest: str) -> None:
    assert csv_cell(start + rest).lstrip('"').startswith("'" + start)


def test_a_line_joins_cells_with_commas() -> None:
    assert csv_line(["c1", "+74951110001", None, "=1"]) == "c1,'+74951110001,,'=1"
