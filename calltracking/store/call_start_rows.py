"""A new call's row, resolution and `call.started` event, built from what its batch read. No I/O.

Rules (those of `SqlCallRecorder.start_call`, calls.py):
- A new call is attributed by `core.attribution.attribute` from the number's facts at the call's
  own time: the site holding the number now, its last lease assigned at or before then with the
  lease site's settings; the session is the leased visitor's newest visit by then (else the
  lease's own visit).
- First-time caller and lead flags count the calls stored before this one, those earlier in the
  same batch included, exactly as one call after the other would.
- The `call.started` payload is the one `calls.call_json` would build (a new call has no tags,
  exports or recording yet), built from the row without a `CallRecord` in between.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from calltracking.core.attribution import Attribution, NumberFacts, attribute
from calltracking.core.events import Event, EventKey
from calltracking.core.kinds import AttributionKind, CallStatus, ExportState
from calltracking.core.numbers import mask
from calltracking.core.qualification import is_target_call
from calltracking.core.records import Resolution, SessionInfo
from calltracking.core.reports.leads import is_first_time_caller, is_lead
from calltracking.core.reports.localtime import month_bounds, month_of
from calltracking.store.call_start_facts import CallStart, Facts
from calltracking.store.calls import (
    EXPORT_TARGETS,
    lease_facts_of,
    resolution_of,
    session_from_row,
    session_json,
)
from calltracking.store.ids import time_ordered_id
from calltracking.store.sites import Site

log = logging.getLogger(__name__)


def new_call(start: CallStart, facts: Facts) -> tuple[dict[str, Any], Resolution, Event]:
    """The new call's row, its resolution and its `call.started` event."""
    number, owner = _number_facts(start, facts)
    result = attribute(number, start.at)
    site = owner
    if result.site_id is not None and (site is None or site.id != result.site_id):
        site = facts.sites.get(result.site_id)
    visit = _visit(result, start, facts)
    account = facts.accounts.get(site.account_id) if site else None
    first, lead = _flags(start, account, result.kind, facts)
    row = _call_row(start, result, site, visit.id if visit is not None else None, (first, lead))
    session = session_from_row(visit) if visit is not None else None
    event = _started(row, session, account, start.at)
    log.info(
        "call %s started: did %s caller %s -> %s",
        row["id"],
        start.did,
        mask(start.caller),
        result.kind,
    )
    return row, resolution_of(_RowView(row), session), event


def _number_facts(start: CallStart, facts: Facts) -> tuple[NumberFacts, Site | None]:
    row = facts.numbers.get(start.did)
    owner = facts.sites.get(row.site_id) if row is not None and row.site_id else None
    if owner is not None and owner.deleted_at is not None:
        owner = None
    lease_row = next(
        (r for r in facts.leases.get(start.did, ()) if r.assigned_at <= start.at), None
    )
    lease, lease_site = None, None
    if lease_row is not None:
        lease_site = facts.sites.get(lease_row.site_id)
        lease = lease_facts_of(lease_row)
    number = NumberFacts(
        e164=start.did,
        site_id=owner.id if owner else None,
        default_kinds=owner.default_kinds(start.did) if owner else (),
        static_label=row.static_label if row is not None and row.role == "static" else None,
        last_lease=lease,
        last_lease_settings=lease_site.settings if lease_site else None,
    )
    return number, owner


def _visit(result: Attribution, start: CallStart, facts: Facts) -> Any:
    if result.lease is None:
        return None
    rows = facts.visits.get(result.lease.visitor_id or "", ())
    newest = next((r for r in rows if r.started_at <= start.at), None)
    if newest is None and result.lease.visit_id:
        return facts.visits_by_id.get(result.lease.visit_id)  # as calls.py: the lease's visit
    return newest


def _flags(
    start: CallStart, account: Any, kind: AttributionKind, facts: Facts
) -> tuple[bool, bool]:
    if account is None or start.caller is None:
        return False, False
    pair = (account.id, start.caller)
    begin, end = _month_around(start.at, account.timezone or "UTC")
    leads = sum(1 for at in facts.leads.get(pair, ()) if begin <= at < end)
    first = is_first_time_caller(start.caller, facts.earlier[pair])
    lead = is_lead(kind, False, start.caller, leads)
    facts.earlier[pair] += 1  # the next call of this batch sees this one as earlier
    if lead:
        facts.leads.setdefault(pair, []).append(start.at)
    return first, lead


def _month_around(at: datetime, timezone: str) -> tuple[datetime, datetime]:
    """The [since, until) of the account's local month holding `at`."""
    tz = ZoneInfo(timezone)
    return _month_bounds(month_of(at, tz), timezone)


@functools.lru_cache(maxsize=256)
def _month_bounds(month: str, timezone: str) -> tuple[datetime, datetime]:
    # Every call of a month in a time zone asks for the same bounds; they never change.
    return month_bounds(month, ZoneInfo(timezone))


def _call_row(
    start: CallStart,
    result: Attribution,
    site: Site | None,
    visit_id: str | None,
    flags: tuple[bool, bool],
) -> dict[str, Any]:
    return {
        "id": time_ordered_id(),
        "pbx_id": start.key.pbx_id,
        "linkedid": start.key.linkedid,
        "account_id": site.account_id if site else None,
        "site_id": site.id if site else None,
        "did": start.did,
        "caller": start.caller,
        "started_at": start.at,
        "status": str(CallStatus.RINGING),
        "kind": str(result.kind),
        "confidence": result.confidence,
        "lease_id": result.lease.lease_id if result.lease else None,
        "visitor_id": result.lease.visitor_id if result.lease else None,
        "visit_id": visit_id,
        "static_label": result.static_label,
        "first_time_caller": flags[0],
        "lead": flags[1],
        "spam": False,
        "reconciled": False,
        "route": site.settings.route if site else None,
        "record": site.settings.record_calls if site else True,
    }


# A new call is in no export's queue yet (calls.call_json: a target without a state).
_NO_EXPORTS = {target: str(ExportState.NOT_CONFIGURED) for target in EXPORT_TARGETS}


def _started(row: dict[str, Any], session: SessionInfo | None, account: Any, at: datetime) -> Event:
    """`call.started` with the payload `calls.record_json` builds for a new call (no answer, end,
    tags, exports or recording yet), built from the row directly."""
    rule = account.target_call_talk_s if account is not None else None
    payload = {
        "id": row["id"],
        "site_id": row["site_id"],
        "did": row["did"],
        "caller": row["caller"],
        "started_at": row["started_at"].isoformat(),
        "answered_at": None,
        "ended_at": None,
        "status": row["status"],
        "duration_s": 0,
        "talk_s": 0,
        "answered_by": None,
        "attribution": {
            "kind": row["kind"],
            "confidence": row["confidence"],
            "visitor": row["visitor_id"],
            "label": row["static_label"],
            "session": session_json(session),
        },
        "first_time_caller": row["first_time_caller"],
        "lead": row["lead"],
        "spam": False,
        "reconciled": False,
        "tags": [],
        "target_call": is_target_call(0, answered=False, spam=False, min_talk_s=rule),
        "has_recording": False,
        "exports": dict(_NO_EXPORTS),
    }
    return Event(key=EventKey.CALL_STARTED, id=time_ordered_id(), occurred_at=at, data=payload)


class _RowView:
    """A dict seen as a row (`resolution_of` reads attributes)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)
