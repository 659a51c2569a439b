"""The traffic file: one row per visit, seconds from the file's start (CONTRACT.md v1.1).

    visitor,start_s,end_s,last_active_s,url,referrer,call_at_s

Rules the parser keeps (strict: the first bad row stops it with one line naming the row):
- the header is exactly the seven names above, in that order;
- `visitor` is 1 to 200 characters (the cookie id: a returning visitor repeats it);
- times are finite decimal numbers of seconds >= 0, at most ten years;
- start_s <= last_active_s <= end_s (a visit is active from its start until last_active_s,
  then its tab may stay open, idle, until end_s);
- `call_at_s` is empty (no call) or >= start_s (a visitor calls at the earliest when the visit
  shows a number);
- `url` and `referrer` are free text up to 2000 characters (the traffic source rules read them);
  no text cell holds a line break.
Row numbers in errors count the header as row 1, so they are the file's line numbers for files
without quoted line breaks.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

HEADER = ("visitor", "start_s", "end_s", "last_active_s", "url", "referrer", "call_at_s")
MAX_SECONDS = 10 * 366 * 86400.0
MAX_TEXT = 2000
MAX_VISITOR = 200


class TrafficError(ValueError):
    """A traffic file that cannot be replayed; the message is one line naming the row."""


@dataclass(frozen=True, slots=True)
class VisitRow:
    visitor: str
    start_s: float
    end_s: float
    last_active_s: float
    url: str = ""
    referrer: str = ""
    call_at_s: float | None = None


def parse_traffic(text: str, name: str = "traffic") -> list[VisitRow]:
    """Every row of a traffic file, or TrafficError for the first bad one."""
    if "\x00" in text:
        raise TrafficError(f"{name} row 1: not a text file (NUL byte)")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != HEADER:
            raise TrafficError(f"{name} row 1: the header must be {','.join(HEADER)}")
        rows = [_row(cells, index, name) for index, cells in enumerate(reader, start=2) if cells]
    except csv.Error as exc:
        raise TrafficError(f"{name} row {reader.line_num}: {_one_line(str(exc))}") from None
    return rows


def _row(cells: Sequence[str], index: int, name: str) -> VisitRow:
    where = f"{name} row {index}"
    if len(cells) != len(HEADER):
        raise TrafficError(f"{where}: expected {len(HEADER)} columns, found {len(cells)}")
    visitor, start, end, active, url, referrer, call = cells
    for value, column in ((visitor, "visitor"), (url, "url"), (referrer, "referrer")):
        if len(value) > MAX_TEXT or "\r" in value or "\n" in value:
            raise TrafficError(
                f"{where}: {column} must be one line of at most {MAX_TEXT} characters"
            )
    if not visitor or len(visitor) > MAX_VISITOR:
        raise TrafficError(f"{where}: visitor must be 1 to {MAX_VISITOR} characters")
    start_s = _seconds(start, "start_s", where)
    end_s = _seconds(end, "end_s", where)
    active_s = _seconds(active, "last_active_s", where)
    if not start_s <= active_s <= end_s:
        raise TrafficError(f"{where}: start_s <= last_active_s <= end_s does not hold")
    call_s = None if call.strip() == "" else _seconds(call, "call_at_s", where)
    if call_s is not None and call_s < start_s:
        raise TrafficError(f"{where}: call_at_s is before start_s")
    return VisitRow(visitor, start_s, end_s, active_s, url, referrer, call_s)


def _seconds(cell: str, column: str, where: str) -> float:
    try:
        value = float(cell.strip())
    except ValueError:
        raise TrafficError(f"{where}: {column} must be a number of seconds") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_SECONDS:
        raise TrafficError(f"{where}: {column} must be from 0 to {MAX_SECONDS:.0f} seconds")
    return value


def _one_line(text: str) -> str:
    return " ".join(text.split())


def format_traffic(rows: Iterable[VisitRow]) -> str:
    """The rows as a traffic file (`parse_traffic` reads it back to the same rows)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for row in rows:
        writer.writerow(
            (
                row.visitor,
                _fmt(row.start_s),
                _fmt(row.end_s),
                _fmt(row.last_active_s),
                row.url,
                row.referrer,
                "" if row.call_at_s is None else _fmt(row.call_at_s),
            )
        )
    return out.getvalue()


def _fmt(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)
