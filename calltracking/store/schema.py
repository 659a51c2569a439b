"""The tables. Times are stored as UTC and always read back as aware UTC datetimes.

Invariants held by the database itself:
- at most one active lease per number (partial unique index `uq_leases_active_number`);
- one call per (pbx_id, linkedid) (unique constraint), so the AGI and the AMI listener converge;
- an outbox event id is unique, so a re-run of the same change cannot publish twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UtcDateTime(sa.TypeDecorator[datetime]):
    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = sa.String(40)
E164 = sa.String(16)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("max_numbers", sa.Integer, nullable=False),
    sa.Column("retention_days", sa.Integer, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # "Target call" rule: answered and talked at least this long; NULL: the rule is off.
    sa.Column("target_call_talk_s", sa.Integer),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("account_id", ID, sa.ForeignKey("accounts.id", ondelete="CASCADE")),
    sa.Column("admin", sa.Boolean, nullable=False, default=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # The token's first characters, shown to operators so they can name it to revoke it (NULL for
    # tokens made before revision 0002a: those are revoked by giving the whole token).
    sa.Column("prefix", sa.String(16), index=True),
    sa.Column("revoked_at", UtcDateTime),  # a revoked token authenticates no one
)

# A dashboard sign-in (web/api/session.py): the hash of the cookie's secret and of the token it
# was opened with (checked again at every use, so a revoked token ends its sessions).
dashboard_sessions = sa.Table(
    "dashboard_sessions",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("token_hash", sa.String(64), nullable=False, index=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
)

sites = sa.Table(
    "sites",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("account_id", ID, sa.ForeignKey("accounts.id"), nullable=False, index=True),
    sa.Column("key", sa.String(40), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("domains", sa.JSON, nullable=False),
    sa.Column("default_initial", E164, nullable=False),
    sa.Column("default_expired", E164, nullable=False),
    sa.Column("default_untracked", E164, nullable=False),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("deleted_at", UtcDateTime),
    # Bumped by every change to the site's pool or leases: a node deciding for the site from
    # memory reloads when it is not the version it wrote last (store/deciders.py).
    sa.Column("state_version", sa.Integer, nullable=False, server_default="0"),
    # The numbers and visitors the last few versions changed (recent_changes.py): a node a few
    # versions behind reloads those instead of the whole site.
    sa.Column("recent_changes", sa.Text),
    # Parts of the pool decided by different nodes (`calltracking split-site`; 1: one decider).
    sa.Column("decision_parts", sa.Integer, nullable=False, server_default="1"),
)

# The version and recent changes of each part of a split site (sites.decision_parts > 1): the
# part's batches bump their own row, so parts on different nodes never wait for each other.
site_parts = sa.Table(
    "site_parts",
    metadata,
    sa.Column("site_id", ID, sa.ForeignKey("sites.id"), primary_key=True),
    sa.Column("part", sa.Integer, primary_key=True),
    sa.Column("state_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("recent_changes", sa.Text),
)

# A number is in one place: the reserve (site_id NULL, role 'reserve'), one site's pool
# (role 'pool' or 'static'), or one site's defaults (role 'default'). `owner_account_id` is set
# on a number an account brought itself (a default or static number new to the system): it is
# that account's alone and is deleted when its site drops it, never entering the reserve.
numbers = sa.Table(
    "numbers",
    metadata,
    sa.Column("e164", E164, primary_key=True),
    sa.Column("site_id", ID, sa.ForeignKey("sites.id"), index=True),
    sa.Column("role", sa.String(10), nullable=False),
    sa.Column("static_label", sa.String(100)),
    sa.Column("cooling_site_id", ID),
    sa.Column("cooling_until", UtcDateTime),
    sa.Column("last_released_at", UtcDateTime),
    sa.Column("last_visitor_id", ID),  # holder of the last ended lease (hold, LRU)
    sa.Column("added_at", UtcDateTime, nullable=False),
    sa.Column("owner_account_id", ID),
    # The reserve (site_id NULL) in number order: growth reads its first rows and stops.
    sa.Index("ix_numbers_site_id_e164", "site_id", "e164"),
)

visitors = sa.Table(
    "visitors",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("site_id", ID, sa.ForeignKey("sites.id"), nullable=False, index=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("last_seen_at", UtcDateTime, nullable=False),
    sa.Column("last_activity_at", UtcDateTime, nullable=False),
    sa.Column("wants_number", sa.Boolean, nullable=False, default=False),
    sa.Column("waiting_since", UtcDateTime),  # pool exhausted: first in line gets the next free
    sa.Column("revoked_at", UtcDateTime),  # showing `expired` since
    sa.Column("bot", sa.Boolean, nullable=False, default=False),
)

visits = sa.Table(
    "visits",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("visitor_id", ID, sa.ForeignKey("visitors.id"), nullable=False, index=True),
    sa.Column("site_id", ID, sa.ForeignKey("sites.id"), nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("last_seen_at", UtcDateTime, nullable=False),
    sa.Column("source", sa.String(100), nullable=False),
    sa.Column("medium", sa.String(100), nullable=False),
    sa.Column("campaign", sa.String(200)),
    sa.Column("term", sa.String(200)),
    sa.Column("content", sa.String(200)),
    sa.Column("landing_url", sa.String(2000)),
    sa.Column("referrer", sa.String(2000)),
    sa.Column("ga_client_id", sa.String(64)),
    sa.Column("ga_session_id", sa.String(32)),
    sa.Column("ym_client_id", sa.String(32)),
    sa.Column("tracked", sa.Boolean, nullable=False),
    sa.Column("got_number", sa.Boolean, nullable=False, default=False),
    sa.Index("ix_visits_site_started", "site_id", "started_at"),
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("site_id", ID, sa.ForeignKey("sites.id"), nullable=False),
    sa.Column("number", E164, sa.ForeignKey("numbers.e164"), nullable=False),
    sa.Column("visitor_id", ID, sa.ForeignKey("visitors.id"), nullable=False),
    sa.Column("visit_id", ID, sa.ForeignKey("visits.id")),
    sa.Column("assigned_at", UtcDateTime, nullable=False),
    sa.Column("ended_at", UtcDateTime),
    sa.Column("end_reason", sa.String(20)),
    sa.Column("address", sa.String(64)),  # the client address group (per-address lease cap)
    sa.Index("ix_leases_number_assigned", "number", "assigned_at"),
    sa.Index("ix_leases_visitor", "visitor_id"),
    sa.Index("ix_leases_site_assigned", "site_id", "assigned_at"),
    sa.Index(
        "uq_leases_active_number",
        "number",
        unique=True,
        sqlite_where=sa.text("ended_at IS NULL"),
        postgresql_where=sa.text("ended_at IS NULL"),
    ),
)

# Open websocket tabs, per node: the sweeper ends leases whose tabs vanished without closing.
tabs = sa.Table(
    "tabs",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("visitor_id", ID, sa.ForeignKey("visitors.id"), nullable=False, index=True),
    sa.Column("node_id", sa.String(64), nullable=False),
    sa.Column("visible", sa.Boolean, nullable=False, default=True),
    sa.Column("connected_at", UtcDateTime, nullable=False),
    sa.Column("seen_at", UtcDateTime, nullable=False),
)

displays = sa.Table(
    "displays",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("site_id", ID, nullable=False),
    sa.Column("visitor_id", ID, nullable=False),
    sa.Column("kind", sa.String(12), nullable=False),
    sa.Column("e164", E164, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("ended_at", UtcDateTime),
    sa.Column("anchor_at", UtcDateTime, nullable=False),
    sa.Index("ix_displays_site_started", "site_id", "started_at"),
    sa.Index("ix_displays_visitor_open", "visitor_id", "ended_at"),
)

pool_events = sa.Table(
    "pool_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("site_id", ID, nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("visitor_id", ID),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Index("ix_pool_events_site_at", "site_id", "at"),
)

calls = sa.Table(
    "calls",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("pbx_id", sa.String(64), nullable=False),
    sa.Column("linkedid", sa.String(64), nullable=False),
    sa.Column("account_id", ID),
    sa.Column("site_id", ID, index=True),
    sa.Column("did", E164, nullable=False),
    sa.Column("caller", E164),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("answered_at", UtcDateTime),
    sa.Column("ended_at", UtcDateTime),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("hangup_cause", sa.Integer),
    sa.Column("answered_by", sa.String(120)),
    sa.Column("kind", sa.String(14), nullable=False),
    sa.Column("confidence", sa.Float, nullable=False),
    sa.Column("lease_id", ID),
    sa.Column("visitor_id", ID),
    sa.Column("visit_id", ID),
    sa.Column("static_label", sa.String(100)),
    sa.Column("first_time_caller", sa.Boolean, nullable=False),
    sa.Column("lead", sa.Boolean, nullable=False),
    sa.Column("spam", sa.Boolean, nullable=False, default=False),
    sa.Column("note", sa.String(2000)),
    sa.Column("reconciled", sa.Boolean, nullable=False, default=False),
    sa.Column("recording_path", sa.String(1000)),
    sa.Column("recording_size", sa.Integer),
    sa.Column("route", sa.String(80)),
    sa.Column("record", sa.Boolean, nullable=False, default=True),
    sa.UniqueConstraint("pbx_id", "linkedid", name="uq_calls_pbx_linkedid"),
    sa.Index("ix_calls_account_started", "account_id", "started_at"),
    sa.Index("ix_calls_caller", "account_id", "caller"),
)
# The stored leads alone, by caller and time (one a month per caller at most): a call start
# checks its caller's leads of the month without walking a frequent caller's whole history.
# The condition is written as the readers write it (`lead IS true AND spam IS false`), so both
# SQLite and PostgreSQL see that the index covers their query.
CALL_LEADS = sa.and_(calls.c.lead.is_(True), calls.c.spam.is_(False))
sa.Index(
    "ix_calls_caller_leads",
    calls.c.account_id,
    calls.c.caller,
    calls.c.started_at,
    sqlite_where=CALL_LEADS,
    postgresql_where=CALL_LEADS,
)

exports = sa.Table(
    "exports",
    metadata,
    sa.Column("call_id", ID, sa.ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("target", sa.String(12), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", UtcDateTime),
    sa.Column("last_error", sa.String(500)),
    sa.Column("detail", sa.String(200)),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Index("ix_exports_due", "state", "next_attempt_at"),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("site_id", ID, nullable=False),
    sa.Column("call_id", ID, index=True),
    sa.Column("event_id", ID, nullable=False),
    sa.Column("event_key", sa.String(32), nullable=False),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", UtcDateTime),
    sa.Column("last_error", sa.String(500)),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("event_id", "url", name="uq_webhook_deliveries_event_url"),
    # The retries' claims and next due time, and /metrics, look up pending ones only.
    sa.Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", ID, nullable=False, unique=True),
    sa.Column("key", sa.String(32), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    sa.Column("published_at", UtcDateTime),
    sa.Index("ix_outbox_pending", "published_at", "seq"),
)

# Idempotent consumers remember what they have handled.
processed_events = sa.Table(
    "processed_events",
    metadata,
    sa.Column("consumer", sa.String(40), primary_key=True),
    sa.Column("event_id", ID, primary_key=True),
    sa.Column("at", UtcDateTime, nullable=False),
)

# Call qualification: the tags an account defines, and the tags set on its calls.
account_tags = sa.Table(
    "account_tags",
    metadata,
    sa.Column("account_id", ID, sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

call_tags = sa.Table(
    "call_tags",
    metadata,
    sa.Column("call_id", ID, sa.ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("tag", sa.String(40), primary_key=True),
    sa.Index("ix_call_tags_tag", "tag"),
)
