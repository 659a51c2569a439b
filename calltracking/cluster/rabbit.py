"""Shard ownership and forwarding on RabbitMQ (aio-pika).

A shard's owner is the connection that holds the exclusive queue `calltracking.decide.<shard>`:
RabbitMQ lets one connection declare it, refuses the others (RESOURCE_LOCKED), and deletes it
when that connection closes, so a node that dies or loses the broker loses its shards at once
(or after the heartbeat, HEARTBEAT_S, when the network just goes quiet) and the next node that
needs one of them claims it. Nothing here is home-made consensus: the broker decides.

Rules:
- Claims are on demand: a node forwards a request for a site it does not own to its shard's
  queue with `mandatory` set; when no queue takes it (no owner), the node claims the shard and
  decides itself. Two nodes racing for a shard: the broker lets one win and the other forwards
  to it.
- Requests to one shard made in one turn of the event loop go as one message and come back as
  one (messages.py): with 100 hellos in flight, a handful of messages instead of 200.
- Requests are not persistent and not acknowledged (the queue dies with its owner anyway), and
  expire in the broker after `timeout_s`; a request with no reply within `timeout_s`, or a
  lost connection, raises `ForwardFailed` and the caller decides locally, which the site's
  lock keeps correct.
- The owner serves each batch in its own task and its requests side by side, so forwarded
  requests join its group commits with its own sockets' changes. A request that does not
  decode is answered with its own error, the rest of its batch as usual.
- The connection is not aio-pika's robust one: a reconnect must not silently re-declare
  exclusive queues (another node may own them by then). When it drops, this node owns
  nothing, fails its waiting requests, and reconnects every `reconnect_s`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)

from calltracking.cluster.messages import (
    ForwardFailed,
    ForwardRefused,
    Malformed,
    NoOwner,
    Request,
    Result,
    decode_batch,
    decode_replies,
    encode_batch,
    encode_batch_error,
    encode_replies,
    error_json,
    reply_json,
    result_from,
)
from calltracking.cluster.shards import shard_of

log = logging.getLogger(__name__)
QUEUE_PREFIX = "calltracking.decide."
HEARTBEAT_S = 10
# Connecting is not a forward: a node with a short forward timeout must still reach a busy
# broker (the TCP and AMQP handshakes took over 0.5 s on a loaded test machine).
CONNECT_TIMEOUT_S = 10.0
CLAIM_REFUSED_FOR_S = 2.0  # a shard another node holds is not asked for again this soon

Serve = Callable[[Request], Awaitable[Result]]


@dataclass
class _Batch:
    """Requests to one shard made in one turn of the loop, sent as one message."""

    requests: list[Request] = field(default_factory=list)
    answers: list[asyncio.Future[object]] = field(default_factory=list)

    def fail(self, exc: Exception) -> None:
        for answer in self.answers:
            if not answer.done():
                answer.set_exception(exc)


class RabbitOwners:
    """This node's shards and its way to the others'; `start()` before use, `close()` after.
    `serve` answers the requests other nodes forward here."""

    def __init__(
        self,
        url: str,
        node_id: str,
        serve: Serve,
        *,
        timeout_s: float = 5.0,
        reconnect_s: float = 2.0,
        prefix: str = QUEUE_PREFIX,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self._url = url
        self._connect_timeout_s = connect_timeout_s
        self._node_id = node_id
        self._serve = serve
        self._timeout_s = timeout_s
        self._reconnect_s = reconnect_s
        self._prefix = prefix  # tests sharing a vhost keep apart by it
        self._connection: AbstractConnection | None = None
        self._requests_out: AbstractChannel | None = None  # confirms; returns raise
        self._replies_out: AbstractChannel | None = None
        self._reply_queue: AbstractQueue | None = None
        self._owned: set[int] = set()
        self._channels: dict[int, AbstractChannel] = {}  # each owned shard's consumer's
        self._refused_at: dict[int, float] = {}
        self._claiming = asyncio.Lock()
        self._outgoing: dict[int, _Batch] = {}  # filling during this turn of the loop
        self._waiting: dict[str, _Batch] = {}  # sent, by correlation id
        self._sending: set[asyncio.Task[None]] = set()
        self._ids = itertools.count()
        self._reconnect: asyncio.Task[None] | None = None
        self._closed = False
        self.counts: Counter[str] = Counter()  # forwarded, served, claimed, lost, ...

    @property
    def connected(self) -> bool:
        return self._connection is not None

    def owns(self, site_id: str) -> bool:
        return shard_of(site_id) in self._owned

    async def start(self) -> None:
        """Connect; the first attempt fails fast (serve refuses to start without the broker)."""
        await self._connect()

    async def close(self) -> None:
        self._closed = True
        if self._reconnect is not None:
            self._reconnect.cancel()
        connection, self._connection = self._connection, None
        self._owned.clear()
        self._channels.clear()
        if connection is not None:
            await connection.close()  # the broker frees this node's shards at once

    async def claim(self, site_id: str, *, fresh: bool = False) -> bool:
        """Own the site's shard if nobody does; True when this node owns it now. A shard
        another node held less than CLAIM_REFUSED_FOR_S ago is not asked for again unless
        `fresh` (a forward just found it without an owner)."""
        shard = shard_of(site_id)
        async with self._claiming:
            if shard in self._owned:
                return True
            connection = self._connection
            if connection is None:
                return False
            refused_at = self._refused_at.get(shard, float("-inf"))
            if not fresh and time.monotonic() - refused_at < CLAIM_REFUSED_FOR_S:
                return False
            try:
                channel = await connection.channel()
                queue = await channel.declare_queue(
                    self._queue(shard), exclusive=True, auto_delete=True
                )
            except aiormq.exceptions.ChannelLockedResource:
                # The broker closed this channel with its refusal.
                self._refused_at[shard] = time.monotonic()
                return False
            except Exception as exc:  # the broker went away meanwhile: `_lost` follows
                log.info("node %s could not claim shard %d: %r", self._node_id, shard, exc)
                return False
            # Owned from here on: changes of this shard that arrive while the consumer starts
            # are decided here, not sent to this node's own queue.
            self._owned.add(shard)
            self._refused_at.pop(shard, None)
            try:
                # aio-pika runs the callback as a task per message: requests do not wait for
                # each other, and forwarded changes join the owner's group commits.
                await queue.consume(self._answer, no_ack=True)
            except BaseException:
                self._owned.discard(shard)
                raise
            if self._connection is not connection:  # lost while claiming
                self._owned.discard(shard)
                return False
            self._channels[shard] = channel
            self.counts["claimed"] += 1
            log.info("node %s now decides for shard %d", self._node_id, shard)
            return True

    async def release(self, key: str) -> None:
        """Give up the key's shard (a split site's spare part, for a node that has none): its
        queue goes with its consumer (auto-delete), and the next node to need the shard claims
        it. Requests already queued there are lost; their senders decide after their timeout,
        which the locks keep correct."""
        shard = shard_of(key)
        async with self._claiming:
            if shard not in self._owned:
                return
            self._owned.discard(shard)
            channel = self._channels.pop(shard, None)
            if channel is not None:
                try:
                    await channel.close()
                except Exception as exc:  # the connection went meanwhile: `_lost` follows
                    log.info("node %s could not release shard %d: %r", self._node_id, shard, exc)
            self.counts["released"] += 1
            log.info("node %s gave up shard %d for another node", self._node_id, shard)

    async def forward(self, request: Request) -> Result:
        """The owner's answer to `request`. Raises NoOwner when no node holds the shard,
        ForwardFailed when no answer came, ForwardRefused when the owner failed it."""
        if self._requests_out is None:
            raise ForwardFailed("not connected to the broker")
        shard = shard_of(request.site_id)
        batch = self._outgoing.get(shard)
        if batch is None:
            # Sent once this turn of the loop is over: the requests made meanwhile join it.
            batch = self._outgoing[shard] = _Batch()
            asyncio.get_running_loop().call_soon(self._send_soon, shard)
        answer: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        batch.requests.append(request)
        batch.answers.append(answer)
        try:
            async with asyncio.timeout(self._timeout_s):
                value = await answer
        except TimeoutError as exc:
            self.counts["timed_out"] += 1
            raise ForwardFailed(f"no answer within {self._timeout_s:g} s") from exc
        self.counts["forwarded"] += 1
        try:
            return result_from(request, value)
        except Malformed as exc:
            raise ForwardFailed(f"the owner's answer is malformed: {exc}") from exc

    def _send_soon(self, shard: int) -> None:
        batch = self._outgoing.pop(shard)
        task = asyncio.ensure_future(self._send(shard, batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, shard: int, batch: _Batch) -> None:
        out, replies = self._requests_out, self._reply_queue
        if out is None or replies is None:
            batch.fail(ForwardFailed("not connected to the broker"))
            return
        correlation = f"{next(self._ids)}"
        self._waiting[correlation] = batch
        try:
            message = aio_pika.Message(
                encode_batch(batch.requests),
                correlation_id=correlation,
                reply_to=replies.name,
                expiration=self._timeout_s,
                content_type="application/json",
            )
            try:
                async with asyncio.timeout(self._timeout_s):
                    # With confirms on: aiormq reports a return (no queue took the batch)
                    # only for a confirmed publish.
                    await out.default_exchange.publish(
                        message, routing_key=self._queue(shard), mandatory=True
                    )
            except (aio_pika.exceptions.DeliveryError, aiormq.exceptions.PublishError):
                batch.fail(NoOwner(f"shard {shard}"))
                return
            except Exception as exc:
                batch.fail(ForwardFailed(f"cannot publish: {exc!r}"))
                return
            self.counts["batches"] += 1
            # Each caller waits at most its own timeout; the entry goes once all are done.
            await asyncio.wait(batch.answers, timeout=self._timeout_s)
        finally:
            self._waiting.pop(correlation, None)

    def _queue(self, shard: int) -> str:
        return f"{self._prefix}{shard}"

    # -- the connection -------------------------------------------------------------------------

    async def _connect(self) -> None:
        connection = await aio_pika.connect(
            self._url,
            timeout=self._connect_timeout_s,
            client_properties={"connection_name": f"calltracking-owner-{self._node_id}"},
            heartbeat=HEARTBEAT_S,
        )
        try:
            out = await connection.channel(publisher_confirms=True, on_return_raises=True)
            self._replies_out = await connection.channel(publisher_confirms=False)
            replies = await self._replies_out.declare_queue(
                f"calltracking.replies.{secrets.token_hex(8)}", exclusive=True, auto_delete=True
            )
            await replies.consume(self._on_reply, no_ack=True)
        except BaseException:
            await connection.close()
            raise
        self._requests_out, self._reply_queue = out, replies
        self._connection = connection
        connection.close_callbacks.add(self._lost)

    def _lost(self, connection: object, exc: BaseException | None = None) -> None:
        if connection is not self._connection:
            return
        self._connection = self._requests_out = self._replies_out = self._reply_queue = None
        if self._owned:
            log.warning(
                "node %s lost the broker (%s): it decides for none of its %d shards now",
                self._node_id,
                exc,
                len(self._owned),
            )
        self._owned.clear()
        self._channels.clear()
        self.counts["lost"] += 1
        for batch in self._waiting.values():
            batch.fail(ForwardFailed("the broker connection closed"))
        if not self._closed and (self._reconnect is None or self._reconnect.done()):
            self._reconnect = asyncio.ensure_future(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        while not self._closed and self._connection is None:
            await asyncio.sleep(self._reconnect_s)
            try:
                await self._connect()
            except Exception as exc:
                log.debug("node %s: broker still away (%r)", self._node_id, exc)
            else:
                log.info("node %s reconnected to the broker", self._node_id)

    # -- serving other nodes --------------------------------------------------------------------

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        batch = self._waiting.get(message.correlation_id or "")
        if batch is None:
            return  # every caller of that batch gave up already
        try:
            values = decode_replies(message.body, len(batch.requests))
        except (Malformed, ForwardRefused) as exc:
            batch.fail(ForwardFailed(f"the owner answered the batch with {exc!r}"))
            return
        for answer, value in zip(batch.answers, values, strict=True):
            if not answer.done():
                answer.set_result(value)

    async def _answer(self, message: AbstractIncomingMessage) -> None:
        try:
            items = decode_batch(message.body)
        except Malformed as exc:
            log.warning("node %s: a forwarded batch is malformed (%s)", self._node_id, exc)
            self.counts["malformed"] += 1
            body = encode_batch_error(f"malformed batch: {exc}")
        else:
            body = encode_replies(list(await asyncio.gather(*map(self._answer_one, items))))
        out = self._replies_out
        if out is None or not message.reply_to:
            return  # the asker times out and decides itself
        try:
            await out.default_exchange.publish(
                aio_pika.Message(body, correlation_id=message.correlation_id),
                routing_key=message.reply_to,
            )
        except Exception as exc:
            log.info("node %s: could not answer a forwarded batch (%r)", self._node_id, exc)

    async def _answer_one(self, item: Request | Malformed) -> dict[str, Any]:
        if isinstance(item, Malformed):
            log.warning("node %s: a forwarded request is malformed (%s)", self._node_id, item)
            self.counts["malformed"] += 1
            return error_json(f"malformed request: {item}")
        self.counts["served"] += 1
        try:
            return reply_json(item, await self._serve(item))
        except Exception as exc:
            log.info("node %s: a forwarded %s failed: %r", self._node_id, type(item).__name__, exc)
            return error_json(repr(exc))
