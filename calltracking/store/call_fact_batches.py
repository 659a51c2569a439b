"""Facts of many calls written in one transaction: the AMI listener's group commit.

Rules:
- `write_facts` applies facts in their order, as `SqlCallRecorder`'s one-fact methods would: a
  start creates the call once per (pbx_id, linkedid) with its attribution resolved then and
  frozen (a call the FastAGI stored first keeps its own); an answer or end of a closed call
  changes nothing; a recording is named once.
- Statements per batch, not per fact: one read of the stored calls, one of the new calls'
  numbers and their latest leases (`calls.prefetch`; a lease that began after a call's start
  is looked past with the one-call query), further attribution reads only for attributed
  calls, one insert of the new calls, one update of the changed stored calls, one insert of
  exports and one of outbox rows (executemany each).
- Each `call.*` outbox row carries the call as `calls.call_json` would read it at that point,
  built in memory from the row being written; it is written in the same transaction.
- Two new calls of one caller in a batch: the first is inserted before the second's caller
  flags (first-time caller, lead) are counted, as one-by-one writes would see it.
- The caller retries the whole batch on IntegrityError (the FastAGI stored a call meanwhile);
  nothing of a failed batch is kept (one transaction).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.callflow.facts import (
    CallAnswered,
    CallEnded,
    CallStarted,
    Fact,
    RecordingNamed,
)
from calltracking.core.events import Event, EventKey
from calltracking.core.kinds import AttributionKind, CallStatus, ExportState
from calltracking.core.qualification import is_target_call
from calltracking.core.records import CallKey, SessionInfo
from calltracking.store import schema as t
from calltracking.store.calls import (
    EXPORT_TARGETS,
    Prefetched,
    new_call_values,
    prefetch,
    record_from_row,
    record_json,
    session_from_row,
)
from calltracking.store.ids import time_ordered_id
from calltracking.store.sites import Site, get_site

# What a phase may change on a stored call (one executemany, same columns for every row).
_MUTABLE = (
    "answered_at",
    "answered_by",
    "ended_at",
    "status",
    "hangup_cause",
    "reconciled",
    "recording_path",
)
_UPDATE = (
    t.calls.update()
    .where(t.calls.c.id == sa.bindparam("b_id"))
    .values({name: sa.bindparam(f"b_{name}") for name in _MUTABLE})
)


@dataclass
class _Call:
    row: dict[str, Any]
    new: bool
    tags: tuple[str, ...] = ()
    exports: dict[str, str] = field(default_factory=dict)
    changed: bool = False


@dataclass
class _Batch:
    conn: AsyncConnection
    calls: dict[CallKey, _Call]
    inserts: list[dict[str, Any]] = field(default_factory=list)
    callers: set[str] = field(default_factory=set)  # of the pending inserts
    exports: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    sites: dict[str, Site | None] = field(default_factory=dict)
    sessions: dict[str, SessionInfo | None] = field(default_factory=dict)
    rules: dict[str, int | None] = field(default_factory=dict)
    known: Prefetched | None = None


async def write_facts(conn: AsyncConnection, facts: Sequence[Fact]) -> None:
    """Apply `facts` (in order) inside the caller's write transaction."""
    batch = _Batch(conn, await _stored(conn, {f.key for f in facts}))
    starts = [f for f in facts if isinstance(f, CallStarted) and f.key not in batch.calls]
    if starts:
        until = max(f.at for f in starts)
        batch.known = await prefetch(conn, {f.did for f in starts}, until)
    for fact in facts:
        if isinstance(fact, CallStarted):
            await _start(batch, fact)
        elif isinstance(fact, CallAnswered):
            await _answer(batch, fact)
        elif isinstance(fact, CallEnded):
            await _end(batch, fact)
        elif isinstance(fact, RecordingNamed):
            call = batch.calls.get(fact.key)
            if call is not None and call.row["recording_path"] is None:
                call.row["recording_path"] = fact.asterisk_path[:1000]
                call.changed = True
    await _flush_inserts(batch)
    updates = [
        {"b_id": c.row["id"], **{f"b_{n}": c.row[n] for n in _MUTABLE}}
        for c in batch.calls.values()
        if c.changed and not c.new
    ]
    if updates:
        await conn.execute(_UPDATE, updates)
    if batch.exports:
        await conn.execute(t.exports.insert(), batch.exports)
    if batch.outbox:
        await conn.execute(t.outbox.insert(), batch.outbox)


async def _stored(conn: AsyncConnection, keys: set[CallKey]) -> dict[CallKey, _Call]:
    out: dict[CallKey, _Call] = {}
    by_pbx: dict[str, list[str]] = {}
    for key in keys:
        by_pbx.setdefault(key.pbx_id, []).append(key.linkedid)
    for pbx_id, linkedids in by_pbx.items():
        rows = await conn.execute(
            sa.select(t.calls).where(t.calls.c.pbx_id == pbx_id, t.calls.c.linkedid.in_(linkedids))
        )
        for r in rows:
            out[CallKey(r.pbx_id, r.linkedid)] = _Call(dict(r._mapping), new=False)
    if out:
        ids = {c.row["id"]: c for c in out.values()}
        tags = await conn.execute(
            sa.select(t.call_tags.c.call_id, t.call_tags.c.tag)
            .where(t.call_tags.c.call_id.in_(list(ids)))
            .order_by(t.call_tags.c.tag)
        )
        for call_id, tag in tags:
            ids[call_id].tags += (tag,)
    return out


async def _flush_inserts(batch: _Batch) -> None:
    if batch.inserts:
        await batch.conn.execute(t.calls.insert(), batch.inserts)
        batch.inserts, batch.callers = [], set()
        for call in batch.calls.values():
            if call.new:  # every new call was pending: now it is stored as it stands
                call.new = call.changed = False


async def _start(batch: _Batch, fact: CallStarted) -> None:
    if fact.key in batch.calls:
        return
    if fact.caller is not None and fact.caller in batch.callers:
        await _flush_inserts(batch)  # its caller flags count the earlier call
    row = await new_call_values(batch.conn, fact.key, fact.did, fact.caller, fact.at, batch.known)
    call = _Call(row, new=True)
    batch.calls[fact.key] = call
    batch.inserts.append(row)  # the dict itself: later phases of this batch land in the insert
    if fact.caller is not None:
        batch.callers.add(fact.caller)
    await _emit(batch, call, EventKey.CALL_STARTED, fact.at)


async def _answer(batch: _Batch, fact: CallAnswered) -> None:
    call = batch.calls.get(fact.key)
    if call is None or call.row["answered_at"] is not None or call.row["ended_at"] is not None:
        return
    call.row["answered_at"] = fact.at
    call.row["answered_by"] = (fact.answered_by or None) and fact.answered_by[:120]
    call.changed = True
    await _emit(batch, call, EventKey.CALL_ANSWERED, fact.at)


async def _end(batch: _Batch, fact: CallEnded) -> None:
    call = batch.calls.get(fact.key)
    if call is None or call.row["ended_at"] is not None:
        return
    row = call.row
    row["ended_at"] = max(fact.at, row["started_at"])
    row["status"] = str(fact.status)
    row["hangup_cause"] = fact.hangup_cause
    row["reconciled"] = fact.reconciled
    if fact.status is CallStatus.ANSWERED and row["answered_at"] is None:
        row["answered_at"] = row["ended_at"]
    call.changed = True
    site = await _site(batch, row["site_id"])
    analytics = site.settings.analytics if site else None
    for target in EXPORT_TARGETS:
        if analytics is None or getattr(analytics, target) is None:
            state = ExportState.NOT_CONFIGURED
        elif not AttributionKind(row["kind"]).tracked or row["spam"]:
            state = ExportState.SKIPPED
        else:
            state = ExportState.PENDING
        call.exports[target] = str(state)
        batch.exports.append(
            {
                "call_id": row["id"],
                "target": target,
                "state": str(state),
                "attempts": 0,
                "next_attempt_at": fact.at if state is ExportState.PENDING else None,
                "updated_at": fact.at,
            }
        )
    await _emit(batch, call, EventKey.CALL_ENDED, fact.at)


async def _emit(batch: _Batch, call: _Call, key: EventKey, at: datetime) -> None:
    row = call.row
    record = record_from_row(SimpleNamespace(**row), await _session(batch, row["visit_id"]))
    rule = await _rule(batch, row["account_id"])
    target = is_target_call(
        record.talk_s, answered=row["status"] == "answered", spam=row["spam"], min_talk_s=rule
    )
    record = replace(record, tags=call.tags, target_call=target)
    data = record_json(record, call.exports, has_recording=row["recording_size"] is not None)
    event = Event(key=key, id=time_ordered_id(), occurred_at=at, data=data)
    batch.outbox.append(
        {"event_id": event.id, "key": str(key), "payload": event.to_json(), "occurred_at": at}
    )


async def _site(batch: _Batch, site_id: str | None) -> Site | None:
    if site_id is None:
        return None
    if site_id not in batch.sites:
        batch.sites[site_id] = await get_site(batch.conn, site_id)
    return batch.sites[site_id]


async def _session(batch: _Batch, visit_id: str | None) -> SessionInfo | None:
    if visit_id is None:
        return None
    if visit_id not in batch.sessions:
        v = (await batch.conn.execute(sa.select(t.visits).where(t.visits.c.id == visit_id))).first()
        batch.sessions[visit_id] = None if v is None else session_from_row(v)
    return batch.sessions[visit_id]


async def _rule(batch: _Batch, account_id: str | None) -> int | None:
    if account_id is None:
        return None
    if account_id not in batch.rules:
        batch.rules[account_id] = await batch.conn.scalar(
            sa.select(t.accounts.c.target_call_talk_s).where(t.accounts.c.id == account_id)
        )
    return batch.rules[account_id]
