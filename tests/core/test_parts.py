"""What belongs to which part of a split site follows from ids alone (core/engine/parts.py):
every node must compute the same, and a forged key must never name a part that is not."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calltracking.cluster.shards import SHARDS, shard_of
from calltracking.core.engine.parts import (
    MAX_PARTS,
    decision_key,
    holder_part,
    ids_in_part,
    number_part,
    part_of,
    part_settings,
    split_key,
)
from calltracking.core.engine.pool import Lease, Number
from calltracking.core.settings import SiteSettings

T0 = datetime(2026, 12, 1, tzinfo=UTC)


@given(st.text(max_size=40), st.integers(min_value=1, max_value=MAX_PARTS))
def test_an_id_falls_in_one_part_of_range(key: str, parts: int) -> None:
    assert 0 <= part_of(key, parts) < parts
    assert part_of(key, parts) == part_of(key, parts)
    assert part_of(key, 1) == 0


def test_drawn_ids_fall_in_the_part_that_asked_for_them() -> None:
    counter = itertools.count()
    for parts in (2, 3, 16):
        for part in range(parts):
            draw = ids_in_part(lambda: f"visitor-{next(counter)}", part, parts)
            assert all(part_of(draw(), parts) == part for _ in range(20))
    plain = lambda: "x"  # noqa: E731
    assert ids_in_part(plain, 0, 1) is plain


def test_a_number_is_in_its_holders_part_else_its_last_holders_else_its_digits() -> None:
    parts = 4
    held_by = next(f"v{i}" for i in itertools.count() if part_of(f"v{i}", parts) == 1)
    last = next(f"w{i}" for i in itertools.count() if part_of(f"w{i}", parts) == 2)
    e164 = next(f"+7495{i:07d}" for i in itertools.count() if part_of(f"+7495{i:07d}", 4) == 3)
    lease = Lease("l1", e164, held_by, None, "", T0, T0)
    assert number_part(Number(e164, lease=lease, last_visitor_id=last), parts) == 1
    assert number_part(Number(e164, last_visitor_id=last), parts) == 2
    assert number_part(Number(e164), parts) == 3


@given(
    st.text(min_size=1, max_size=16),
    st.one_of(st.none(), st.text(max_size=16)),
    st.one_of(st.none(), st.text(min_size=1, max_size=16)),
    st.integers(min_value=1, max_value=MAX_PARTS),
)
def test_a_numbers_part_from_its_stored_fields_is_the_part_of_the_number_built_from_them(
    e164: str, last: str | None, holder: str | None, parts: int
) -> None:
    lease = Lease("l1", e164, holder, None, "", T0, T0) if holder is not None else None
    built = Number(e164, lease=lease, last_visitor_id=last)
    assert holder_part(e164, last, holder, parts) == number_part(built, parts)


@given(
    st.integers(min_value=0, max_value=500),
    st.integers(min_value=0, max_value=500),
    st.integers(min_value=1, max_value=MAX_PARTS),
)
def test_the_parts_shares_of_the_pool_add_up_to_the_sites(
    pool_min: int, extra: int, parts: int
) -> None:
    settings = dataclasses.replace(SiteSettings(), pool_min=pool_min, pool_max=pool_min + extra)
    shares = [part_settings(settings, part, parts) for part in range(parts)]
    assert sum(s.pool_max for s in shares) == settings.pool_max
    assert sum(s.pool_min for s in shares) == settings.pool_min
    assert all(s.pool_min <= s.pool_max for s in shares)
    assert max(s.pool_max for s in shares) - min(s.pool_max for s in shares) <= 1


def test_a_part_key_names_its_site_and_part_and_a_whole_site_none() -> None:
    assert decision_key("site1", 0, 1) == "site1"
    assert split_key("site1") == ("site1", None)
    for part in range(3):
        assert split_key(decision_key("site1", part, 3)) == ("site1", part)


@given(st.text(max_size=30))
def test_a_forged_key_names_a_real_part_or_is_refused(key: str) -> None:
    try:
        site_id, part = split_key(key)
    except ValueError:
        assert "#" in key
        return
    assert part is None or 0 <= part < MAX_PARTS
    assert "#" not in site_id or part is not None


@pytest.mark.parametrize("site_id", ["site-a", "a" * 32, "0123456789abcdef"])
def test_the_parts_of_a_site_have_shards_of_their_own(site_id: str) -> None:
    for parts in (2, 8, MAX_PARTS):
        shards = {shard_of(decision_key(site_id, part, parts)) for part in range(parts)}
        assert len(shards) == parts
        assert all(0 <= shard < SHARDS for shard in shards)
    assert shard_of(decision_key(site_id, 0, 2)) == shard_of(site_id)
