"""The traffic model: seeded, valid rows, and the documented shares within sampling noise."""

from __future__ import annotations

from calltracking.simulate.model import TrafficModel, generate
from calltracking.simulate.traffic import format_traffic, parse_traffic


def test_the_same_seed_gives_the_same_file_and_another_seed_another() -> None:
    model = TrafficModel(days=1, visits_per_day=300)
    assert generate(model) == generate(model)
    assert generate(model) != generate(TrafficModel(days=1, visits_per_day=300, seed=2))


def test_the_generated_file_is_a_valid_traffic_file_with_the_documented_shape() -> None:
    model = TrafficModel(days=2, visits_per_day=2000)
    rows = generate(model)
    assert parse_traffic(format_traffic(rows)) == rows
    assert len(rows) == 4000
    assert all(0 <= r.start_s < 2 * 86400 for r in rows)
    visitors = [r.visitor for r in rows]
    returning = len(visitors) - len(set(visitors))
    assert 0.15 < returning / len(rows) < 0.30  # 25%, less on the first day (no one to return)
    calls = [r for r in rows if r.call_at_s is not None]
    assert 0.01 < len(calls) / len(rows) < 0.04  # 60% x 4% + 40% x 0.5%
    night = sum(1 for r in rows if r.start_s % 86400 < 5 * 3600)
    day = sum(1 for r in rows if 10 * 3600 <= r.start_s % 86400 < 15 * 3600)
    assert day > 5 * night  # the daily curve
    late = [r for r in calls if r.call_at_s is not None and r.call_at_s > r.end_s + 86400]
    assert late  # calls days later exist
