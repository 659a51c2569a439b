"""The live calls feed: `GET /api/v1/calls/stream`, server-sent events.

Rules:
- The web node subscribes once to the bus's `call.*` events (a broadcast queue per node, like the
  visitor hub's `lease.*`), and hands each event to every open stream on this node.
- A stream takes the calls list's filters; for each event it reloads the call from the database
  and sends it only if the caller's token may see it and the filters match (so the feed and the
  list agree by construction). A call is sent whole (`event: call`), as the list shows it.
- A slow reader loses events rather than holding memory: its queue is bounded, overflow is
  dropped and the client is told (`event: gap`) so it reloads the list.
- A comment line every KEEPALIVE_S keeps proxies from closing an idle stream; shutdown ends
  every stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator

from aiohttp import web

from calltracking.core.events import Event
from calltracking.store.queries.call_listing import matching_call
from web.api.calls import call_filter, with_recording_urls
from web.api.context import Ctx
from web.keys import SERVICES

log = logging.getLogger(__name__)
KEEPALIVE_S = 15.0
QUEUE_SIZE = 256
GAP = "gap"


class CallFeed:
    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[Event | str | None]] = set()

    def __len__(self) -> int:
        return len(self._queues)

    def wants(self, event: Event) -> bool:
        """Events matter only while a stream is open (a stream opened later loads the list)."""
        return bool(self._queues)

    async def on_event(self, event: Event) -> None:
        for queue in list(self._queues):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                with contextlib.suppress(asyncio.QueueEmpty):
                    while queue.qsize() > QUEUE_SIZE // 2:
                        queue.get_nowait()
                queue.put_nowait(GAP)

    @contextlib.contextmanager
    def listening(self) -> Iterator[asyncio.Queue[Event | str | None]]:
        queue: asyncio.Queue[Event | str | None] = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)

    def close_all(self) -> None:
        for queue in list(self._queues):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)


CALL_FEED = web.AppKey("call_feed", CallFeed)


def setup_call_feed(app: web.Application) -> None:
    app[CALL_FEED] = CallFeed()
    app.cleanup_ctx.append(_subscribed)

    async def end_streams(app: web.Application) -> None:
        app[CALL_FEED].close_all()

    app.on_shutdown.append(end_streams)


async def _subscribed(app: web.Application) -> AsyncIterator[None]:
    subscription = await app[SERVICES].bus.subscribe(
        None, ["call.#"], app[CALL_FEED].on_event, durable=False, wants=app[CALL_FEED].wants
    )
    yield
    await subscription.close()


async def call_stream(ctx: Ctx) -> web.StreamResponse:
    flt = call_filter(ctx)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx: pass events through at once
        }
    )
    feed = ctx.request.app[CALL_FEED]
    with feed.listening() as queue, contextlib.suppress(ConnectionError):
        await response.prepare(ctx.request)
        await response.write(b"retry: 3000\nevent: ready\ndata: {}\n\n")
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if item is None:
                break
            if item == GAP:
                await response.write(b"event: gap\ndata: {}\n\n")
                continue
            assert isinstance(item, Event)
            call_id = item.data.get("id")
            if not isinstance(call_id, str):
                continue
            async with ctx.services.db.read() as conn:
                call = await matching_call(conn, flt, call_id)
            if call is None:
                continue
            data = json.dumps(with_recording_urls(ctx, [call])[0], separators=(",", ":"))
            await response.write(f"event: call\nid: {item.id}\ndata: {data}\n\n".encode())
    return response
