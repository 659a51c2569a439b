"""What the operator API reads and changes beyond the adapters' own store functions: calls listed
newest first with a keyset cursor, calls as the API shows them, spam/note and export retries,
leads, the numbers and a site's pool with their states, site changes and deletion, and the inputs
of a site report.

Rules:
- Callers of these functions have checked ownership; `account_id=None` means the admin (all).
- Calls are ordered by (started_at, id) descending; a cursor is the last row's pair, so pages
  neither repeat nor skip rows when calls arrive meanwhile.
- Every change here runs inside the caller's one write transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core import leases as rules
from calltracking.core.errors import Conflict, NotFound
from calltracking.core.kinds import AttributionKind, ExportState, LeaseEndReason, PoolState
from calltracking.core.reports.inputs import DisplayPeriod, PoolFacts, VisitRecord
from calltracking.core.reports.leads import is_lead
from calltracking.core.reports.localtime import month_bounds, month_of
from calltracking.core.settings import SiteSettings, settings_to_json
from calltracking.store import exports
from calltracking.store import schema as t
from calltracking.store.calls import record_from_row, record_json, session_from_row
from calltracking.store.leasing import end_lease
from calltracking.store.sites import Site, claim_number, get_site, release_to_reserve

SPAM_DETAIL = "spam"  # exports skipped because the call was marked spam (restored on unmark)
WAV_HEADER_BYTES = 44  # a header-only WAV is no recording


@dataclass(frozen=True, slots=True)
class CallFilter:
    account_id: str | None  # None: the admin, every call
    site_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    kind: str | None = None
    status: str | None = None


@dataclass(frozen=True, slots=True)
class CallCursor:
    started_at: datetime
    id: str


# --- calls -------------------------------------------------------------------------------------


async def list_calls(
    conn: AsyncConnection, flt: CallFilter, limit: int, after: CallCursor | None
) -> tuple[list[dict[str, Any]], CallCursor | None]:
    c = t.calls.c
    query = sa.select(t.calls)
    if flt.account_id is not None:
        query = query.where(c.account_id == flt.account_id)
    if flt.site_id is not None:
        query = query.where(c.site_id == flt.site_id)
    if flt.since is not None:
        query = query.where(c.started_at >= flt.since)
    if flt.until is not None:
        query = query.where(c.started_at < flt.until)
    if flt.kind is not None:
        query = query.where(c.kind == flt.kind)
    if flt.status is not None:
        query = query.where(c.status == flt.status)
    if after is not None:
        query = query.where(
            sa.or_(
                c.started_at < after.started_at,
                sa.and_(c.started_at == after.started_at, c.id < after.id),
            )
        )
    query = query.order_by(c.started_at.desc(), c.id.desc()).limit(limit + 1)
    rows = list(await conn.execute(query))
    page = rows[:limit]
    cursor = CallCursor(page[-1].started_at, page[-1].id) if len(rows) > limit else None
    return await calls_json(conn, page), cursor


async def get_call_row(conn: AsyncConnection, call_id: str, account_id: str | None) -> Any:
    query = sa.select(t.calls).where(t.calls.c.id == call_id)
    if account_id is not None:
        query = query.where(t.calls.c.account_id == account_id)
    return (await conn.execute(query)).first()


async def calls_json(conn: AsyncConnection, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Calls as `record_json` gives them; `has_recording` only for a non-empty recording."""
    visit_ids = [r.visit_id for r in rows if r.visit_id]
    sessions = {}
    if visit_ids:
        for v in await conn.execute(sa.select(t.visits).where(t.visits.c.id.in_(visit_ids))):
            sessions[v.id] = session_from_row(v)
    states: dict[str, dict[str, str]] = {r.id: {} for r in rows}
    if rows:
        for e in await conn.execute(
            sa.select(t.exports).where(t.exports.c.call_id.in_(list(states)))
        ):
            states[e.call_id][e.target] = e.state
    return [
        record_json(
            record_from_row(r, sessions.get(r.visit_id)),
            states[r.id],
            has_recording=has_recording(r),
        )
        | {"note": r.note}
        for r in rows
    ]


def has_recording(row: Any) -> bool:
    size = row.recording_size
    if row.recording_path is None or size is None:
        return False
    return bool(size > WAV_HEADER_BYTES if row.recording_path.endswith(".wav") else size > 0)


async def patch_call(
    conn: AsyncConnection, row: Any, *, spam: bool | None, note: str | None, set_note: bool
) -> None:
    """Spam leaves the leads and the exports (pending ones become skipped); unmarking restores
    both (the lead only if the caller has no other lead that month)."""
    values: dict[str, Any] = {}
    if set_note:
        values["note"] = note
    if spam is not None and spam != row.spam:
        values["spam"] = spam
        exports = t.exports.update().where(t.exports.c.call_id == row.id)
        if spam:
            values["lead"] = False
            await conn.execute(
                exports.where(t.exports.c.state == str(ExportState.PENDING)).values(
                    state=str(ExportState.SKIPPED), detail=SPAM_DETAIL, next_attempt_at=None
                )
            )
        else:
            values["lead"] = await _lead_again(conn, row)
            await conn.execute(
                exports.where(
                    t.exports.c.state == str(ExportState.SKIPPED),
                    t.exports.c.detail == SPAM_DETAIL,
                ).values(
                    state=str(ExportState.PENDING), detail=None, next_attempt_at=row.started_at
                )
            )
    if values:
        await conn.execute(t.calls.update().where(t.calls.c.id == row.id).values(**values))


async def _lead_again(conn: AsyncConnection, row: Any) -> bool:
    if row.account_id is None or row.caller is None:
        return False
    tz = await account_zone(conn, row.account_id)
    start, end = month_bounds(month_of(row.started_at, tz), tz)
    c = t.calls.c
    others = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(t.calls)
        .where(
            c.account_id == row.account_id,
            c.caller == row.caller,
            c.id != row.id,
            c.lead.is_(True),
            c.spam.is_(False),
            c.started_at >= start,
            c.started_at < end,
        )
    )
    return is_lead(AttributionKind(row.kind), False, row.caller, int(others or 0))


async def retry_export(conn: AsyncConnection, row: Any, target: str, now: datetime) -> str:
    """The API's retry: a spam call is never exported; otherwise the store's `retry_export`
    (failed -> pending); Conflict naming why when that cannot be."""
    if row.spam:
        raise Conflict(f"{target}: cannot retry: the call is spam")
    try:
        fresh = await exports.retry_export(conn, row.id, target, now)
    except NotFound:
        raise Conflict(
            f"{target}: this call has no {target} export (it has not ended yet)"
        ) from None
    return str(fresh.state)


async def account_zone(conn: AsyncConnection, account_id: str) -> ZoneInfo:
    name = await conn.scalar(sa.select(t.accounts.c.timezone).where(t.accounts.c.id == account_id))
    return ZoneInfo(name or "UTC")


async def month_lead_calls(
    conn: AsyncConnection, account_id: str, month: str
) -> list[dict[str, Any]]:
    """The account's leads of `month` (its time zone), newest first."""
    tz = await account_zone(conn, account_id)
    start, end = month_bounds(month, tz)
    c = t.calls.c
    rows = await conn.execute(
        sa.select(t.calls)
        .where(
            c.account_id == account_id,
            c.lead.is_(True),
            c.spam.is_(False),
            c.started_at >= start,
            c.started_at < end,
        )
        .order_by(c.started_at.desc(), c.id.desc())
    )
    return await calls_json(conn, list(rows))


# --- numbers and pools -------------------------------------------------------------------------


async def _active_leases(conn: AsyncConnection, site_id: str | None) -> dict[str, Any]:
    query = sa.select(t.leases).where(t.leases.c.ended_at.is_(None))
    if site_id is not None:
        query = query.where(t.leases.c.site_id == site_id)
    return {r.number: r for r in await conn.execute(query)}


def _snapshot(row: Any, lease: Any) -> rules.NumberSnapshot:
    release = None
    if row.last_released_at is not None and row.last_visitor_id is not None:
        release = rules.LastRelease(
            row.last_visitor_id, row.cooling_site_id or row.site_id, row.last_released_at
        )
    active = None
    if lease is not None:
        active = rules.ActiveLease(lease.id, lease.visitor_id, lease.assigned_at)
    return rules.NumberSnapshot(
        e164=row.e164,
        site_id=row.site_id,
        static=row.role == "static",
        lease=active,
        last_release=release,
        cooling_site_id=row.cooling_site_id,
        cooling_until=row.cooling_until,
    )


async def site_pool(conn: AsyncConnection, site: Site, now: datetime) -> list[dict[str, Any]]:
    """The site's pool and static numbers, each with its state (free|leased|held|static)."""
    leases = await _active_leases(conn, site.id)
    rows = await conn.execute(
        sa.select(t.numbers)
        .where(t.numbers.c.site_id == site.id, t.numbers.c.role.in_(("pool", "static")))
        .order_by(t.numbers.c.e164)
    )
    result = []
    for row in rows:
        lease = leases.get(row.e164)
        state = rules.pool_state(_snapshot(row, lease), site.settings, now)
        visitor = lease.visitor_id if lease is not None else None
        if state is PoolState.HELD:
            visitor = row.last_visitor_id
        result.append(
            {
                "e164": row.e164,
                "state": str(state),
                "label": row.static_label,
                "visitor": visitor,
                "leased_since": lease.assigned_at.isoformat() if lease is not None else None,
                "last_released_at": _iso(row.last_released_at),
            }
        )
    return result


async def all_numbers(conn: AsyncConnection, now: datetime) -> list[dict[str, Any]]:
    """Every number: reserve (`reserve` or `cooling`), pools (pool states) and `default`."""
    leases = await _active_leases(conn, None)
    sites = {r.id: r for r in await conn.execute(sa.select(t.sites.c.id, t.sites.c.settings))}
    result = []
    for row in await conn.execute(sa.select(t.numbers).order_by(t.numbers.c.e164)):
        if row.site_id is None:
            cooling = row.cooling_until is not None and now < row.cooling_until
            state = "cooling" if cooling else "reserve"
        elif row.role == "default":
            state = "default"
        else:
            hold_s = int(sites[row.site_id].settings.get("hold_s", SiteSettings().hold_s))
            settings = replace(SiteSettings(), hold_s=hold_s)
            state = str(rules.pool_state(_snapshot(row, leases.get(row.e164)), settings, now))
        result.append(
            {
                "e164": row.e164,
                "state": state,
                "site_id": row.site_id,
                "label": row.static_label,
                "cooling_site_id": row.cooling_site_id if state == "cooling" else None,
                "cooling_until": _iso(row.cooling_until) if state == "cooling" else None,
                "last_released_at": _iso(row.last_released_at),
            }
        )
    return result


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def pool_size(conn: AsyncConnection, site_id: str) -> int:
    value = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(t.numbers)
        .where(t.numbers.c.site_id == site_id, t.numbers.c.role == "pool")
    )
    return int(value or 0)


# --- site changes ------------------------------------------------------------------------------


async def update_site(
    conn: AsyncConnection,
    site: Site,
    *,
    name: str | None,
    domains: Sequence[str] | None,
    defaults: Mapping[str, str] | None,
    settings: SiteSettings,
    now: datetime,
) -> Site:
    """Apply a PATCH: names, defaults and static numbers claimed or released, the pool shrunk to
    a lowered `pool_max` (free numbers first; leased ones stay)."""
    new_defaults = {str(k): v for k, v in site.defaults.items()}
    if defaults is not None:
        new_defaults = dict(defaults)
    for e164 in settings.static:
        if e164 in new_defaults.values():
            raise Conflict(f"settings.static.{e164}: {e164} is one of the site's default numbers")
    for e164 in set(site.settings.static) - set(settings.static):
        await release_to_reserve(conn, site, e164, now)
    for e164, label in settings.static.items():
        field = f"settings.static.{e164}"
        await claim_number(conn, e164, site.id, "static", label, field, now)
    if defaults is not None:
        for kind, e164 in new_defaults.items():
            await claim_number(conn, e164, site.id, "default", None, f"defaults.{kind}", now)
        old = set(site.defaults.values()) - set(new_defaults.values())
        await _to_reserve(conn, site, sorted(old), now)
    values: dict[str, Any] = {"settings": settings_to_json(settings, mask_secrets=False)}
    if name is not None:
        values["name"] = name
    if domains is not None:
        values["domains"] = list(domains)
    if defaults is not None:
        values.update({f"default_{kind}": e164 for kind, e164 in new_defaults.items()})
    await conn.execute(t.sites.update().where(t.sites.c.id == site.id).values(**values))
    updated = await get_site(conn, site.id)
    assert updated is not None
    await _shrink_pool(conn, updated, now)
    return updated


async def _shrink_pool(conn: AsyncConnection, site: Site, now: datetime) -> None:
    excess = await pool_size(conn, site.id) - site.settings.pool_max
    if excess <= 0:
        return
    leases = await _active_leases(conn, site.id)
    rows = await conn.execute(
        sa.select(t.numbers).where(t.numbers.c.site_id == site.id, t.numbers.c.role == "pool")
    )
    idle = [_snapshot(r, None) for r in rows if r.e164 not in leases]

    def order(n: rules.NumberSnapshot) -> tuple[bool, float, str]:
        released = n.last_release.ended_at.timestamp() if n.last_release else 0.0
        return (rules.in_hold(n, site.settings, now), released, n.e164)

    for number in sorted(idle, key=order)[:excess]:
        await release_to_reserve(conn, site, number.e164, now)


async def _to_reserve(
    conn: AsyncConnection, site: Site, e164s: Sequence[str], now: datetime
) -> None:
    """Numbers leave the site for the reserve, cooling down from their last release (or now)."""
    cooldown = timedelta(days=site.settings.cooldown_days)
    for row in await conn.execute(sa.select(t.numbers).where(t.numbers.c.e164.in_(list(e164s)))):
        await conn.execute(
            t.numbers.update()
            .where(t.numbers.c.e164 == row.e164)
            .values(
                site_id=None,
                role="reserve",
                static_label=None,
                cooling_site_id=site.id,
                cooling_until=(row.last_released_at or now) + cooldown,
            )
        )


async def delete_site(conn: AsyncConnection, site: Site, now: datetime) -> dict[str, int]:
    """Mark the site deleted, end its active leases (`site_deleted`) and return all its numbers
    to the reserve, cooling down; its calls stay."""
    await conn.execute(t.sites.update().where(t.sites.c.id == site.id).values(deleted_at=now))
    ended = 0
    for lease in (await _active_leases(conn, site.id)).values():
        ended += await end_lease(conn, lease.id, LeaseEndReason.SITE_DELETED, now) is not None
    numbers = list(
        (
            await conn.execute(sa.select(t.numbers.c.e164).where(t.numbers.c.site_id == site.id))
        ).scalars()
    )
    await _to_reserve(conn, site, numbers, now)
    await conn.execute(
        t.visitors.update().where(t.visitors.c.site_id == site.id).values(waiting_since=None)
    )
    return {"leases_ended": ended, "numbers_returned": len(numbers)}


# --- report inputs -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportInputs:
    calls: list[Any]
    visits: list[VisitRecord]
    displays: list[DisplayPeriod]
    pool: PoolFacts


async def report_inputs(
    conn: AsyncConnection, site: Site, since: datetime, until: datetime
) -> ReportInputs:
    c = t.calls.c
    call_rows = list(
        await conn.execute(
            sa.select(t.calls).where(
                c.site_id == site.id, c.started_at >= since, c.started_at < until
            )
        )
    )
    visit_ids = [r.visit_id for r in call_rows if r.visit_id]
    sessions = {}
    if visit_ids:
        for row in await conn.execute(sa.select(t.visits).where(t.visits.c.id.in_(visit_ids))):
            sessions[row.id] = session_from_row(row)
    calls = [record_from_row(r, sessions.get(r.visit_id)) for r in call_rows]
    v = t.visits.c
    visits = [
        VisitRecord(r.id, r.visitor_id, r.started_at, r.source, r.medium, r.campaign, r.got_number)
        for r in await conn.execute(
            sa.select(t.visits).where(
                v.site_id == site.id, v.started_at >= since, v.started_at < until
            )
        )
    ]
    d = t.displays.c
    displays = [
        DisplayPeriod(r.visitor_id, r.kind, r.e164, r.started_at, r.ended_at, r.anchor_at)
        for r in await conn.execute(
            sa.select(t.displays).where(
                d.site_id == site.id,
                d.started_at < until,
                sa.or_(d.ended_at.is_(None), d.ended_at >= since),
            )
        )
    ]
    return ReportInputs(calls, visits, displays, await _pool_facts(conn, site, since, until))


async def _pool_facts(
    conn: AsyncConnection, site: Site, since: datetime, until: datetime
) -> PoolFacts:
    """Size now, the most leases active at once within the window, exhaustions in it."""
    lc = t.leases.c
    changes: list[tuple[datetime, int]] = []
    for r in await conn.execute(
        sa.select(lc.assigned_at, lc.ended_at).where(
            lc.site_id == site.id,
            lc.assigned_at < until,
            sa.or_(lc.ended_at.is_(None), lc.ended_at > since),
        )
    ):
        changes.append((max(r.assigned_at, since), +1))
        if r.ended_at is not None and r.ended_at < until:
            changes.append((r.ended_at, -1))
    peak = leased = 0
    for _, step in sorted(changes):  # at one instant the ends (-1) come before the starts
        leased += step
        peak = max(peak, leased)
    pc = t.pool_events.c
    exhausted = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(t.pool_events)
        .where(pc.site_id == site.id, pc.kind == "exhausted", pc.at >= since, pc.at < until)
    )
    return PoolFacts(await pool_size(conn, site.id), peak, int(exhausted or 0))
