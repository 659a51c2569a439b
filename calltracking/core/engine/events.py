"""What goes into a site engine (what tabs and the clock report) and what comes out (effects
that adapters carry out: write, publish, push to tabs). All plain data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from calltracking.core.kinds import DisplayKind, LeaseEndReason
from calltracking.core.traffic import TrafficSource

# -- inputs -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TabOpened:
    """A tab said hello. `visitor_id` is the id the browser claims (None or unknown: a new one)."""

    visitor_id: str | None
    tab_id: str
    address: str
    url: str = ""
    referrer: str = ""
    bot: bool = False


@dataclass(frozen=True, slots=True)
class TabClosed:
    visitor_id: str
    tab_id: str


@dataclass(frozen=True, slots=True)
class Activity:
    visitor_id: str
    tab_id: str


@dataclass(frozen=True, slots=True)
class Visibility:
    visitor_id: str
    tab_id: str
    visible: bool


@dataclass(frozen=True, slots=True)
class Want:
    """The snippet saw the phone on screen or the visitor interacted (`lease_on` visible or
    interaction)."""

    visitor_id: str


Input = TabOpened | TabClosed | Activity | Visibility | Want

# -- effects ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VisitorCreated:
    visitor_id: str
    address: str
    bot: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class VisitStarted:
    visit_id: str
    visitor_id: str
    source: TrafficSource
    url: str
    referrer: str
    tracked: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class Welcomed:
    """Answer to a hello: who the tab belongs to."""

    visitor_id: str
    visit_id: str
    tab_id: str


@dataclass(frozen=True, slots=True)
class Show:
    """What the visitor's tabs show changed (pushed to every tab; a display row starts)."""

    visitor_id: str
    kind: DisplayKind
    e164: str
    at: datetime


@dataclass(frozen=True, slots=True)
class LeaseStarted:
    lease_id: str
    e164: str
    visitor_id: str
    visit_id: str | None
    address: str
    at: datetime


@dataclass(frozen=True, slots=True)
class LeaseEnded:
    lease_id: str
    e164: str
    visitor_id: str
    reason: LeaseEndReason
    assigned_at: datetime
    at: datetime


@dataclass(frozen=True, slots=True)
class PoolGrown:
    """A reserve number joined the site's pool (the store claims it in the same commit)."""

    e164: str
    at: datetime


@dataclass(frozen=True, slots=True)
class PoolExhausted:
    """Nothing could be had for `visitor_id`; `top_address` holds the most of the site's
    leases, so an operator can see who drained the pool."""

    visitor_id: str
    address: str
    top_address: str | None
    top_address_leases: int
    at: datetime


@dataclass(frozen=True, slots=True)
class Refused:
    """A visitor refused a number by an abuse rule (`address_cap` or `hello_rate`)."""

    visitor_id: str | None
    address: str
    rule: str
    at: datetime


Effect = (
    VisitorCreated
    | VisitStarted
    | Welcomed
    | Show
    | LeaseStarted
    | LeaseEnded
    | PoolGrown
    | PoolExhausted
    | Refused
)
