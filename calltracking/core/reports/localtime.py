"""Days and months in the account's time zone, where reports and leads begin them.

Rules: a window is [since, until); a day or month belongs to it when any instant of the window
falls in it; months are "YYYY-MM" strings, days `date`s, both taken in `tz`.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, tzinfo

from calltracking.core.errors import InvalidInput

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_TICK = timedelta(microseconds=1)


def day_of(at: datetime, tz: tzinfo) -> date:
    return at.astimezone(tz).date()


def month_of(at: datetime, tz: tzinfo) -> str:
    """The "YYYY-MM" month `at` falls in, in `tz`."""
    local = at.astimezone(tz)
    # Not strftime: a call start asks this once per call, and strftime cost it several times
    # as much (it also writes a year before 1000 without the zeros `parse_month` requires).
    return f"{local.year:04d}-{local.month:02d}"


def parse_month(month: str) -> date:
    """The first day of a "YYYY-MM" month; InvalidInput naming `month` otherwise."""
    found = _MONTH.match(month) if isinstance(month, str) else None
    if found is None:
        raise InvalidInput("month", "must be YYYY-MM")
    return date(int(found.group(1)), int(found.group(2)), 1)


def month_bounds(month: str, tz: tzinfo) -> tuple[datetime, datetime]:
    """The month's [since, until) as aware datetimes in `tz`, for the store's query."""
    first = parse_month(month)
    return (
        datetime.combine(first, time(), tzinfo=tz),
        datetime.combine(_next_month(first), time(), tzinfo=tz),
    )


def days_between(since: datetime, until: datetime, tz: tzinfo) -> list[date]:
    """Every local day [since, until) touches, oldest first."""
    if until <= since:
        return []
    first, last = day_of(since, tz), day_of(until - _TICK, tz)
    return [date.fromordinal(n) for n in range(first.toordinal(), last.toordinal() + 1)]


def months_between(since: datetime, until: datetime, tz: tzinfo) -> list[str]:
    """Every local month [since, until) touches, oldest first."""
    if until <= since:
        return []
    current = day_of(since, tz).replace(day=1)
    last = day_of(until - _TICK, tz).replace(day=1)
    months = []
    while current <= last:
        months.append(current.strftime("%Y-%m"))
        current = _next_month(current)
    return months


def _next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)
