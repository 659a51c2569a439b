"""The visitor lifecycle over the database: hello, tabs, activity, the number each visitor is
shown, and the sweeper that applies due times. Timers live in the database as due times
(a visit's start + `show_delay_s`, the last activity + `idle_timeout_s`), so a restarted server
resumes them.

What a visitor is shown (decided by `_decide`, in this order):
    crawler, or traffic outside `channels`     -> untracked
    an active lease                            -> dynamic (their number, in every tab)
    their number still in its hold             -> dynamic again at once (no new delay)
    revoked for idleness, no activity since    -> expired
    before `show_delay_s` since the visit start -> initial
    `lease_on: visible` and no `want` yet       -> initial
    otherwise allocate                         -> dynamic, or untracked when the pool is exhausted
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core import visits as visit_rules
from calltracking.core.analytics_ids import ga_client_id, ga_session_id, ym_client_id
from calltracking.core.bots import is_crawler
from calltracking.core.channels import is_tracked
from calltracking.core.kinds import AttributionKind, DisplayKind, LeaseEndReason
from calltracking.core.leases import show_at
from calltracking.core.numbers import format_display
from calltracking.core.traffic import TrafficSource, classify
from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.leasing import (
    active_lease_of,
    allocate,
    end_lease,
    record_exhaustion,
)
from calltracking.store.outbox import new_id
from calltracking.store.sites import Site, get_site, site_from_row

TAB_STALE_S = 180.0  # a tab not confirmed by its node for this long has vanished


@dataclass(frozen=True, slots=True)
class Shown:
    kind: DisplayKind
    e164: str
    display: str

    def frame(self) -> dict[str, str]:
        return {
            "type": "number",
            "kind": str(self.kind),
            "e164": self.e164,
            "display": self.display,
        }


@dataclass(frozen=True, slots=True)
class Hello:
    url: str
    referrer: str
    visitor_id: str | None = None
    ga: str | None = None
    ga_session: str | None = None
    ga_cookies: Mapping[str, str] | None = None
    ym: str | None = None
    user_agent: str | None = None
    automated: bool = False  # the browser reported navigator.webdriver: a headless robot


@dataclass(frozen=True, slots=True)
class Welcome:
    visitor_id: str
    visit_id: str
    tab_id: str
    shown: Shown
    changed: frozenset[str] = field(default_factory=frozenset)  # other visitors to refresh


class VisitorService:
    def __init__(self, db: Database, node_id: str, country_code: str) -> None:
        self.db = db
        self.node_id = node_id
        self.country_code = country_code

    async def hello(self, site: Site, hello: Hello, now: datetime) -> Welcome:
        async with self.db.write() as conn:
            visitor_id = await self._visitor(conn, site, hello, now)
            visit_id = await self._visit(conn, site, visitor_id, hello, now)
            tab_id = new_id()
            await conn.execute(
                t.tabs.insert().values(
                    id=tab_id,
                    visitor_id=visitor_id,
                    node_id=self.node_id,
                    visible=True,
                    connected_at=now,
                    seen_at=now,
                )
            )
            shown, changed = await self._decide(conn, site, visitor_id, now)
        return Welcome(visitor_id, visit_id, tab_id, shown, frozenset(changed))

    async def _visitor(self, conn: AsyncConnection, site: Site, hello: Hello, now: datetime) -> str:
        bot = hello.automated or is_crawler(hello.user_agent)
        if hello.visitor_id:
            row = (
                await conn.execute(
                    sa.select(t.visitors.c.id).where(
                        t.visitors.c.id == hello.visitor_id, t.visitors.c.site_id == site.id
                    )
                )
            ).first()
            if row is not None:
                await conn.execute(
                    t.visitors.update()
                    .where(t.visitors.c.id == row.id)
                    .values(last_seen_at=now, last_activity_at=now, bot=bot)
                )
                return str(row.id)
        visitor_id = new_id()  # unknown or forged ids get a new visitor
        await conn.execute(
            t.visitors.insert().values(
                id=visitor_id,
                site_id=site.id,
                created_at=now,
                last_seen_at=now,
                last_activity_at=now,
                bot=bot,
                wants_number=False,
            )
        )
        return visitor_id

    async def _visit(
        self, conn: AsyncConnection, site: Site, visitor_id: str, hello: Hello, now: datetime
    ) -> str:
        incoming = classify(hello.url, hello.referrer, site.domains)
        current = (
            await conn.execute(
                sa.select(t.visits)
                .where(t.visits.c.visitor_id == visitor_id)
                .order_by(t.visits.c.started_at.desc())
                .limit(1)
            )
        ).first()
        open_tabs = await self._open_tabs(conn, visitor_id)
        ga4 = site.settings.analytics.ga4
        ids = {
            "ga_client_id": ga_client_id(hello.ga),
            "ga_session_id": (
                hello.ga_session
                if hello.ga_session and hello.ga_session.isdigit()
                else ga_session_id(hello.ga_cookies, ga4.measurement_id if ga4 else None)
            ),
            "ym_client_id": ym_client_id(hello.ym),
        }
        if current is not None:
            known = TrafficSource(current.source, current.medium, current.campaign)
            if not visit_rules.visit_is_over(current.last_seen_at, now, open_tabs) and not (
                visit_rules.starts_new_visit(known, incoming)
            ):
                updates = {k: v for k, v in ids.items() if v}
                await conn.execute(
                    t.visits.update()
                    .where(t.visits.c.id == current.id)
                    .values(last_seen_at=now, **updates)
                )
                return str(current.id)
        visit_id = new_id()
        await conn.execute(
            t.visits.insert().values(
                id=visit_id,
                visitor_id=visitor_id,
                site_id=site.id,
                started_at=now,
                last_seen_at=now,
                source=incoming.source[:100],
                medium=incoming.medium[:100],
                campaign=_cut(incoming.campaign, 200),
                term=_cut(incoming.term, 200),
                content=_cut(incoming.content, 200),
                landing_url=_cut(hello.url, 2000),
                referrer=_cut(hello.referrer, 2000),
                tracked=is_tracked(site.settings.channels, incoming),
                got_number=False,
                **ids,
            )
        )
        # A new visit restarts the display delay and forgets an old revocation.
        await conn.execute(
            t.visitors.update().where(t.visitors.c.id == visitor_id).values(revoked_at=None)
        )
        return visit_id

    async def _open_tabs(self, conn: AsyncConnection, visitor_id: str) -> int:
        return int(
            await conn.scalar(
                sa.select(sa.func.count())
                .select_from(t.tabs)
                .where(t.tabs.c.visitor_id == visitor_id)
            )
            or 0
        )

    async def _decide(
        self, conn: AsyncConnection, site: Site, visitor_id: str, now: datetime
    ) -> tuple[Shown, set[str]]:
        visitor = (
            await conn.execute(sa.select(t.visitors).where(t.visitors.c.id == visitor_id))
        ).one()
        visit = (
            await conn.execute(
                sa.select(t.visits)
                .where(t.visits.c.visitor_id == visitor_id)
                .order_by(t.visits.c.started_at.desc())
                .limit(1)
            )
        ).first()
        changed: set[str] = set()
        settings = site.settings
        if visitor.bot or visit is None or not visit.tracked:
            return await self._show(
                conn, site, visitor_id, DisplayKind.UNTRACKED, now, now
            ), changed
        lease = await active_lease_of(conn, visitor_id)
        if lease is None and visitor.revoked_at is not None:
            return await self._show(
                conn, site, visitor_id, DisplayKind.EXPIRED, now, visitor.revoked_at
            ), changed
        if lease is None and await self._in_hold(conn, site, visitor_id, now):
            lease, preempted = await allocate(conn, site, visitor_id, visit.id, now)
            changed.update(preempted)
        if lease is not None:
            if visitor.waiting_since is not None or visitor.revoked_at is not None:
                await conn.execute(
                    t.visitors.update()
                    .where(t.visitors.c.id == visitor_id)
                    .values(waiting_since=None, revoked_at=None)
                )
            return await self._show_lease(conn, site, visitor_id, lease.number, now), changed
        if now < show_at(visit.started_at, settings) or (
            settings.lease_on == "visible" and not visitor.wants_number
        ):
            return await self._show(
                conn, site, visitor_id, DisplayKind.INITIAL, now, visit.started_at
            ), changed
        lease, preempted = await allocate(conn, site, visitor_id, visit.id, now)
        changed.update(preempted)
        if lease is None:
            if visitor.waiting_since is None:
                await conn.execute(
                    t.visitors.update()
                    .where(t.visitors.c.id == visitor_id)
                    .values(waiting_since=now)
                )
                await record_exhaustion(conn, site, visitor_id, now)
            return await self._show(
                conn, site, visitor_id, DisplayKind.UNTRACKED, now, now
            ), changed
        if visitor.waiting_since is not None:
            await conn.execute(
                t.visitors.update().where(t.visitors.c.id == visitor_id).values(waiting_since=None)
            )
        return await self._show_lease(conn, site, visitor_id, lease.number, now), changed

    async def _in_hold(
        self, conn: AsyncConnection, site: Site, visitor_id: str, now: datetime
    ) -> bool:
        since = now - timedelta(seconds=site.settings.hold_s)
        row = (
            await conn.execute(
                sa.select(t.numbers.c.e164)
                .where(
                    t.numbers.c.site_id == site.id,
                    t.numbers.c.role == "pool",
                    t.numbers.c.last_visitor_id == visitor_id,
                    t.numbers.c.last_released_at >= since,
                )
                .limit(1)
            )
        ).first()
        return row is not None

    async def _show_lease(
        self, conn: AsyncConnection, site: Site, visitor_id: str, e164: str, now: datetime
    ) -> Shown:
        await self._close_display(conn, visitor_id, now)
        return Shown(
            DisplayKind.DYNAMIC,
            e164,
            format_display(e164, site.settings.display_format, self.country_code),
        )

    async def _show(
        self,
        conn: AsyncConnection,
        site: Site,
        visitor_id: str,
        kind: DisplayKind,
        now: datetime,
        anchor: datetime,
    ) -> Shown:
        e164 = site.defaults[AttributionKind(str(kind))]
        current = (
            await conn.execute(
                sa.select(t.displays.c.id, t.displays.c.kind).where(
                    t.displays.c.visitor_id == visitor_id, t.displays.c.ended_at.is_(None)
                )
            )
        ).first()
        if current is None or current.kind != str(kind):
            await self._close_display(conn, visitor_id, now)
            await conn.execute(
                t.displays.insert().values(
                    site_id=site.id,
                    visitor_id=visitor_id,
                    kind=str(kind),
                    e164=e164,
                    started_at=now,
                    anchor_at=anchor,
                )
            )
        return Shown(
            kind, e164, format_display(e164, site.settings.display_format, self.country_code)
        )

    async def _close_display(self, conn: AsyncConnection, visitor_id: str, now: datetime) -> None:
        await conn.execute(
            t.displays.update()
            .where(t.displays.c.visitor_id == visitor_id, t.displays.c.ended_at.is_(None))
            .values(ended_at=now)
        )

    # -- what tabs report -------------------------------------------------------------------

    async def activity(
        self, site: Site, visitor_id: str, tab_id: str, now: datetime
    ) -> tuple[Shown, set[str]]:
        """Activity in a visible tab: keeps the lease alive, and after a revocation asks for a
        number again."""
        async with self.db.write() as conn:
            visible = await conn.scalar(sa.select(t.tabs.c.visible).where(t.tabs.c.id == tab_id))
            values: dict[str, object] = {"last_seen_at": now}
            if visible:
                values.update(last_activity_at=now, revoked_at=None)
            await conn.execute(
                t.visitors.update().where(t.visitors.c.id == visitor_id).values(**values)
            )
            await conn.execute(t.tabs.update().where(t.tabs.c.id == tab_id).values(seen_at=now))
            return await self._decide(conn, site, visitor_id, now)

    async def visibility(self, tab_id: str, visible: bool, now: datetime) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                t.tabs.update().where(t.tabs.c.id == tab_id).values(visible=visible, seen_at=now)
            )

    async def want(self, site: Site, visitor_id: str, now: datetime) -> tuple[Shown, set[str]]:
        async with self.db.write() as conn:
            await conn.execute(
                t.visitors.update().where(t.visitors.c.id == visitor_id).values(wants_number=True)
            )
            return await self._decide(conn, site, visitor_id, now)

    async def tab_closed(self, site: Site, visitor_id: str, tab_id: str, now: datetime) -> set[str]:
        """A tab closed: when it was the visitor's last, the lease ends and the hold starts.
        Returns visitors whose display changed (waiters who got the freed number)."""
        async with self.db.write() as conn:
            await conn.execute(t.tabs.delete().where(t.tabs.c.id == tab_id))
            if await self._open_tabs(conn, visitor_id):
                return set()
            await self._close_display(conn, visitor_id, now)
            lease = await active_lease_of(conn, visitor_id)
            if lease is None:
                return set()
            await end_lease(conn, lease.id, LeaseEndReason.CLOSED, now)
            return await self._serve_waiters(conn, site, now)

    async def current(self, visitor_id: str, now: datetime) -> Shown | None:
        """Recompute what the visitor is shown (after a change made elsewhere)."""
        async with self.db.write() as conn:
            site_id = await conn.scalar(
                sa.select(t.visitors.c.site_id).where(t.visitors.c.id == visitor_id)
            )
            site = await get_site(conn, site_id) if site_id else None
            if site is None or site.deleted_at is not None:
                return None
            shown, _ = await self._decide(conn, site, visitor_id, now)
            return shown

    async def touch_tabs(self, tab_ids: list[str], now: datetime) -> None:
        if not tab_ids:
            return
        async with self.db.write() as conn:
            await conn.execute(t.tabs.update().where(t.tabs.c.id.in_(tab_ids)).values(seen_at=now))

    async def _serve_waiters(self, conn: AsyncConnection, site: Site, now: datetime) -> set[str]:
        """Visitors waiting on `untracked` because the pool was exhausted get freed numbers,
        longest-waiting first."""
        changed: set[str] = set()
        waiting = (
            (
                await conn.execute(
                    sa.select(t.visitors.c.id)
                    .where(
                        t.visitors.c.site_id == site.id,
                        t.visitors.c.waiting_since.is_not(None),
                        sa.exists().where(t.tabs.c.visitor_id == t.visitors.c.id),
                    )
                    .order_by(t.visitors.c.waiting_since)
                )
            )
            .scalars()
            .all()
        )
        for visitor_id in waiting:
            shown, more = await self._decide(conn, site, visitor_id, now)
            changed.update(more)
            if shown.kind is not DisplayKind.DYNAMIC:
                break
            changed.add(visitor_id)
        return changed

    # -- the sweeper -------------------------------------------------------------------------

    async def sweep(self, now: datetime) -> set[str]:
        """Apply every due time once; returns the visitors whose display may have changed.

        Each step asks the database only for what is due (per site, since delays and timeouts
        are site settings), so a sweep over many idle-free visitors stays cheap.
        """
        changed: set[str] = set()
        async with self.db.write() as conn:
            await conn.execute(
                t.tabs.delete().where(t.tabs.c.seen_at < now - timedelta(seconds=TAB_STALE_S))
            )
            sites = await self._live_sites(conn)
            freed: set[str] = set()
            orphaned = await conn.execute(
                sa.select(t.leases.c.id, t.leases.c.site_id).where(
                    t.leases.c.ended_at.is_(None),
                    ~sa.exists().where(t.tabs.c.visitor_id == t.leases.c.visitor_id),
                )
            )
            for lease_id, site_id in orphaned.all():
                await end_lease(conn, lease_id, LeaseEndReason.CLOSED, now)
                freed.add(site_id)
            for site in sites.values():
                idle_since = now - timedelta(seconds=site.settings.idle_timeout_s)
                due = await conn.execute(
                    sa.select(t.leases.c.id, t.leases.c.visitor_id)
                    .join(t.visitors, t.visitors.c.id == t.leases.c.visitor_id)
                    .where(
                        t.leases.c.site_id == site.id,
                        t.leases.c.ended_at.is_(None),
                        t.visitors.c.last_activity_at <= idle_since,
                    )
                )
                for lease_id, visitor_id in due.all():
                    await end_lease(conn, lease_id, LeaseEndReason.REVOKED, now)
                    await conn.execute(
                        t.visitors.update()
                        .where(t.visitors.c.id == visitor_id)
                        .values(revoked_at=now)
                    )
                    changed.add(visitor_id)
                    freed.add(site.id)
                changed.update(await self._show_due(conn, site, now))
            for site_id in freed & sites.keys():
                changed.update(await self._serve_waiters(conn, sites[site_id], now))
        return changed

    async def _live_sites(self, conn: AsyncConnection) -> dict[str, Site]:
        rows = await conn.execute(sa.select(t.sites).where(t.sites.c.deleted_at.is_(None)))
        return {row.id: site_from_row(row) for row in rows}

    async def _show_due(self, conn: AsyncConnection, site: Site, now: datetime) -> set[str]:
        """Visitors on `initial` whose display delay is over (and who asked, with
        `lease_on: visible`) get their number."""
        query = sa.select(t.displays.c.visitor_id).where(
            t.displays.c.site_id == site.id,
            t.displays.c.ended_at.is_(None),
            t.displays.c.kind == str(DisplayKind.INITIAL),
            t.displays.c.anchor_at <= now - timedelta(seconds=site.settings.show_delay_s),
            sa.exists().where(t.tabs.c.visitor_id == t.displays.c.visitor_id),
        )
        if site.settings.lease_on == "visible":
            query = query.where(
                sa.exists().where(
                    t.visitors.c.id == t.displays.c.visitor_id,
                    t.visitors.c.wants_number.is_(True),
                )
            )
        changed: set[str] = set()
        for visitor_id in (await conn.execute(query)).scalars().all():
            shown, more = await self._decide(conn, site, visitor_id, now)
            changed.update(more)
            if shown.kind is not DisplayKind.INITIAL:
                changed.add(visitor_id)
        return changed


def _cut(value: str | None, size: int) -> str | None:
    return value[:size] if value else value
