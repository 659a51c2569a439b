"""What a batch of call starts reads: the numbers' facts, the keys already stored, the callers.

Rules (those of `SqlCallRecorder.start_call`, calls.py, for many calls at once):
- The numbers' facts of a batch are read once (`read_numbers`): each number, its NEWEST leases
  assigned at or before the batch's latest call with their sites, and the leased visitors'
  NEWEST visits; any connection, outside the write transaction, so the leases are those visible
  at once and the writer's lock stays short.
- The keys already stored and the callers' earlier calls are read inside the write transaction
  (`stored_calls`, `read_callers`), so a call reported meanwhile is found and the first-time and
  lead flags count every stored call: whether each (account, caller) has any stored call (an
  index probe each) and the leads of the months around the batch (a partial index holds only
  leads), never every earlier row: a frequent caller's history is long.
- Plain synchronous SQLAlchemy Core on a `Connection`: the same functions run on the event
  loop's thread against SQLite (sqlite_inline.py) or through `AsyncConnection.run_sync`. The
  statements are built once per dialect, each with one text whatever the batch (lists go as
  one array, or one JSON array text on SQLite), so a batch only binds values and neither
  asyncpg nor SQLite prepares a statement again for a new batch size.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from calltracking.core.records import CallKey
from calltracking.store import schema as t
from calltracking.store.driver_select import select_rows
from calltracking.store.sites import (
    SITE_COLUMNS,
    SITE_JSON_COLUMNS,
    Site,
    site_from_row,
    site_from_text_row,
)

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
class Facts:
    """What one batch read, shared by its calls."""

    numbers: dict[str, Any]
    leases: dict[str, list[Any]]
    sites: dict[str, Site]
    visits: dict[str, list[Any]]
    visits_by_id: dict[str, Any]
    accounts: dict[str, Any] = field(default_factory=dict)
    # 1 for a caller with any stored call to the account (then more as the batch's calls count)
    earlier: Counter[tuple[str, str]] = field(default_factory=Counter)
    leads: dict[tuple[str, str], list[datetime]] = field(default_factory=dict)


@dataclass
class NumbersSeen:
    """The numbers' facts of one batch as a read transaction saw them (read_numbers)."""

    facts: Facts
    # On PostgreSQL the same statement read the callers' facts and which of the batch's keys
    # are stored (call_start_read_pg.py); None: the write transaction reads them (SQLite).
    stored: frozenset[CallKey] | None = None


def _one_of(dialect: str, column: sa.Column[Any], name: str) -> sa.ColumnElement[bool]:
    """`column` is one of the list `:name`, in one statement text whatever the list's length:
    PostgreSQL takes an array (asyncpg then reuses its prepared statement), SQLite a JSON array
    text (its statement cache then holds the statement). `_execute` converts the lists."""
    if dialect == "postgresql":
        return column == sa.any_(sa.bindparam(name, type_=postgresql.ARRAY(column.type)))
    values: sa.Select[Any] = sa.select(sa.literal_column("value")).select_from(
        sa.func.json_each(sa.bindparam(name, type_=sa.String))
    )
    return column.in_(values)


def _per_dialect(build: Callable[[str], Any]) -> dict[str, Any]:
    return {dialect: build(dialect) for dialect in ("sqlite", "postgresql")}


def _execute(conn: Connection, statements: dict[str, Any], params: dict[str, Any]) -> list[Any]:
    """The dialect's statement's rows (through the driver: driver_select.py), its lists as
    that dialect takes them (see _one_of)."""
    if conn.dialect.name == "sqlite":
        params = {k: json.dumps(v) if isinstance(v, list) else v for k, v in params.items()}
    return select_rows(conn, statements[conn.dialect.name], params)


def _newest(table: sa.Table, part: sa.Column[Any], order: sa.Column[Any]) -> dict[str, Any]:
    """Per dialect: the NEWEST rows of each `part` in `:keys` with `order <= :latest`, newest
    first. Each key is an index probe that stops after NEWEST rows (a window over every row of
    the key walked a number's whole lease history); one text whatever the number of keys."""
    name, key, at = table.name, part.name, order.name
    sqlite = (
        f"SELECT {name}.* FROM json_each(:keys) AS k JOIN {name} ON {name}.rowid IN"
        f" (SELECT n.rowid FROM {name} AS n WHERE n.{key} = k.value AND n.{at} <= :latest"
        f" ORDER BY n.{at} DESC LIMIT {NEWEST})"
        f" ORDER BY {name}.{key}, {name}.{at} DESC"
    )
    postgresql = (
        f"SELECT n.* FROM unnest(CAST(:keys AS VARCHAR[])) AS k(key) CROSS JOIN LATERAL"
        f" (SELECT * FROM {name} WHERE {name}.{key} = k.key AND {name}.{at} <= :latest"
        f" ORDER BY {name}.{at} DESC LIMIT {NEWEST}) AS n"
        f" ORDER BY n.{key}, n.{at} DESC"
    )
    latest = sa.bindparam("latest", type_=order.type)
    return {
        dialect: sa.text(sql).bindparams(latest).columns(*table.c)
        for dialect, sql in (("sqlite", sqlite), ("postgresql", postgresql))
    }


_NUMBERS = _per_dialect(lambda d: sa.select(t.numbers).where(_one_of(d, t.numbers.c.e164, "dids")))
_LEASES = _newest(t.leases, t.leases.c.number, t.leases.c.assigned_at)


def _sites(dialect: str) -> sa.Select[Any]:
    # On SQLite its JSON columns come as their stored text (`site_from_text_row`).
    columns: list[Any] = [t.sites.c[name] for name in SITE_COLUMNS]
    if dialect == "sqlite":
        columns = [
            sa.type_coerce(c, sa.Text).label(c.name) if c.name in SITE_JSON_COLUMNS else c
            for c in columns
        ]
    return sa.select(*columns).where(_one_of(dialect, t.sites.c.id, "ids"))


_SITES = _per_dialect(_sites)


_VISITS = _newest(t.visits, t.visits.c.visitor_id, t.visits.c.started_at)
_VISITS_BY_ID = _per_dialect(lambda d: sa.select(t.visits).where(_one_of(d, t.visits.c.id, "ids")))
_ACCOUNTS = _per_dialect(lambda d: sa.select(t.accounts).where(_one_of(d, t.accounts.c.id, "ids")))
# Which (account, caller) pairs have any stored call: one index probe per pair, where a count
# walked every stored call of a frequent caller. One statement text per dialect whatever the
# numbers of accounts and callers (JSON arrays on SQLite, arrays on PostgreSQL).
_CALLED_BEFORE = {
    "sqlite": sa.text(
        "SELECT a.value AS account_id, c.value AS caller"
        " FROM json_each(:ids) AS a, json_each(:callers) AS c"
        " WHERE EXISTS (SELECT 1 FROM calls"
        " WHERE calls.account_id = a.value AND calls.caller = c.value)"
    ).columns(account_id=sa.String, caller=sa.String),
    "postgresql": sa.text(
        "SELECT a.account_id, c.caller"
        " FROM unnest(CAST(:ids AS VARCHAR[])) AS a(account_id),"
        " unnest(CAST(:callers AS VARCHAR[])) AS c(caller)"
        " WHERE EXISTS (SELECT 1 FROM calls"
        " WHERE calls.account_id = a.account_id AND calls.caller = c.caller)"
    ).columns(account_id=sa.String, caller=sa.String),
}
# Read through the partial index ix_calls_caller_leads (schema.CALL_LEADS: the same condition).
_LEADS = _per_dialect(
    lambda d: sa.select(t.calls.c.account_id, t.calls.c.caller, t.calls.c.started_at).where(
        _one_of(d, t.calls.c.account_id, "ids"),
        _one_of(d, t.calls.c.caller, "callers"),
        t.CALL_LEADS,
        t.calls.c.started_at >= sa.bindparam("since"),
        t.calls.c.started_at < sa.bindparam("until"),
    )
)
# Wider than any calendar month around a call in any time zone: the leads read for a batch
# include every one its calls' months count (rows.py keeps those of each call's own month).
MONTH_AROUND = timedelta(days=33)
_STORED = _per_dialect(
    lambda d: sa.select(t.calls).where(
        t.calls.c.pbx_id == sa.bindparam("pbx_id"), _one_of(d, t.calls.c.linkedid, "linkedids")
    )
)


def read_numbers(conn: Connection, starts: Sequence[CallStart]) -> NumbersSeen:
    """The facts that attribute `starts`: their numbers, the newest leases of each at the calls'
    times with those sites, and the leased visitors' visits."""
    dids = sorted({s.did for s in starts})
    latest = max(s.at for s in starts)
    numbers = {r.e164: r for r in _execute(conn, _NUMBERS, {"dids": dids})}
    leases: dict[str, list[Any]] = {}
    for r in _execute(conn, _LEASES, {"keys": dids, "latest": latest}):
        leases.setdefault(r.number, []).append(r)
    site_ids = {r.site_id for r in numbers.values() if r.site_id}
    site_ids |= {r.site_id for rows in leases.values() for r in rows}
    sites = {}
    if site_ids:
        rows = _execute(conn, _SITES, {"ids": sorted(site_ids)})
        site_of = site_from_text_row if conn.dialect.name == "sqlite" else site_from_row
        sites = {r.id: site_of(r) for r in rows}
    visitor_ids = sorted({r.visitor_id for rows in leases.values() for r in rows if r.visitor_id})
    visits: dict[str, list[Any]] = {}
    if visitor_ids:
        for r in _execute(conn, _VISITS, {"keys": visitor_ids, "latest": latest}):
            visits.setdefault(r.visitor_id, []).append(r)
    earliest = min(s.at for s in starts)
    by_id = visits_by_id(conn, lease_visits_needed(leases, visits, earliest))
    return NumbersSeen(Facts(numbers, leases, sites, visits, by_id))


def lease_visits_needed(
    leases: dict[str, list[Any]], visits: dict[str, list[Any]], earliest: datetime
) -> list[str]:
    """The leases' own visits a batch may fall back to (call_start_rows._visit): those of
    leases whose visitor has no visit read that started by the batch's `earliest` call. Any
    other call finds its visitor's newest visit by its time among those read, whatever lease
    it takes, so reading those visits could change no call."""
    return sorted(
        {
            r.visit_id
            for rows in leases.values()
            for r in rows
            if r.visit_id
            and not any(v.started_at <= earliest for v in visits.get(r.visitor_id or "", ()))
        }
    )


def visits_by_id(conn: Connection, ids: Collection[str]) -> dict[str, Any]:
    if not ids:
        return {}
    return {r.id: r for r in _execute(conn, _VISITS_BY_ID, {"ids": sorted(ids)})}


def stored_calls(conn: Connection, keys: Collection[CallKey]) -> dict[CallKey, Any]:
    """The stored rows of `keys`, by key."""
    found: dict[CallKey, Any] = {}
    by_pbx: dict[str, list[str]] = {}
    for key in keys:
        by_pbx.setdefault(key.pbx_id, []).append(key.linkedid)
    for pbx_id, linkedids in by_pbx.items():
        params = {"pbx_id": pbx_id, "linkedids": sorted(linkedids)}
        for row in _execute(conn, _STORED, params):
            found[CallKey(row.pbx_id, row.linkedid)] = row
    return found


def read_callers(conn: Connection, starts: Sequence[CallStart], facts: Facts) -> None:
    """The accounts and their callers' stored calls, inside the write transaction (counts)."""
    facts.accounts, facts.earlier, facts.leads = {}, Counter(), {}
    account_ids = sorted({s.account_id for s in facts.sites.values()})
    callers = sorted({s.caller for s in starts if s.caller})
    if not account_ids:
        return
    facts.accounts = {r.id: r for r in _execute(conn, _ACCOUNTS, {"ids": account_ids})}
    if not callers:
        return
    params = {"ids": account_ids, "callers": callers}
    for r in _execute(conn, _CALLED_BEFORE, params):
        facts.earlier[(r.account_id, r.caller)] = 1
    since = min(s.at for s in starts) - MONTH_AROUND
    until = max(s.at for s in starts) + MONTH_AROUND
    for r in _execute(conn, _LEADS, {**params, "since": since, "until": until}):
        facts.leads.setdefault((r.account_id, r.caller), []).append(r.started_at)
