"""A batch of engine effects written in one transaction, a statement per kind of row (not per
effect), with their outbox events. A visitor is answered only after the commit that holds the
batch, so nobody is ever told a number the database does not have.

Ordering inside the flush keeps the foreign keys and the one-active-lease-per-number index
satisfied: visitors, visits and tabs first; leases that end before leases that start; a lease
that starts and ends inside one batch is inserted already ended.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.engine import SiteEngine
from calltracking.core.engine import events as ev
from calltracking.core.events import Event, EventKey
from calltracking.core.kinds import DisplayKind
from calltracking.store import schema as t
from calltracking.store.bulk_insert import Also, insert_rows, insert_rows_on, insert_tables
from calltracking.store.driver_write import (
    KeyedUpdate,
    delete_keys_on,
    execute_many_on,
    update_rows_on,
)
from calltracking.store.ids import time_ordered_id
from calltracking.store.sql_lists import one_of

_b = sa.bindparam
# The statements a batch runs per kind of row, built once: driver_write.py caches its plan per
# statement object. On PostgreSQL a batch of many rows runs each KeyedUpdate as one statement.
_END_LEASES = KeyedUpdate(
    t.leases, "id", "b_id", (("ended_at", "ended_at"), ("end_reason", "end_reason"))
)
_RELEASE_NUMBERS = KeyedUpdate(
    t.numbers,
    "e164",
    "b_e164",
    (("last_released_at", "at"), ("last_visitor_id", "visitor"), ("cooling_site_id", "b_site")),
)
_CLOSE_DISPLAYS = KeyedUpdate(
    t.displays, "visitor_id", "b_visitor", (("ended_at", "at"),), only_null="ended_at"
)
_TAB_VISIBLE = KeyedUpdate(t.tabs, "id", "b_id", (("visible", "visible"),))
_VISITOR_STATE = KeyedUpdate(
    t.visitors,
    "id",
    "b_id",
    tuple(
        (column, column)
        for column in (
            "last_seen_at",
            "last_activity_at",
            "revoked_at",
            "waiting_since",
            "wants_number",
            "bot",
        )
    ),
)
_VISIT_SEEN = KeyedUpdate(t.visits, "id", "b_id", (("last_seen_at", "last_seen_at"),))


def _cut(value: str | None, size: int) -> str | None:
    return value[:size] if value else value


class BatchWrites:
    def __init__(self, site_id: str, node_id: str) -> None:
        self.site_id = site_id
        self.node_id = node_id
        self.visitors_new: dict[str, dict[str, Any]] = {}
        self.visits_new: dict[str, dict[str, Any]] = {}
        self.visit_ids: dict[str, dict[str, Any]] = {}  # visit -> analytics ids seen again
        self.tabs_new: dict[str, dict[str, Any]] = {}
        self.tabs_gone: set[str] = set()
        self.tabs_visible: dict[str, bool] = {}
        self.tabs_seen: set[str] = set()
        self.leases_new: dict[str, dict[str, Any]] = {}
        self.leases_ended: list[dict[str, Any]] = []
        self.released: list[dict[str, Any]] = []
        self.grown: list[str] = []
        self.got_number: set[str] = set()
        self.display_changes: dict[str, list[tuple[DisplayKind | None, str, datetime]]] = {}
        self.pool_events: list[dict[str, Any]] = []
        self.outbox: list[Event] = []
        self.touched: set[str] = set()
        self.looked_up: set[str] = set()  # visitor ids already sought in the store this batch
        self.named: set[str] = set()  # visitors an op of this batch acted on (ensure_visitor)

    def __bool__(self) -> bool:
        return bool(self.touched or self.tabs_gone or self.tabs_visible or self.tabs_seen)

    def changes(self) -> tuple[frozenset[str], frozenset[str]]:
        """The numbers and visitors this batch may have changed, for another node to catch up
        on (recent_changes.py): more is harmless, less would leave its engine unlike the store."""
        numbers = {row["number"] for row in self.leases_new.values()}
        numbers |= {row["b_e164"] for row in self.released}
        numbers |= set(self.grown)
        visitors = self.touched | self.named | self.visitors_new.keys()
        visitors |= {row["visitor_id"] for row in self.leases_new.values()}
        visitors |= {row["visitor"] for row in self.released}
        visitors |= {tab["visitor_id"] for tab in self.tabs_new.values()}
        return frozenset(numbers), frozenset(visitors)

    # -- collecting ---------------------------------------------------------------------------

    def add(self, effects: list[ev.Effect], engine: SiteEngine) -> None:
        for effect in effects:
            self._add(effect, engine)

    def _add(self, effect: ev.Effect, engine: SiteEngine) -> None:
        if isinstance(effect, ev.VisitorCreated):
            self.visitors_new[effect.visitor_id] = {
                "id": effect.visitor_id,
                "site_id": self.site_id,
                "created_at": effect.at,
                "last_seen_at": effect.at,
                "last_activity_at": effect.at,
                "bot": effect.bot,
                "wants_number": False,
                "revoked_at": None,
                "waiting_since": None,
            }
        elif isinstance(effect, ev.VisitStarted):
            src = effect.source
            self.visits_new[effect.visit_id] = {
                "id": effect.visit_id,
                "visitor_id": effect.visitor_id,
                "site_id": self.site_id,
                "started_at": effect.at,
                "last_seen_at": effect.at,
                "source": src.source[:100],
                "medium": src.medium[:100],
                "campaign": _cut(src.campaign, 200),
                "term": _cut(src.term, 200),
                "content": _cut(src.content, 200),
                "landing_url": _cut(effect.url, 2000),
                "referrer": _cut(effect.referrer, 2000),
                "tracked": effect.tracked,
                "got_number": False,
                "ga_client_id": None,
                "ga_session_id": None,
                "ym_client_id": None,
            }
        elif isinstance(effect, ev.Show):
            self.show(effect.visitor_id, effect.kind, effect.e164, effect.at)
        elif isinstance(effect, ev.LeaseStarted):
            self.leases_new[effect.lease_id] = {
                "id": effect.lease_id,
                "site_id": self.site_id,
                "number": effect.e164,
                "visitor_id": effect.visitor_id,
                "visit_id": effect.visit_id,
                "assigned_at": effect.at,
                "ended_at": None,
                "end_reason": None,
                "address": effect.address[:64],
            }
            if effect.visit_id:
                self.got_number.add(effect.visit_id)
            self._event(EventKey.LEASE_ASSIGNED, _lease_data(self.site_id, effect), effect.at)
        elif isinstance(effect, ev.LeaseEnded):
            new = self.leases_new.get(effect.lease_id)
            if new is not None:
                new.update(ended_at=effect.at, end_reason=str(effect.reason))
            else:
                self.leases_ended.append(
                    {
                        "b_id": effect.lease_id,
                        "ended_at": effect.at,
                        "end_reason": str(effect.reason),
                    }
                )
            self.released.append(
                {"b_e164": effect.e164, "at": effect.at, "visitor": effect.visitor_id}
            )
            self._event(EventKey.LEASE_RELEASED, _lease_data(self.site_id, effect), effect.at)
        elif isinstance(effect, ev.PoolGrown):
            self.grown.append(effect.e164)
        elif isinstance(effect, ev.PoolExhausted):
            self.pool_events.append(
                {
                    "site_id": self.site_id,
                    "kind": "exhausted",
                    "visitor_id": effect.visitor_id,
                    "at": effect.at,
                }
            )
            data = {
                "site_id": self.site_id,
                "visitor": effect.visitor_id,
                "address": effect.address,
                "top_address": effect.top_address,
                "top_address_leases": effect.top_address_leases,
            }
            self._event(EventKey.POOL_EXHAUSTED, data, effect.at)
        visitor_id = getattr(effect, "visitor_id", None)
        if visitor_id and visitor_id in engine.visitors:
            self.touched.add(visitor_id)

    def show(self, visitor_id: str, kind: DisplayKind | None, e164: str, at: datetime) -> None:
        """A display change; kind None closes the open display (the last tab closed)."""
        self.display_changes.setdefault(visitor_id, []).append((kind, e164, at))

    def _event(self, key: str, data: dict[str, Any], at: datetime) -> None:
        self.outbox.append(Event(key=key, id=time_ordered_id(), occurred_at=at, data=data))

    # -- writing ------------------------------------------------------------------------------

    async def flush(
        self,
        conn: AsyncConnection,
        engine: SiteEngine,
        also: Also | None = None,
        driver: Any = None,
    ) -> bool:
        """Write the batch; `also` rides with the new rows' statement where the database
        allows (bulk_insert.py): True when it did, else the caller runs it. `driver`: `conn`'s
        asyncpg connection, for the new rows' statement (kept_transactions.py)."""
        visitor_rows, visit_rows = self._visitor_state(engine)
        for visit_id in self.got_number & self.visits_new.keys():  # born with a number
            self.visits_new[visit_id]["got_number"] = True
        # New rows go in first, in one statement where the database allows (bulk_insert.py);
        # new leases with them unless a lease ended in this batch: the end must come first, as
        # a number holds one open lease at a time.
        leases_with_rows = not self.leases_ended
        folded = await insert_tables(
            conn,
            [
                (t.visitors, list(self.visitors_new.values())),
                (t.visits, list(self.visits_new.values())),
                (t.tabs, list(self.tabs_new.values())),
                (t.leases, list(self.leases_new.values()) if leases_with_rows else []),
                (t.pool_events, self.pool_events),
                (t.outbox, self._outbox_rows()),
            ],
            also,
            driver,
        )
        if self.grown:
            await self._grow(conn)
        write = _Writer(conn, driver)
        await write.many(_END_LEASES, self.leases_ended)
        await write.many(_RELEASE_NUMBERS, [{**r, "b_site": self.site_id} for r in self.released])
        if self.leases_new and not leases_with_rows:
            await write.insert(t.leases, list(self.leases_new.values()))
        got_number_later = self.got_number - self.visits_new.keys()
        if got_number_later:
            await conn.execute(
                t.visits.update()
                .where(one_of(conn, t.visits.c.id, got_number_later))
                .values(got_number=True)
            )
        await self._displays(write, engine)
        await self._tabs(write)
        await self._visitors(write, visitor_rows, visit_rows)
        return folded

    def _outbox_rows(self) -> list[dict[str, Any]]:
        return [
            {"event_id": e.id, "key": e.key, "payload": e.to_json(), "occurred_at": e.occurred_at}
            for e in self.outbox
        ]

    async def _grow(self, conn: AsyncConnection) -> None:
        result = await conn.execute(
            t.numbers.update()
            .where(one_of(conn, t.numbers.c.e164, self.grown), t.numbers.c.site_id.is_(None))
            .values(
                site_id=self.site_id,
                role="pool",
                cooling_site_id=None,
                cooling_until=None,
                last_released_at=None,
                last_visitor_id=None,
            )
        )
        if result.rowcount != len(self.grown):
            raise StaleState("a reserve number was taken by another site meanwhile")

    async def _displays(self, write: _Writer, engine: SiteEngine) -> None:
        if not self.display_changes:
            return
        closes = [  # a visitor created in this batch has no display open yet
            {"b_visitor": visitor_id, "at": changes[0][2]}
            for visitor_id, changes in self.display_changes.items()
            if visitor_id not in self.visitors_new
        ]
        await write.many(_CLOSE_DISPLAYS, closes)
        rows = []
        for visitor_id, changes in self.display_changes.items():
            visitor = engine.visitors.get(visitor_id)
            for i, (kind, e164, at) in enumerate(changes):
                if kind is None or kind is DisplayKind.DYNAMIC:
                    continue
                ended = changes[i + 1][2] if i + 1 < len(changes) else None
                rows.append(
                    {
                        "site_id": self.site_id,
                        "visitor_id": visitor_id,
                        "kind": str(kind),
                        "e164": e164,
                        "started_at": at,
                        "ended_at": ended,
                        "anchor_at": _anchor(kind, visitor, at),
                    }
                )
        await write.insert(t.displays, rows)

    async def _tabs(self, write: _Writer) -> None:
        if self.tabs_gone:  # one statement for all
            conn = write.conn
            if write.driver is None:
                await conn.execute(t.tabs.delete().where(one_of(conn, t.tabs.c.id, self.tabs_gone)))
            else:
                await delete_keys_on(
                    write.driver, conn.dialect, t.tabs, "id", sorted(self.tabs_gone)
                )
        visible = [
            {"b_id": tab, "visible": value}
            for tab, value in self.tabs_visible.items()
            if tab not in self.tabs_gone and tab not in self.tabs_new
        ]
        await write.many(_TAB_VISIBLE, visible)

    def _visitor_state(
        self, engine: SiteEngine
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Rows for the touched visitors' columns and their current visits' last sight; a
        visitor created in this batch has its state written by its insert instead."""
        rows, visits = [], []
        for visitor_id in sorted(self.touched):
            v = engine.visitors.get(visitor_id)
            if v is None or v.last_seen_at is None:
                continue
            state = {
                "last_seen_at": v.last_seen_at,
                "last_activity_at": v.last_activity_at or v.last_seen_at,
                "revoked_at": v.revoked_at,
                "waiting_since": v.waiting_since,
                "wants_number": v.wants,
                "bot": v.bot,
            }
            new_visitor = self.visitors_new.get(visitor_id)
            if new_visitor is not None:
                new_visitor.update(state)
            else:
                rows.append({"b_id": visitor_id, **state})
            new_visit = self.visits_new.get(v.visit_id or "")
            if new_visit is not None:
                new_visit["last_seen_at"] = v.last_seen_at
            elif v.visit_id:
                visits.append({"b_id": v.visit_id, "last_seen_at": v.last_seen_at})
        return rows, visits

    async def _visitors(
        self, write: _Writer, rows: list[dict[str, Any]], visits: list[dict[str, Any]]
    ) -> None:
        await write.many(_VISITOR_STATE, rows)
        await write.many(_VISIT_SEEN, visits)
        seen_again = [
            {"b_id": visit_id, **{f"b_{k}": ids.get(k) for k in ANALYTICS_IDS}}
            for visit_id, ids in self.visit_ids.items()
            if visit_id not in self.visits_new and ids
        ]
        # One statement for all; an id not sent again keeps the stored one.
        await write.many(_VISIT_IDS_SEEN, seen_again)


ANALYTICS_IDS = ("ga_client_id", "ga_session_id", "ym_client_id")
_VISIT_IDS_SEEN = (
    t.visits.update()
    .where(t.visits.c.id == _b("b_id"))
    .values({t.visits.c[k]: sa.func.coalesce(_b(f"b_{k}"), t.visits.c[k]) for k in ANALYTICS_IDS})
)


class _Writer:
    """A batch's statements: through SQLAlchemy, or on PostgreSQL's kept connections straight
    through asyncpg (`driver`: driver_write.py, bulk_insert.py), in the same transaction."""

    def __init__(self, conn: AsyncConnection, driver: Any) -> None:
        self.conn = conn
        self.driver = driver

    async def many(self, statement: Any, rows: list[dict[str, Any]]) -> None:
        """`statement` (a KeyedUpdate or a statement) once per row, in order."""
        if not rows:
            return
        if isinstance(statement, KeyedUpdate):
            if self.driver is not None:
                await update_rows_on(self.driver, self.conn.dialect, statement, rows)
                return
            statement = statement.per_row
        if self.driver is None:
            await self.conn.execute(statement, rows)
        else:
            await execute_many_on(self.driver, self.conn.dialect, statement, rows)

    async def insert(self, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if self.driver is None:
            await insert_rows(self.conn, table, rows)
        else:
            await insert_rows_on(self.driver, self.conn.dialect, table, rows)


class StaleState(Exception):
    """The database moved under the engine: reload and run the batch again."""


def _anchor(kind: DisplayKind, visitor: Any, at: datetime) -> datetime:
    if visitor is not None:
        if kind is DisplayKind.INITIAL and visitor.visit_started_at is not None:
            return visitor.visit_started_at  # type: ignore[no-any-return]
        if kind is DisplayKind.EXPIRED and visitor.revoked_at is not None:
            return visitor.revoked_at  # type: ignore[no-any-return]
    return at


def _lease_data(site_id: str, effect: ev.LeaseStarted | ev.LeaseEnded) -> dict[str, Any]:
    ended = isinstance(effect, ev.LeaseEnded)
    return {
        "id": effect.lease_id,
        "site_id": site_id,
        "number": effect.e164,
        "visitor": effect.visitor_id,
        "started_at": (
            effect.assigned_at if isinstance(effect, ev.LeaseEnded) else effect.at
        ).isoformat(),
        "ended_at": effect.at.isoformat() if ended else None,
        "reason": str(effect.reason) if isinstance(effect, ev.LeaseEnded) else None,
    }
