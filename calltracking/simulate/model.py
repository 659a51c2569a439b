"""A documented traffic model for `calltracking simulate --generate` (a small business site
buying search ads; the figures are assumptions, not measurements, and each is a field of
`TrafficModel` so a run can change it).

Per day `visits_per_day` visits (exactly), each drawn independently:
- daily curve: the hour of the start follows `HOURLY` (site-local time = file time; quiet at
  night, a morning climb, a plateau 10:00-18:00, an evening tail), uniform within the hour;
- returning visitors: `returning_share` (25%) of visits come from a visitor of the last
  `return_window_days` (3) days, picked uniformly from that window's visits (so frequent visitors
  return more); the others are new cookie ids;
- bounce: `bounce_share` (40%) leave within 5-30 s of arriving, with no activity after the first
  seconds; the others are active for a log-normal time, median `active_median_s` (150 s),
  sigma 1.0, capped at one hour;
- tabs left open: `left_open_share` (20%) of visits leave the tab open (and idle) after the last
  activity for a log-normal time, median `left_open_median_s` (40 minutes), capped at 8 hours;
  the others close it 0-60 s after the last activity;
- calls: a bounce calls with `bounce_call_share` (0.5%), another visit with `call_share` (4%);
  of those calls `during_share` (65%) come during the active part of the visit, after the visitor
  has read a while (uniform over its last 60%, from 40% of the active time to the last
  activity; a bounce calls within its few seconds), `hours_share` (25%) after the visit,
  10 minutes to 8 hours later (log-uniform), the rest 1 to 5 days later (uniform);
- source: `SOURCES` gives the landing URL and referrer mix (paid search, organic, direct,
  social, referral), which the tracker classifies as it would live.
Seeded: the same seed gives the same file.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from calltracking.simulate.traffic import VisitRow

DAY = 86400.0
HOURLY = (
    1, 1, 1, 1, 1, 2, 3, 5, 7, 9, 10, 10, 10, 10, 10, 10, 10, 9, 8, 7, 6, 5, 3, 2,
)  # fmt: skip
SOURCES = (
    (0.35, "https://shop.example/?gclid=EAIaIQ", "https://www.google.com/"),
    (0.15, "https://shop.example/?yclid=7123", "https://yandex.ru/"),
    (0.20, "https://shop.example/", "https://www.google.com/"),
    (0.20, "https://shop.example/", ""),
    (0.05, "https://shop.example/", "https://vk.com/"),
    (0.05, "https://shop.example/", "https://forum.example.org/t/42"),
)


@dataclass(frozen=True, slots=True)
class TrafficModel:
    days: int = 7
    visits_per_day: int = 3000
    seed: int = 1
    returning_share: float = 0.25
    return_window_days: float = 3.0
    bounce_share: float = 0.40
    active_median_s: float = 150.0
    left_open_share: float = 0.20
    left_open_median_s: float = 2400.0
    bounce_call_share: float = 0.005
    call_share: float = 0.04
    during_share: float = 0.65
    hours_share: float = 0.25


def generate(model: TrafficModel) -> list[VisitRow]:
    rng = random.Random(model.seed)
    starts = sorted(
        day * DAY + _start_in_day(rng)
        for day in range(model.days)
        for _ in range(model.visits_per_day)
    )
    rows: list[VisitRow] = []
    new_ids = (f"v{n}" for n in range(1, len(starts) + 1))
    first_recent = 0  # index of the first row inside the return window
    for start in starts:
        while rows and rows[first_recent].start_s < start - model.return_window_days * DAY:
            first_recent += 1
        recent = len(rows) - first_recent
        if recent and rng.random() < model.returning_share:
            visitor = rows[first_recent + rng.randrange(recent)].visitor
        else:
            visitor = next(new_ids)
        rows.append(_visit(rng, model, visitor, start))
    return rows


def _start_in_day(rng: random.Random) -> float:
    hour = rng.choices(range(24), weights=HOURLY)[0]
    return hour * 3600 + rng.random() * 3600


def _visit(rng: random.Random, model: TrafficModel, visitor: str, start: float) -> VisitRow:
    bounce = rng.random() < model.bounce_share
    if bounce:
        active = rng.uniform(5, 30)
    else:
        active = min(3600.0, rng.lognormvariate(math.log(model.active_median_s), 1.0))
    last_active = start + active
    if rng.random() < model.left_open_share:
        linger = min(8 * 3600.0, rng.lognormvariate(math.log(model.left_open_median_s), 1.0))
    else:
        linger = rng.uniform(0, 60)
    end = last_active + linger
    call_share = model.bounce_call_share if bounce else model.call_share
    call = _call_at(rng, model, start, last_active, end) if rng.random() < call_share else None
    _, url, referrer = rng.choices(SOURCES, weights=[s[0] for s in SOURCES])[0]
    return VisitRow(visitor, _r(start), _r(end), _r(last_active), url, referrer, call)


def _call_at(
    rng: random.Random, model: TrafficModel, start: float, last_active: float, end: float
) -> float:
    pick = rng.random()
    if pick < model.during_share:
        return _r(rng.uniform(start + 0.4 * (last_active - start), last_active))
    if pick < model.during_share + model.hours_share:
        return _r(end + math.exp(rng.uniform(math.log(600), math.log(8 * 3600))))
    return _r(end + rng.uniform(1, 5) * DAY)


def _r(value: float) -> float:
    return round(value, 1)
