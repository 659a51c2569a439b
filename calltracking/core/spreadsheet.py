"""CSV cells that a spreadsheet opens as data, never as a formula (CSV injection).

Rules (the dashboard's `csvCell` in web/static/dashboard.js keeps the same ones):
- A cell whose first character is `=`, `+`, `-`, `@`, a tab, CR or LF gets a leading apostrophe,
  whatever follows: `+1+cmd|' /C calc'!A0` and `-2+3` are formulas to Excel and LibreOffice, so no
  "it looks like a number" exemption. Real E.164 numbers (`+74951110001`) and negative numbers
  therefore arrive as text (`'+74951110001`); spreadsheets hide the apostrophe, and a number kept
  as text also keeps its leading `+`, which a number cell would drop.
- A cell holding a comma, semicolon (the separator of many European spreadsheets), quote, CR or LF
  is quoted, quotes doubled. None is the empty cell.
"""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
NEEDS_QUOTES = (",", ";", '"', "\r", "\n")


def csv_cell(value: object) -> str:
    if value is None:
        return ""
    # JSON booleans as the dashboard writes them
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    if text.startswith(FORMULA_STARTS):
        text = "'" + text
    if any(c in text for c in NEEDS_QUOTES):
        text = '"' + text.replace('"', '""') + '"'
    return text


def csv_line(values: list[object]) -> str:
    return ",".join(csv_cell(v) for v in values)
