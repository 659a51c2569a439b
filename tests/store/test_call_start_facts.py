"""Which leases' own visits a call-start batch reads (call_start_facts.lease_visits_needed): only
those a call may fall back to, when its visitor has no visit read by the call's time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from calltracking.store.call_start_facts import lease_visits_needed

CALL_AT = datetime(2026, 11, 25, 9, 3, tzinfo=UTC)


def _lease(visitor: str | None, visit: str | None) -> Any:
    return SimpleNamespace(visitor_id=visitor, visit_id=visit)


def _visit(minutes: int) -> Any:
    return SimpleNamespace(started_at=CALL_AT + timedelta(minutes=minutes))


@pytest.mark.parametrize(
    ("visits", "needed"),
    [
        ({}, ["v-lease"]),  # the visitor's visits not read (none by the batch's time)
        ({"visitor": [_visit(1)]}, ["v-lease"]),  # only a visit after the earliest call
        ({"visitor": [_visit(1), _visit(0)]}, []),  # one by the earliest call: every call has it
        ({"other": [_visit(-5)]}, ["v-lease"]),  # someone else's visit
    ],
)
def test_a_leases_own_visit_is_read_when_a_call_may_fall_back_to_it(
    visits: dict[str, list[Any]], needed: list[str]
) -> None:
    leases = {"+7495": [_lease("visitor", "v-lease"), _lease(None, None)]}
    assert lease_visits_needed(leases, visits, CALL_AT) == needed
