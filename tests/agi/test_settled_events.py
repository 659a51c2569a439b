"""`calltracking serve` on the in-process bus relays only the `call.started` events a consumer
would take: once the webhook dispatcher knows a site has no webhook for them, and no live
feed is open, a call's event is written published with it and the relay never reads it; as
soon as a consumer that takes them subscribes, they are relayed to it again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from calltracking.core.events import Event
from calltracking.core.kinds import AttributionKind
from calltracking.serve import ALL_PARTS, running
from calltracking.store import schema as t
from calltracking.store.db import Database
from tests.store.seed import seed_site
from tests.support.agi_channel import dial
from tests.support.outbox import until_outbox_published
from tests.web.harness import fast, web_config


async def _call(agi_port: int, did: str) -> str:
    """Dial `did` through the FastAGI; the new call's Linkedid."""
    channel = await dial(agi_port, did)
    assert channel.variables.get("CALLTRACKING_KIND") == "initial", channel.variables
    return channel.uniqueid


async def _call_id(db: Database, linkedid: str) -> str:
    async with db.read() as conn:
        call_id = await conn.scalar(sa.select(t.calls.c.id).where(t.calls.c.linkedid == linkedid))
    assert isinstance(call_id, str)
    return call_id


async def test_call_events_no_consumer_takes_are_never_relayed_and_the_rest_are(
    tmp_path: Path,
) -> None:
    config = web_config(tmp_path, agi_host="127.0.0.1", agi_port=0)
    async with running(config, ALL_PARTS, tweak=fast) as state:
        services, agi_port = state.services, state.agi_port
        assert agi_port is not None
        site = await seed_site(services.db)
        did = site.defaults[AttributionKind.INITIAL]
        relayed: list[Event] = []
        publish = services.bus.publish

        async def recording(event: Event) -> None:
            relayed.append(event)
            await publish(event)

        services.bus.publish = recording  # type: ignore[method-assign]

        def relayed_calls() -> set[str]:
            return {e.data["id"] for e in relayed if e.key == "call.started"}

        first = await _call_id(services.db, await _call(agi_port, did))
        await until_outbox_published(services.db)
        # The dispatcher had not read the site: the first call's event went through the relay.
        assert first in relayed_calls()
        # It reads the site when it handles that event, which may come after the relay marked
        # it published: until then a call's event is still one a consumer would take.
        unwanted = services.unwanted_event
        assert unwanted is not None
        probe = Event(
            key="call.started", id="probe", occurred_at=datetime.now(UTC), data={"site_id": site.id}
        )
        async with asyncio.timeout(10):
            while True:
                if unwanted(probe):
                    break
                await asyncio.sleep(0.01)

        second = await _call_id(services.db, await _call(agi_port, did))
        await until_outbox_published(services.db)
        assert second not in relayed_calls()  # written published: nobody would take it

        feed: asyncio.Queue[Event] = asyncio.Queue()

        async def take(event: Event) -> None:
            await feed.put(event)

        await services.bus.subscribe(None, ["call.#"], take, durable=False)
        third = await _call_id(services.db, await _call(agi_port, did))
        async with asyncio.timeout(10):
            while (event := await feed.get()).data["id"] != third:
                pass
        assert event.key == "call.started"
        assert third in relayed_calls()
