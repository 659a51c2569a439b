"""A batch of call starts' reads on PostgreSQL in one statement (one round trip, not nine).

Why: on PostgreSQL each statement of a batch is a round trip that waits for a turn of a busy
event loop; instrumented under `bench.agi_bench` (32 concurrent), a batch made ~15 of them and
spent 90% of its ~20 ms waiting on them, and its dialogues waited with it.

Rules (the same reads as call_start_facts.py, the same values):
- One statement reads what `read_numbers` and `read_callers` read, and which of the batch's keys
  are stored: each number, its NEWEST leases assigned at or before the batch's latest call, their
  sites, the leased visitors' NEWEST visits and the leases' own visits, the sites' accounts, which
  (account, caller) pairs have any stored call and the leads of the months around the batch
  (through the partial index `ix_calls_caller_leads`). Each later set is chosen in SQL from the
  earlier ones exactly as the separate statements chose it from their results in Python.
- The callers and months are those of every start of the batch, a superset of the new calls'
  (stored keys are answered from their rows): each call still counts only its own (account,
  caller) pair and its own month's leads, so the flags are the same.
- Each table's rows come back as one array of anonymous records, their fields in the schema's
  column order, each converted by SQLAlchemy's result processor for its column as
  `Connection.execute` would (driver_select.py runs the statement); rows are named tuples.
  Sites are the exception: only what a Site is built from (`sites.SITE_COLUMNS`: not the state
  version and recent changes every lease bumps), their JSON columns as text, so that a site
  unchanged since an earlier batch is taken from `site_from_text_row`'s cache instead of being
  parsed and validated again (as call_start_facts.py does on SQLite).
- READ COMMITTED: the statement sees one snapshot, as each of the separate statements did.
- Every set is an index probe per key (`= ANY(ARRAY(...))`, `LATERAL ... LIMIT`), never a scan:
  the batches' connection runs it on a generic plan made once (call_starts_pg.py), which must
  not depend on the tables' statistics (a fresh tracker's calls table grows faster than they
  are gathered, and `EXISTS` was planned as a scan of every call of the account). The batch's
  stored keys too: as a plain join they were planned as a hash join over a scan of every call
  (statistics of a small table), 28 ms a batch once 200,000 calls were stored. What probes
  alone cannot prevent: a plan made while only a few dozen rows were analyzed scans them, so
  that connection rules sequential scans out; a plan made on empty tables is then all probes.
"""

from __future__ import annotations

import functools
from collections import Counter, namedtuple
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Dialect

from calltracking.core.records import CallKey
from calltracking.store import schema as t
from calltracking.store.call_start_facts import MONTH_AROUND, NEWEST, CallStart, Facts
from calltracking.store.driver_select import fetch_rows, select_rows
from calltracking.store.sites import SITE_COLUMNS, SITE_JSON_COLUMNS, site_from_text_row


def _row(alias: str, table: sa.Table) -> str:
    return "ROW(" + ", ".join(f"{alias}.{c.name}" for c in table.c) + ")"


def _site_row() -> str:
    """A site's record: what a Site is built from, its JSON columns as their text."""
    fields = (f"s.{c}::text" if c in SITE_JSON_COLUMNS else f"s.{c}" for c in SITE_COLUMNS)
    return "ROW(" + ", ".join(fields) + ")"


def _sql(dialect: Dialect) -> str:
    leads = str(t.CALL_LEADS.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    return f"""
WITH n AS (SELECT * FROM numbers WHERE numbers.e164 = ANY(CAST(:dids AS VARCHAR[]))),
l AS (SELECT x.* FROM unnest(CAST(:dids AS VARCHAR[])) AS k(key) CROSS JOIN LATERAL
  (SELECT * FROM leases WHERE leases.number = k.key AND leases.assigned_at <= :latest
   ORDER BY leases.assigned_at DESC LIMIT {NEWEST}) AS x),
s AS (SELECT * FROM sites
  WHERE sites.id = ANY(ARRAY(SELECT n.site_id FROM n UNION SELECT l.site_id FROM l))),
v AS (SELECT x.* FROM (SELECT DISTINCT l.visitor_id FROM l) AS k CROSS JOIN LATERAL
  (SELECT * FROM visits WHERE visits.visitor_id = k.visitor_id AND visits.started_at <= :latest
   ORDER BY visits.started_at DESC LIMIT {NEWEST}) AS x),
vb AS (SELECT * FROM visits WHERE visits.id = ANY(ARRAY(SELECT l.visit_id FROM l))),
ids AS (SELECT DISTINCT s.account_id FROM s),
a AS (SELECT * FROM accounts WHERE accounts.id = ANY(ARRAY(SELECT ids.account_id FROM ids))),
cb AS (SELECT ids.account_id, c.caller
  FROM ids CROSS JOIN unnest(CAST(:callers AS VARCHAR[])) AS c(caller) CROSS JOIN LATERAL
  (SELECT 1 FROM calls WHERE calls.account_id = ids.account_id AND calls.caller = c.caller
   LIMIT 1) AS e),
ld AS (SELECT calls.account_id, calls.caller, calls.started_at FROM calls
  WHERE calls.account_id = ANY(ARRAY(SELECT ids.account_id FROM ids))
  AND calls.caller = ANY(CAST(:callers AS VARCHAR[])) AND {leads}
  AND calls.started_at >= :since AND calls.started_at < :until),
st AS (SELECT x.pbx_id, x.linkedid
  FROM unnest(CAST(:pbx_ids AS VARCHAR[]), CAST(:linkedids AS VARCHAR[])) AS k(pbx_id, linkedid)
  CROSS JOIN LATERAL (SELECT calls.pbx_id, calls.linkedid FROM calls
   WHERE calls.pbx_id = k.pbx_id AND calls.linkedid = k.linkedid LIMIT 1) AS x)
SELECT
  ARRAY(SELECT {_row("n", t.numbers)} FROM n) AS numbers,
  ARRAY(SELECT {_row("l", t.leases)} FROM l ORDER BY l.number, l.assigned_at DESC) AS leases,
  ARRAY(SELECT {_site_row()} FROM s) AS sites,
  ARRAY(SELECT {_row("v", t.visits)} FROM v ORDER BY v.visitor_id, v.started_at DESC) AS visits,
  ARRAY(SELECT {_row("vb", t.visits)} FROM vb) AS visits_by_id,
  ARRAY(SELECT {_row("a", t.accounts)} FROM a) AS accounts,
  ARRAY(SELECT ROW(cb.account_id, cb.caller) FROM cb) AS called_before,
  ARRAY(SELECT ROW(ld.account_id, ld.caller, ld.started_at) FROM ld) AS leads,
  ARRAY(SELECT ROW(st.pbx_id, st.linkedid) FROM st) AS stored
"""


# The statement's columns, in its SELECT's order; `_TABLES` those of whole table rows.
_COLUMNS = (
    "numbers",
    "leases",
    "sites",
    "visits",
    "visits_by_id",
    "accounts",
    "called_before",
    "leads",
    "stored",
)
_TABLES = {
    "numbers": t.numbers,
    "leases": t.leases,
    "visits": t.visits,
    "visits_by_id": t.visits,
    "accounts": t.accounts,
}


@functools.lru_cache(maxsize=4)
def _statement(dialect: Dialect) -> Any:
    varchars = postgresql.ARRAY(sa.String)
    return (
        sa.text(_sql(dialect))
        .bindparams(
            sa.bindparam("dids", type_=varchars),
            sa.bindparam("callers", type_=varchars),
            sa.bindparam("pbx_ids", type_=varchars),
            sa.bindparam("linkedids", type_=varchars),
            sa.bindparam("latest", type_=t.UtcDateTime()),
            sa.bindparam("since", type_=t.UtcDateTime()),
            sa.bindparam("until", type_=t.UtcDateTime()),
        )
        .columns(*(sa.column(name, sa.types.NullType()) for name in _COLUMNS))
    )


Convert = Callable[[Any], Any]


@functools.lru_cache(maxsize=16)
def _converter(dialect: Dialect, table: sa.Table) -> Callable[[tuple[Any, ...]], Any]:
    """A record's fields (the table's columns, in order) as the named tuple `select(table)`
    gives through driver_select.py, each value through its column's result processor."""
    processors = [c.type._cached_result_processor(dialect, None) for c in table.c]
    return _records("Row", [c.key for c in table.c], processors)


@functools.lru_cache(maxsize=4)
def _site_converter(dialect: Dialect) -> Callable[[tuple[Any, ...]], Any]:
    """A site's record (`_site_row`) as the hashable named tuple `site_from_text_row` takes:
    its JSON columns left as text, the others through their columns' result processors."""
    processors = [
        None
        if name in SITE_JSON_COLUMNS
        else t.sites.c[name].type._cached_result_processor(dialect, None)
        for name in SITE_COLUMNS
    ]
    return _records("SiteRow", SITE_COLUMNS, processors)


def _records(
    name: str, fields: Sequence[str], processors: Sequence[Convert | None]
) -> Callable[[tuple[Any, ...]], Any]:
    row = namedtuple(name, fields)  # type: ignore[misc]
    if not any(processors):
        return lambda record: row(*record)
    pairs = list(enumerate(processors))

    def convert(record: tuple[Any, ...]) -> Any:
        return row(*(record[i] if p is None else p(record[i]) for i, p in pairs))

    return convert


def read_all(conn: Connection, starts: Sequence[CallStart]) -> tuple[Facts, frozenset[CallKey]]:
    """The batch's facts (the numbers' and the callers') and which of its keys are stored."""
    (got,) = select_rows(conn, _statement(conn.dialect), read_params(starts))
    return facts_of(conn.dialect, got)


async def read_all_on(
    driver: Any, dialect: Dialect, starts: Sequence[CallStart]
) -> tuple[Facts, frozenset[CallKey]]:
    """`read_all` on an asyncpg connection of the dialect's (call_starts_pg.py)."""
    (got,) = await fetch_rows(driver, dialect, _statement(dialect), read_params(starts))
    return facts_of(dialect, got)


def read_params(starts: Sequence[CallStart]) -> dict[str, Any]:
    keys = sorted({(s.key.pbx_id, s.key.linkedid) for s in starts})
    return {
        "dids": sorted({s.did for s in starts}),
        "latest": max(s.at for s in starts),
        "callers": sorted({s.caller for s in starts if s.caller}),
        "since": min(s.at for s in starts) - MONTH_AROUND,
        "until": max(s.at for s in starts) + MONTH_AROUND,
        "pbx_ids": [pbx for pbx, _ in keys],
        "linkedids": [linkedid for _, linkedid in keys],
    }


def facts_of(dialect: Dialect, got: Any) -> tuple[Facts, frozenset[CallKey]]:
    """The statement's one row as the batch's facts and its stored keys."""
    rows = {
        name: list(map(_converter(dialect, _TABLES[name]), getattr(got, name))) for name in _TABLES
    }
    leases: dict[str, list[Any]] = {}
    for r in rows["leases"]:
        leases.setdefault(r.number, []).append(r)
    visits: dict[str, list[Any]] = {}
    for r in rows["visits"]:
        visits.setdefault(r.visitor_id, []).append(r)
    facts = Facts(
        numbers={r.e164: r for r in rows["numbers"]},
        leases=leases,
        sites={r.id: site_from_text_row(r) for r in map(_site_converter(dialect), got.sites)},
        visits=visits,
        visits_by_id={r.id: r for r in rows["visits_by_id"]},
        accounts={r.id: r for r in rows["accounts"]},
        earlier=Counter({(account, caller): 1 for account, caller in got.called_before}),
    )
    moment = _moment(dialect)
    for account, caller, at in got.leads:
        facts.leads.setdefault((account, caller), []).append(moment(at))
    return facts, frozenset(CallKey(pbx, linkedid) for pbx, linkedid in got.stored)


@functools.lru_cache(maxsize=4)
def _moment(dialect: Dialect) -> Convert:
    process = t.calls.c.started_at.type._cached_result_processor(dialect, None)
    return process if process is not None else (lambda value: value)
