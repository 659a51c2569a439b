"""What the calls list may be filtered by, as SQL conditions over `calls` (outer-joined to the
call's visit).

Rules:
- Every filter is applied by the database, so a match is found on any page and the total counts
  every match, not one page's.
- Text filters compare case-insensitively; `%` and `_` typed by the operator match themselves.
- `number` and `caller` match by digits anywhere in the number ("4951" finds +74951112233).
- `source` matches the visit's source, or for a static number its label's source part.
- `target`: the account's target-call rule (`accounts.target_call_talk_s`); accounts without the
  rule have no target calls, so `target=true` finds none of theirs and `target=false` all of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from calltracking.store import schema as t


@dataclass(frozen=True, slots=True)
class CallFilter:
    account_id: str | None  # None: the admin, every call
    site_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    kind: str | None = None
    status: str | None = None
    source: str | None = None
    medium: str | None = None
    campaign: str | None = None
    number: str | None = None
    caller: str | None = None
    tag: str | None = None
    text: str | None = None
    target: bool | None = None


def calls_with_visits() -> Any:
    return t.calls.outerjoin(t.visits, t.visits.c.id == t.calls.c.visit_id)


def conditions(flt: CallFilter, dialect: str) -> list[Any]:
    c, v = t.calls.c, t.visits.c
    out: list[Any] = []
    exact = {
        c.account_id: flt.account_id,
        c.site_id: flt.site_id,
        c.kind: flt.kind,
        c.status: flt.status,
    }
    out += [column == value for column, value in exact.items() if value is not None]
    if flt.since is not None:
        out.append(c.started_at >= flt.since)
    if flt.until is not None:
        out.append(c.started_at < flt.until)
    if flt.source:
        wanted = flt.source.strip().lower()
        out.append(
            sa.or_(
                sa.func.lower(v.source) == wanted,
                sa.func.lower(c.static_label) == wanted,
                sa.func.lower(c.static_label).like(_escape(wanted) + "/%", escape="\\"),
            )
        )
    if flt.medium:
        out.append(sa.func.lower(v.medium) == flt.medium.strip().lower())
    if flt.campaign:
        out.append(_contains(v.campaign, flt.campaign))
    if flt.number:
        out.append(c.did.like(_digits_pattern(flt.number), escape="\\"))
    if flt.caller:
        out.append(c.caller.like(_digits_pattern(flt.caller), escape="\\"))
    if flt.tag:
        tagged = sa.select(t.call_tags.c.call_id).where(
            t.call_tags.c.call_id == c.id,
            sa.func.lower(t.call_tags.c.tag) == " ".join(flt.tag.split()).lower(),
        )
        out.append(sa.exists(tagged))
    if flt.text:
        columns = (c.caller, c.did, c.note, c.answered_by, c.static_label, v.source, v.medium)
        out.append(sa.or_(*(_contains(col, flt.text) for col in (*columns, v.campaign))))
    if flt.target is not None:
        out.append(_target(dialect) if flt.target else sa.not_(_target(dialect)))
    return out


def talk_seconds(dialect: str) -> Any:
    c = t.calls.c
    if dialect == "sqlite":
        return (sa.func.julianday(c.ended_at) - sa.func.julianday(c.answered_at)) * 86400.0
    return sa.func.extract("epoch", c.ended_at - c.answered_at)


def _target(dialect: str) -> Any:
    c = t.calls.c
    rule = (
        sa.select(t.accounts.c.target_call_talk_s)
        .where(t.accounts.c.id == c.account_id)
        .scalar_subquery()
    )
    return sa.and_(
        c.status == "answered",
        c.spam.is_(False),
        c.answered_at.is_not(None),
        c.ended_at.is_not(None),
        rule.is_not(None),
        # a small margin: talk_s is whole seconds, the database's difference may be 59.9999
        talk_seconds(dialect) + 0.001 >= rule,
    )


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _contains(column: Any, text: str) -> Any:
    return sa.func.lower(column).like("%" + _escape(text.strip().lower()) + "%", escape="\\")


def _digits_pattern(raw: str) -> str:
    digits = re.sub(r"\D", "", raw)
    return "%" + (digits or _escape(raw.strip())) + "%"
