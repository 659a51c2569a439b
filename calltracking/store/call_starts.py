"""Many call starts stored in one transaction, a statement per kind of row, not per call.

The rules are those of `SqlCallRecorder.start_call` (calls.py), applied to a batch:
- A call is one row per (pbx_id, linkedid); a key already stored (the AMI listener came first, or
  the same key twice in one batch) gets the stored row's frozen resolution, nothing is written.
- A new call is attributed by `core.attribution.attribute` from the number's facts at the call's
  own time: the site holding the number now, its last lease assigned at or before then with the
  lease site's settings. These facts and the visits are read once per batch, before the write
  transaction (`read_numbers`: the leases visible at once); the accounts and the callers'
  earlier calls are read once per batch inside it, so the flags count every stored call.
- First-time caller and lead flags count the calls stored before this one, those earlier in the
  same batch included, exactly as one call after the other would.
- Each new call writes its `call.started` outbox row in the same transaction, with the payload
  `calls.call_json` would build (a new call has no tags, exports or recording yet).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.attribution import Attribution, LeaseFacts, NumberFacts, attribute
from calltracking.core.events import Event, EventKey
from calltracking.core.kinds import AttributionKind, CallStatus
from calltracking.core.numbers import mask
from calltracking.core.qualification import is_target_call
from calltracking.core.records import CallKey, Resolution, SessionInfo
from calltracking.core.reports.leads import is_first_time_caller, is_lead
from calltracking.core.reports.localtime import month_bounds, month_of
from calltracking.store import schema as t
from calltracking.store.calls import _resolution, record_from_row, record_json, session_from_row
from calltracking.store.outbox import new_id
from calltracking.store.sites import Site, site_from_row

log = logging.getLogger(__name__)
# Rows kept per number (leases) and per visitor (visits) when choosing the one at a call's time;
# a batch spans milliseconds, so the newest few always include it.
NEWEST = 3


@dataclass(frozen=True, slots=True)
class CallStart:
    key: CallKey
    did: str
    caller: str | None
    at: datetime


@dataclass
class _Facts:
    """What one batch read, shared by its calls."""

    numbers: dict[str, Any]
    leases: dict[str, list[Any]]
    sites: dict[str, Site]
    visits: dict[str, list[Any]]
    visits_by_id: dict[str, Any]
    accounts: dict[str, Any]
    earlier: Counter[tuple[str, str]]
    leads: dict[tuple[str, str], list[datetime]]


async def store_starts(
    conn: AsyncConnection, starts: Sequence[CallStart], numbers: NumbersSeen
) -> list[Resolution]:
    """Store the calls of `starts` not stored yet, attributed from `numbers` (read_numbers); each
    one's resolution, in order. `conn` is a write transaction."""
    stored = await _stored(conn, {s.key for s in starts})
    done: dict[CallKey, Resolution] = {}
    for key, row in stored.items():
        done[key] = await _resolution(conn, row)
    fresh: dict[CallKey, CallStart] = {}
    for start in starts:
        if start.key not in done:
            fresh.setdefault(start.key, start)
    if fresh:
        facts = numbers.facts
        await _read_callers(conn, list(fresh.values()), facts)
        rows, events = [], []
        for start in fresh.values():
            row, resolution, event = _new_call(start, facts)
            rows.append(row)
            events.append(event)
            done[start.key] = resolution
        await conn.execute(t.calls.insert(), rows)
        await conn.execute(
            t.outbox.insert(),
            [
                {
                    "event_id": e.id,
                    "key": e.key,
                    "payload": e.to_json(),
                    "occurred_at": e.occurred_at,
                }
                for e in events
            ],
        )
    return [done[s.key] for s in starts]


async def _stored(conn: AsyncConnection, keys: set[CallKey]) -> dict[CallKey, Any]:
    found: dict[CallKey, Any] = {}
    by_pbx: dict[str, list[str]] = {}
    for key in keys:
        by_pbx.setdefault(key.pbx_id, []).append(key.linkedid)
    for pbx_id, linkedids in by_pbx.items():
        query = sa.select(t.calls).where(
            t.calls.c.pbx_id == pbx_id, t.calls.c.linkedid.in_(linkedids)
        )
        for row in await conn.execute(query):
            found[CallKey(row.pbx_id, row.linkedid)] = row
    return found


def _newest(table: sa.Table, part: sa.Column[Any], order: sa.Column[Any], where: Any) -> Any:
    """The NEWEST rows per `part` matching `where`, newest first."""
    rank = sa.func.row_number().over(partition_by=part, order_by=order.desc()).label("rank")
    inner = sa.select(table, rank).where(where).subquery()
    return sa.select(inner).where(inner.c.rank <= NEWEST).order_by(inner.c[part.name], inner.c.rank)


@dataclass
class NumbersSeen:
    """The numbers' facts of one batch as a read transaction saw them (read_numbers)."""

    facts: _Facts


async def read_numbers(conn: AsyncConnection, starts: Sequence[CallStart]) -> NumbersSeen:
    """The facts that attribute `starts`: their numbers, the newest leases of each at the calls'
    times with those sites, and the leased visitors' visits. Any connection: reading them
    outside the write transaction answers from the leases visible at once, as a lone call would
    have seen them a moment earlier, and keeps the writer's lock short."""
    return NumbersSeen(await _read_facts(conn, starts))


async def _read_facts(conn: AsyncConnection, starts: Sequence[CallStart]) -> _Facts:
    dids = sorted({s.did for s in starts})
    latest = max(s.at for s in starts)
    numbers = {
        r.e164: r
        for r in await conn.execute(sa.select(t.numbers).where(t.numbers.c.e164.in_(dids)))
    }
    leases: dict[str, list[Any]] = {}
    lease_query = _newest(
        t.leases,
        t.leases.c.number,
        t.leases.c.assigned_at,
        sa.and_(t.leases.c.number.in_(dids), t.leases.c.assigned_at <= latest),
    )
    for r in await conn.execute(lease_query):
        leases.setdefault(r.number, []).append(r)
    site_ids = {r.site_id for r in numbers.values() if r.site_id}
    site_ids |= {r.site_id for rows in leases.values() for r in rows}
    sites = {}
    if site_ids:
        query = sa.select(t.sites).where(t.sites.c.id.in_(sorted(site_ids)))
        sites = {r.id: site_from_row(r) for r in await conn.execute(query)}
    visitor_ids = sorted({r.visitor_id for rows in leases.values() for r in rows if r.visitor_id})
    visits: dict[str, list[Any]] = {}
    if visitor_ids:
        visit_query = _newest(
            t.visits,
            t.visits.c.visitor_id,
            t.visits.c.started_at,
            sa.and_(t.visits.c.visitor_id.in_(visitor_ids), t.visits.c.started_at <= latest),
        )
        for r in await conn.execute(visit_query):
            visits.setdefault(r.visitor_id, []).append(r)
    by_id: dict[str, Any] = {}
    lease_visits = sorted({r.visit_id for rows in leases.values() for r in rows if r.visit_id})
    if lease_visits:
        query = sa.select(t.visits).where(t.visits.c.id.in_(lease_visits))
        by_id = {r.id: r for r in await conn.execute(query)}
    return _Facts(numbers, leases, sites, visits, by_id, {}, Counter(), {})


async def _read_callers(conn: AsyncConnection, starts: list[CallStart], facts: _Facts) -> None:
    """The accounts and their callers' stored calls, inside the write transaction (counts)."""
    facts.accounts, facts.earlier, facts.leads = {}, Counter(), {}
    account_ids = sorted({s.account_id for s in facts.sites.values()})
    callers = sorted({s.caller for s in starts if s.caller})
    if not account_ids:
        return
    query = sa.select(t.accounts).where(t.accounts.c.id.in_(account_ids))
    facts.accounts = {r.id: r for r in await conn.execute(query)}
    if not callers:
        return
    rows = await conn.execute(
        sa.select(t.calls.c.account_id, t.calls.c.caller, t.calls.c.lead, t.calls.c.spam)
        .add_columns(t.calls.c.started_at)
        .where(t.calls.c.account_id.in_(account_ids), t.calls.c.caller.in_(callers))
    )
    for r in rows:
        pair = (r.account_id, r.caller)
        facts.earlier[pair] += 1
        if r.lead and not r.spam:
            facts.leads.setdefault(pair, []).append(r.started_at)


def _number_facts(start: CallStart, facts: _Facts) -> tuple[NumberFacts, Site | None]:
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
        lease = LeaseFacts(
            lease_row.id,
            lease_row.site_id,
            lease_row.visitor_id,
            lease_row.visit_id,
            lease_row.assigned_at,
            lease_row.ended_at,
        )
    number = NumberFacts(
        e164=start.did,
        site_id=owner.id if owner else None,
        default_kinds=owner.default_kinds(start.did) if owner else (),
        static_label=row.static_label if row is not None and row.role == "static" else None,
        last_lease=lease,
        last_lease_settings=lease_site.settings if lease_site else None,
    )
    return number, owner


def _visit(result: Attribution, start: CallStart, facts: _Facts) -> Any:
    if result.lease is None:
        return None
    rows = facts.visits.get(result.lease.visitor_id or "", ())
    newest = next((r for r in rows if r.started_at <= start.at), None)
    if newest is None and result.lease.visit_id:
        return facts.visits_by_id.get(result.lease.visit_id)  # as calls.py: the lease's visit
    return newest


def _flags(
    start: CallStart, account: Any, kind: AttributionKind, facts: _Facts
) -> tuple[bool, bool]:
    if account is None or start.caller is None:
        return False, False
    pair = (account.id, start.caller)
    tz = ZoneInfo(account.timezone or "UTC")
    begin, end = month_bounds(month_of(start.at, tz), tz)
    leads = sum(1 for at in facts.leads.get(pair, ()) if begin <= at < end)
    first = is_first_time_caller(start.caller, facts.earlier[pair])
    lead = is_lead(kind, False, start.caller, leads)
    facts.earlier[pair] += 1  # the next call of this batch sees this one as earlier
    if lead:
        facts.leads.setdefault(pair, []).append(start.at)
    return first, lead


def _new_call(start: CallStart, facts: _Facts) -> tuple[dict[str, Any], Resolution, Event]:
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
    return row, _resolved(row, session), event


def _call_row(
    start: CallStart,
    result: Attribution,
    site: Site | None,
    visit_id: str | None,
    flags: tuple[bool, bool],
) -> dict[str, Any]:
    return {
        "id": new_id(),
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


# A new call has none of these yet.
_NOT_YET = {"answered_at": None, "ended_at": None, "answered_by": None, "recording_size": None}


def _started(row: dict[str, Any], session: SessionInfo | None, account: Any, at: datetime) -> Event:
    """`call.started` with the payload `calls.call_json` builds for a call without tags,
    exports or recording."""
    record = record_from_row(_RowView({**row, **_NOT_YET}), session)
    rule = account.target_call_talk_s if account is not None else None
    record = replace(
        record,
        tags=(),
        target_call=is_target_call(record.talk_s, answered=False, spam=False, min_talk_s=rule),
    )
    payload = record_json(record, {}, has_recording=False)
    return Event(key=EventKey.CALL_STARTED, id=new_id(), occurred_at=at, data=payload)


class _RowView:
    """A dict seen as a row (`record_from_row` reads attributes)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def _resolved(row: dict[str, Any], session: SessionInfo | None) -> Resolution:
    label = row["static_label"]
    source = session.source if session else (label if label else None)
    medium = session.medium if session else None
    if label and "/" in label:
        source, medium = label.split("/", 1)
    return Resolution(
        call_id=row["id"],
        kind=AttributionKind(row["kind"]),
        site_id=row["site_id"],
        source=source,
        medium=medium,
        campaign=session.campaign if session else None,
        route=row["route"],
        record=bool(row["record"]),
    )
