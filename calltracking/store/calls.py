"""Calls in storage: the `CallRecorder` the AGI and the AMI listener report to, and the reads the
API, exporters and reports use.

A call is one row per (pbx_id, linkedid), whoever reports it first; its attribution is resolved
then and frozen. Every report is idempotent: a repeated start returns the stored resolution, a
repeated answer or end changes nothing, `call.recorded` fires once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.attribution import LeaseFacts, NumberFacts, attribute
from calltracking.core.callflow.facts import Fact
from calltracking.core.events import EventKey
from calltracking.core.kinds import AttributionKind, CallStatus, ExportState
from calltracking.core.numbers import mask
from calltracking.core.records import CallKey, CallRecord, OpenCall, Resolution, SessionInfo
from calltracking.core.reports.leads import is_first_time_caller, is_lead
from calltracking.core.reports.localtime import month_bounds, month_of
from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.ids import time_ordered_id
from calltracking.store.outbox import emit
from calltracking.store.sites import Site, get_site

log = logging.getLogger(__name__)
EXPORT_TARGETS = ("ga4", "metrika")
_CONFLICT_RETRIES = 5
_RETRY_FIRST_S, _RETRY_MAX_S = 0.05, 2.0


class SqlCallRecorder:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def start_call(
        self, key: CallKey, did: str, caller: str | None, at: datetime
    ) -> Resolution:
        for _ in range(3):
            try:
                async with self.db.write() as conn:
                    existing = await _call_by_key(conn, key)
                    if existing is not None:
                        return await _resolution(conn, existing)
                    row = await _create_call(conn, key, did, caller, at)
                    return await _resolution(conn, row)
            except IntegrityError:
                continue  # the AGI and the AMI listener raced; the other one's row wins
        raise RuntimeError(f"call {key} could not be stored")

    async def record_facts(self, facts: Sequence[Fact]) -> None:
        """Many calls' facts in one transaction (the AMI listener's group commit).

        Retried whole when the FastAGI stored one of its calls meanwhile (IntegrityError), and,
        with back-off until it commits, while the database is unreachable: the listener
        acknowledges the events only after this returns. Any other error is raised.
        """
        from calltracking.store.call_fact_batches import write_facts  # it builds on this module

        delay, attempt = _RETRY_FIRST_S, 0
        while True:
            attempt += 1
            try:
                async with self.db.write() as conn:
                    await write_facts(conn, facts)
                return
            except IntegrityError:
                if attempt >= _CONFLICT_RETRIES:
                    raise
            except (DBAPIError, OSError) as exc:
                if isinstance(exc, DBAPIError) and not _unreachable(exc):
                    raise
                log.warning(
                    "calls: batch of %d facts not written (attempt %d, %s); retrying in %.2f s",
                    len(facts),
                    attempt,
                    type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)

    async def answer_call(self, key: CallKey, at: datetime, answered_by: str | None) -> None:
        async with self.db.write() as conn:
            row = await _call_by_key(conn, key)
            if row is None or row.answered_at is not None or row.ended_at is not None:
                return
            await conn.execute(
                t.calls.update()
                .where(t.calls.c.id == row.id)
                .values(answered_at=at, answered_by=(answered_by or None) and answered_by[:120])
            )
            await emit(conn, EventKey.CALL_ANSWERED, await call_json(conn, row.id), at)

    async def end_call(
        self,
        key: CallKey,
        at: datetime,
        status: CallStatus,
        hangup_cause: int | None = None,
        *,
        reconciled: bool = False,
    ) -> None:
        async with self.db.write() as conn:
            row = await _call_by_key(conn, key)
            if row is None or row.ended_at is not None:
                return
            values: dict[str, Any] = {
                "ended_at": max(at, row.started_at),
                "status": str(status),
                "hangup_cause": hangup_cause,
                "reconciled": reconciled,
            }
            if status is CallStatus.ANSWERED and row.answered_at is None:
                values["answered_at"] = values["ended_at"]
            await conn.execute(t.calls.update().where(t.calls.c.id == row.id).values(**values))
            await _create_exports(conn, row.id, at)
            await emit(conn, EventKey.CALL_ENDED, await call_json(conn, row.id), at)
        log.info("call %s ended: %s (did %s, caller %s)", row.id, status, row.did, mask(row.caller))

    async def name_recording(self, key: CallKey, asterisk_path: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                t.calls.update()
                .where(
                    t.calls.c.pbx_id == key.pbx_id,
                    t.calls.c.linkedid == key.linkedid,
                    t.calls.c.recording_path.is_(None),
                )
                .values(recording_path=asterisk_path[:1000])
            )

    async def confirm_recording(self, key: CallKey, size_bytes: int) -> None:
        async with self.db.write() as conn:
            row = await _call_by_key(conn, key)
            if row is None or row.recording_size is not None or row.recording_path is None:
                return
            await conn.execute(
                t.calls.update().where(t.calls.c.id == row.id).values(recording_size=size_bytes)
            )
            await emit(conn, EventKey.CALL_RECORDED, await call_json(conn, row.id), _now())

    async def open_calls(self, pbx_id: str) -> list[OpenCall]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(t.calls).where(t.calls.c.pbx_id == pbx_id, t.calls.c.ended_at.is_(None))
            )
            return [
                OpenCall(
                    CallKey(r.pbx_id, r.linkedid),
                    r.id,
                    r.started_at,
                    r.answered_at,
                    r.recording_path if r.recording_size is None else None,
                )
                for r in rows
            ]


def _unreachable(exc: DBAPIError) -> bool:
    """The database is cut or busy, not the batch wrong: worth waiting for."""
    return exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError))


def _now() -> datetime:
    return datetime.now(UTC)


async def _call_by_key(conn: AsyncConnection, key: CallKey) -> Any:
    return (
        await conn.execute(
            sa.select(t.calls).where(
                t.calls.c.pbx_id == key.pbx_id, t.calls.c.linkedid == key.linkedid
            )
        )
    ).first()


@dataclass(frozen=True, slots=True)
class Prefetched:
    """What a batch of new calls read at once: `numbers` rows by e164, and each number's latest
    lease assigned up to `until` (the batch's last start)."""

    numbers: Mapping[str, Any]
    leases: Mapping[str, Any]
    until: datetime
    sites: dict[str, Site | None] = field(default_factory=dict)  # read once per batch

    async def site(self, conn: AsyncConnection, site_id: str) -> Site | None:
        if site_id not in self.sites:
            self.sites[site_id] = await get_site(conn, site_id)
        return self.sites[site_id]


async def prefetch(conn: AsyncConnection, dids: Collection[str], until: datetime) -> Prefetched:
    rows = await conn.execute(sa.select(t.numbers).where(t.numbers.c.e164.in_(list(dids))))
    rank = (
        sa.func.row_number()
        .over(partition_by=t.leases.c.number, order_by=t.leases.c.assigned_at.desc())
        .label("rank")
    )
    ranked = (
        sa.select(t.leases, rank)
        .where(t.leases.c.number.in_(list(dids)), t.leases.c.assigned_at <= until)
        .subquery()
    )
    latest = await conn.execute(sa.select(ranked).where(ranked.c.rank == 1))
    return Prefetched({r.e164: r for r in rows}, {r.number: r for r in latest}, until)


async def _last_lease(
    conn: AsyncConnection, did: str, at: datetime, known: Prefetched | None
) -> Any:
    if known is not None and at <= known.until:
        latest = known.leases.get(did)
        # The latest lease up to `until` is the latest up to `at` when it began by then.
        if latest is None or latest.assigned_at <= at:
            return latest
    return (
        await conn.execute(
            sa.select(t.leases)
            .where(t.leases.c.number == did, t.leases.c.assigned_at <= at)
            .order_by(t.leases.c.assigned_at.desc())
            .limit(1)
        )
    ).first()


async def number_facts(
    conn: AsyncConnection, did: str, at: datetime, known: Prefetched | None = None
) -> tuple[NumberFacts, Site | None]:
    if known is not None:
        row = known.numbers.get(did)
    else:
        row = (await conn.execute(sa.select(t.numbers).where(t.numbers.c.e164 == did))).first()
    read_site = known.site if known is not None else get_site
    owner = await read_site(conn, row.site_id) if row is not None and row.site_id else None
    if owner is not None and owner.deleted_at is not None:
        owner = None
    lease_row = await _last_lease(conn, did, at, known)
    lease, lease_site = None, None
    if lease_row is not None:
        lease_site = await read_site(conn, lease_row.site_id)
        lease = lease_facts_of(lease_row)
    facts = NumberFacts(
        e164=did,
        site_id=owner.id if owner else None,
        default_kinds=owner.default_kinds(did) if owner else (),
        static_label=row.static_label if row is not None and row.role == "static" else None,
        last_lease=lease,
        last_lease_settings=lease_site.settings if lease_site else None,
    )
    return facts, owner


async def _create_call(
    conn: AsyncConnection, key: CallKey, did: str, caller: str | None, at: datetime
) -> Any:
    values = await new_call_values(conn, key, did, caller, at)
    await conn.execute(t.calls.insert().values(**values))
    call_id = values["id"]
    await emit(conn, EventKey.CALL_STARTED, await call_json(conn, call_id), at)
    log.info("call %s started: did %s caller %s -> %s", call_id, did, mask(caller), values["kind"])
    return (await conn.execute(sa.select(t.calls).where(t.calls.c.id == call_id))).one()


async def new_call_values(
    conn: AsyncConnection,
    key: CallKey,
    did: str,
    caller: str | None,
    at: datetime,
    known: Prefetched | None = None,
) -> dict[str, Any]:
    """The `calls` row of a call first reported now: its attribution resolved (and frozen)."""
    facts, owner = await number_facts(conn, did, at, known)
    result = attribute(facts, at)
    site = owner
    if result.site_id is not None and (site is None or site.id != result.site_id):
        site = await (known.site if known is not None else get_site)(conn, result.site_id)
    visit_id = None
    if result.lease is not None:
        visit_id = (
            await conn.scalar(
                sa.select(t.visits.c.id)
                .where(
                    t.visits.c.visitor_id == result.lease.visitor_id, t.visits.c.started_at <= at
                )
                .order_by(t.visits.c.started_at.desc())
                .limit(1)
            )
            or result.lease.visit_id
        )
    account_id = site.account_id if site else None
    first, lead = await _caller_flags(conn, account_id, caller, result.kind, at)
    return dict(
        id=time_ordered_id(),
        pbx_id=key.pbx_id,
        linkedid=key.linkedid,
        account_id=account_id,
        site_id=site.id if site else None,
        did=did,
        caller=caller,
        started_at=at,
        status=str(CallStatus.RINGING),
        kind=str(result.kind),
        confidence=result.confidence,
        lease_id=result.lease.lease_id if result.lease else None,
        visitor_id=result.lease.visitor_id if result.lease else None,
        visit_id=visit_id,
        static_label=result.static_label,
        first_time_caller=first,
        lead=lead,
        spam=False,
        reconciled=False,
        route=site.settings.route if site else None,
        record=site.settings.record_calls if site else True,
        answered_at=None,
        ended_at=None,
        hangup_cause=None,
        answered_by=None,
        note=None,
        recording_path=None,
        recording_size=None,
    )


async def _caller_flags(
    conn: AsyncConnection,
    account_id: str | None,
    caller: str | None,
    kind: AttributionKind,
    at: datetime,
) -> tuple[bool, bool]:
    if account_id is None or caller is None:
        return False, False
    # Whether any call came before (an index probe), not how many: a frequent caller's count
    # walked the whole history. The leads below are read through ix_calls_caller_leads.
    earlier = await conn.scalar(
        sa.select(sa.exists().where(t.calls.c.account_id == account_id, t.calls.c.caller == caller))
    )
    tz = ZoneInfo(
        await conn.scalar(sa.select(t.accounts.c.timezone).where(t.accounts.c.id == account_id))
        or "UTC"
    )
    start, end = month_bounds(month_of(at, tz), tz)
    leads = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(t.calls)
        .where(
            t.calls.c.account_id == account_id,
            t.calls.c.caller == caller,
            t.CALL_LEADS,
            t.calls.c.started_at >= start,
            t.calls.c.started_at < end,
        )
    )
    return is_first_time_caller(caller, 1 if earlier else 0), is_lead(
        kind, False, caller, int(leads or 0)
    )


async def _resolution(conn: AsyncConnection, row: Any) -> Resolution:
    return resolution_of(row, await _session(conn, row.visit_id))


def lease_facts_of(row: Any) -> LeaseFacts:
    """A `leases` row as attribution reads it (the call path and the AMI path alike)."""
    return LeaseFacts(
        row.id, row.site_id, row.visitor_id, row.visit_id, row.assigned_at, row.ended_at
    )


def resolution_of(row: Any, session: SessionInfo | None) -> Resolution:
    """The resolution the PBX is told for a stored call `row` (attributes) with its session."""
    label = row.static_label
    source = session.source if session else (label if label else None)
    medium = session.medium if session else None
    if label and "/" in label:
        source, medium = label.split("/", 1)
    return Resolution(
        call_id=row.id,
        kind=AttributionKind(row.kind),
        site_id=row.site_id,
        source=source,
        medium=medium,
        campaign=session.campaign if session else None,
        route=row.route,
        record=bool(row.record),
    )


async def _session(conn: AsyncConnection, visit_id: str | None) -> SessionInfo | None:
    if visit_id is None:
        return None
    v = (await conn.execute(sa.select(t.visits).where(t.visits.c.id == visit_id))).first()
    return None if v is None else session_from_row(v)


def session_from_row(v: Any) -> SessionInfo:
    """A `visits` row as the session a call is attributed to."""
    return SessionInfo(
        source=v.source,
        medium=v.medium,
        campaign=v.campaign,
        term=v.term,
        content=v.content,
        landing_url=v.landing_url,
        referrer=v.referrer,
        ga_client_id=v.ga_client_id,
        ga_session_id=v.ga_session_id,
        ym_client_id=v.ym_client_id,
        started_at=v.started_at,
    )


async def _create_exports(conn: AsyncConnection, call_id: str, at: datetime) -> None:
    row = (await conn.execute(sa.select(t.calls).where(t.calls.c.id == call_id))).one()
    site = await get_site(conn, row.site_id) if row.site_id else None
    analytics = site.settings.analytics if site else None
    for target in EXPORT_TARGETS:
        configured = analytics is not None and getattr(analytics, target) is not None
        if not configured:
            state = ExportState.NOT_CONFIGURED
        elif not AttributionKind(row.kind).tracked or row.spam:
            state = ExportState.SKIPPED
        else:
            state = ExportState.PENDING
        await conn.execute(
            t.exports.insert().values(
                call_id=call_id,
                target=target,
                state=str(state),
                attempts=0,
                next_attempt_at=at if state is ExportState.PENDING else None,
                updated_at=at,
            )
        )


async def call_record(conn: AsyncConnection, call_id: str) -> CallRecord | None:
    """The call with its session and qualification (tags, target call), as exports send it."""
    from calltracking.store.queries.qualification import qualified

    row = (await conn.execute(sa.select(t.calls).where(t.calls.c.id == call_id))).first()
    if row is None:
        return None
    return await qualified(conn, record_from_row(row, await _session(conn, row.visit_id)))


def record_from_row(row: Any, session: SessionInfo | None) -> CallRecord:
    return CallRecord(
        id=row.id,
        account_id=row.account_id,
        site_id=row.site_id,
        did=row.did,
        caller=row.caller,
        started_at=row.started_at,
        status=CallStatus(row.status),
        kind=AttributionKind(row.kind),
        confidence=row.confidence,
        answered_at=row.answered_at,
        ended_at=row.ended_at,
        answered_by=row.answered_by,
        visitor_id=row.visitor_id,
        session=session,
        first_time_caller=row.first_time_caller,
        lead=row.lead,
        spam=row.spam,
        reconciled=row.reconciled,
        static_label=row.static_label,
    )


async def call_json(conn: AsyncConnection, call_id: str) -> dict[str, Any]:
    record = await call_record(conn, call_id)
    assert record is not None
    row = (await conn.execute(sa.select(t.calls).where(t.calls.c.id == call_id))).one()
    states = {
        r.target: r.state
        for r in await conn.execute(sa.select(t.exports).where(t.exports.c.call_id == call_id))
    }
    return record_json(record, states, has_recording=row.recording_size is not None)


def session_json(session: SessionInfo | None) -> dict[str, Any] | None:
    """A call's session as its JSON (`record_json`, the `call.started` payload) carries it."""
    if session is None:
        return None
    return {
        "source": session.source,
        "medium": session.medium,
        "campaign": session.campaign,
        "term": session.term,
        "content": session.content,
        "landing_url": session.landing_url,
        "referrer": session.referrer,
        "ga_client_id": session.ga_client_id,
        "ym_client_id": session.ym_client_id,
        "started_at": session.started_at.isoformat() if session.started_at else None,
    }


def record_json(
    record: CallRecord, export_states: Mapping[str, str], *, has_recording: bool
) -> dict[str, Any]:
    session = record.session
    return {
        "id": record.id,
        "site_id": record.site_id,
        "did": record.did,
        "caller": record.caller,
        "started_at": record.started_at.isoformat(),
        "answered_at": record.answered_at.isoformat() if record.answered_at else None,
        "ended_at": record.ended_at.isoformat() if record.ended_at else None,
        "status": str(record.status),
        "duration_s": record.duration_s,
        "talk_s": record.talk_s,
        "answered_by": record.answered_by,
        "attribution": {
            "kind": str(record.kind),
            "confidence": record.confidence,
            "visitor": record.visitor_id,
            "label": record.static_label,
            "session": session_json(session),
        },
        "first_time_caller": record.first_time_caller,
        "lead": record.lead,
        "spam": record.spam,
        "reconciled": record.reconciled,
        "tags": list(record.tags),
        "target_call": record.target_call,
        "has_recording": has_recording,
        "exports": {
            target: export_states.get(target, str(ExportState.NOT_CONFIGURED))
            for target in EXPORT_TARGETS
        },
    }
