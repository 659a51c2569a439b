"""The RabbitMQ bus (aio-pika), for deployments spread over several processes or machines.

Topology, declared by `start()` (durable, so it outlives broker restarts):
- exchange `calltracking` (topic): every event, routing key = the event key;
- exchange `calltracking.broadcast` (topic): the same events again, for this program's broadcast
  queues only, many to a message (bus/broadcast.py);
- exchange `calltracking.dlx` (fanout) bound to queue `calltracking.dead`: poison messages;
- named work queues: durable classic queues (`durable=False`: durable but auto-deleted with their
  last consumer, because RabbitMQ 4.3 refuses non-durable shared queues);
  broadcast queues: exclusive, auto-deleted, named `calltracking.node.<random>` by us, so the
  robust connection re-declares them under the same name after a reconnect; bound to
  `calltracking.broadcast`, they receive each message's events one by one, in order.
  Every queue carries `x-dead-letter-exchange: calltracking.dlx`.
Messages: body = JSON of `Event.to_json()`, `message_id` = event id, `type` = event key,
`content_type` application/json, persistent; published with confirms and `mandatory` off (an event
no queue binds is dropped, as the in-process bus drops it). `publish` waits at most
`publish_timeout_s` for the confirm, and its broadcast copy's, and raises `BusError` otherwise
(broker away, confirm lost).

Routed queues: a named queue the bus is given a `QueueRoute` for is bound to nothing. `publish`
copies each event matching the route's keys that the route's `wants` takes straight to the queue
(default exchange, the same message, confirmed too), so the broker stores only those. This is for
a queue whose consumer would drop most events: the webhook queue took every `lease.*` event of
every site, persistent, to settle almost all of them unhandled (serve.py gives the route), and
that cost the broker twice what the rest of its work did (docs/benchmarks.md). `wants`
runs in the publishing process, answers True whenever it cannot tell, and every process that
publishes must be given the same routes: events its relay publishes reach a routed queue only
through them. `start` declares each routed queue (so its copies are kept before its consumer
first runs), and subscribing to one removes the bindings an earlier version gave it.

Poison handling (chosen over quorum queues' `x-delivery-limit`, which cannot serve exclusive
broadcast queues and redelivers at the head): the attempt count travels in the
`x-calltracking-attempts` header. A failed handler gets a copy republished, confirmed, to the tail
of the same queue (default exchange) with the count raised, and only then is the original acked;
the `max_attempts`-th failure, or a body that is not an event envelope, is rejected without requeue
and the queue dead-letters it to `calltracking.dead` (RabbitMQ adds `x-death`). Messages behind a
poison one never wait for more than its attempts. On a broadcast queue the poison event leaves its
message alone: its retry is a message of its own (the others are not handled again), and when
that fails for the last time it is dead-lettered by itself.

Each subscription has its own channel (its prefetch; closing it returns unacked messages), feeds
its broker deliveries into one owned task that handles them in order, and keeps a `SeenIds` LRU:
a redelivery after a lost ack, or an outbox row published twice, is acked without calling the
handler. Handled messages are acked together (`multiple`) once no delivery is waiting or after
`ACK_EVERY` of them, not one by one: each ack is a frame written and awaited, and a node
consumes every lease event of every node (and, per broadcast message, one ack and one delivery
cover many events). Any other settlement (a reject, a failed handler's
ack) first acks what was handled before it, so the broker sees each delivery settled once.
Acks lost with a connection only mean redeliveries, which the LRU absorbs. Broadcast queues lose
what is published while their node is disconnected (the queue dies with the connection); their
consumers must re-read state after a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import aio_pika
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustExchange,
    AbstractRobustQueue,
)
from aio_pika.exceptions import ChannelInvalidStateError

from calltracking.bus.base import (
    DEDUP_SIZE,
    MAX_ATTEMPTS,
    BusError,
    Handler,
    SeenIds,
    Wants,
    topic_matches,
)
from calltracking.bus.broadcast import (
    BROADCAST_EXCHANGE,
    BroadcastRounds,
    decode_run,
    encode_run,
)
from calltracking.core.events import Event

log = logging.getLogger(__name__)

EXCHANGE = "calltracking"
DEAD_LETTER_EXCHANGE = "calltracking.dlx"
DEAD_LETTER_QUEUE = "calltracking.dead"
ATTEMPTS_HEADER = "x-calltracking-attempts"
ACK_EVERY = 8  # handled messages acked together at most; half the default prefetch
_QUEUE_ARGUMENTS = {"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE}


@dataclass(frozen=True)
class QueueRoute:
    """Events matching `keys` that `wants` takes go to the named `queue` by a copy from the
    publisher, not by a binding (module docstring, "Routed queues")."""

    queue: str
    keys: tuple[str, ...]
    wants: Wants

    def takes(self, event: Event) -> bool:
        return any(topic_matches(key, event.key) for key in self.keys) and self.wants(event)


class RabbitSubscription:
    """One consumer of one queue on its own channel; one task handles its messages in order."""

    def __init__(
        self,
        bus: RabbitBus,
        channel: AbstractRobustChannel,
        queue: AbstractRobustQueue,
        handler: Handler,
        wants: Wants | None = None,
        *,
        batched: bool = False,
    ) -> None:
        self._bus = bus
        self._batched = batched  # a broadcast queue: each message is a run of events
        self._channel = channel
        self._queue = queue
        self._handler = handler
        self._wants = wants
        self._seen = SeenIds(bus.dedup_size)
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._task = asyncio.create_task(self._consume(), name=f"bus-consumer:{queue.name}")
        self._closed = False
        # Handled and not acked yet: the newest such message, and how many there are.
        self._handled: AbstractIncomingMessage | None = None
        self._handled_count = 0

    @property
    def queue(self) -> str:
        return self._queue.name

    async def start(self) -> None:
        await self._queue.consume(self._deliver)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._task.cancel()
        # wait() does not raise the task's CancelledError, but does raise ours if we are cancelled.
        await asyncio.wait([self._task])
        await self._ack_handled()
        try:
            # Closing the channel cancels the consumer and returns every unacked message.
            async with asyncio.timeout(self._bus.publish_timeout_s):
                await self._channel.close()
        except Exception:
            log.debug("channel of queue %s did not close cleanly", self.queue, exc_info=True)
        self._bus._forget(self)

    async def _deliver(self, message: AbstractIncomingMessage) -> None:
        # aio-pika runs this callback as its own task per message; hand over to our ordered task.
        self._inbox.put_nowait(message)

    async def _consume(self) -> None:
        while True:
            message = await self._inbox.get()
            try:
                await self._handle(message)
                if self._handled_count >= ACK_EVERY or (
                    self._handled_count and self._inbox.empty()
                ):
                    await self._ack_handled()
            except Exception:
                # Only broker operations get here (handler errors are settled in _handle).
                log.warning(
                    "could not settle message %s on queue %s; the broker will deliver it again",
                    message.message_id,
                    self.queue,
                    exc_info=True,
                )
                # A live channel would otherwise hold it unacked until it closes; a dead one
                # returns it anyway, so a failing nack changes nothing.
                with contextlib.suppress(Exception):
                    if message is not self._handled:
                        await message.nack(requeue=True)

    def _mark_handled(self, message: AbstractIncomingMessage) -> None:
        self._handled = message
        self._handled_count += 1

    async def _ack_handled(self) -> None:
        """Ack every handled message not acked yet, with one frame. A lost channel returns them
        anyway (each comes back once, and the LRU skips it)."""
        message, self._handled, self._handled_count = self._handled, None, 0
        if message is None:
            return
        try:
            await message.ack(multiple=True)
        except Exception:
            log.debug("could not ack handled messages on queue %s", self.queue, exc_info=True)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        try:
            message.channel  # noqa: B018 - raises when the delivering channel is gone
        except ChannelInvalidStateError:
            # Delivered on a channel lost since: the broker redelivers it on the restored one.
            log.debug("dropping stale delivery %s on queue %s", message.message_id, self.queue)
            return
        try:
            events = self._decode(message.body)
        except (ValueError, TypeError) as exc:
            await self._ack_handled()
            log.error(
                "message %s on queue %s is not an event envelope (%s); dead-lettered",
                message.message_id,
                self.queue,
                exc,
            )
            await message.reject(requeue=False)
            return
        failures: list[tuple[Event, Exception]] = []
        for event in events:
            failure = await self._handle_event(event)
            if failure is not None:
                failures.append((event, failure))
        if not failures:
            self._mark_handled(message)
            return
        await self._ack_handled()
        if len(events) == 1:
            await self._failed(message, *failures[0])
            return
        for event, failure in failures:  # each leaves its message to be retried by itself
            await self._failed(message, event, failure, alone=False)
        await message.ack()

    def _decode(self, body: bytes) -> list[Event]:
        if self._batched:
            return decode_run(body)
        return [Event.from_json(json.loads(body))]

    async def _handle_event(self, event: Event) -> Exception | None:
        """Hand one event to the handler unless seen or refused; the handler's failure, if any."""
        if event.id in self._seen:
            log.debug("event %s (%s) already handled on queue %s", event.id, event.key, self.queue)
            return None
        if self._wants is not None and not self._wants(event):
            return None  # settled unhandled (base.py)
        try:
            await self._handler(event)
        except Exception as exc:
            return exc
        self._seen.add(event.id)
        return None

    async def _failed(
        self,
        message: AbstractIncomingMessage,
        event: Event,
        exc: Exception,
        *,
        alone: bool = True,
    ) -> None:
        """Retry `event` at the tail of the queue, or dead-letter it after its last attempt.
        `alone`: the message holds only this event, and is acked (or rejected) here; else the
        event goes on in a message of its own and the caller acks the original."""
        raw = message.headers.get(ATTEMPTS_HEADER)
        attempts = (raw if isinstance(raw, int) else 0) + 1
        limit = self._bus.max_attempts
        if attempts >= limit:
            log.error(
                "event %s (%s) dead-lettered from queue %s after %d failed attempts",
                event.id,
                event.key,
                self.queue,
                attempts,
                exc_info=exc,
            )
            if alone:
                await message.reject(requeue=False)
            else:
                await self._publish_alone(event, attempts, DEAD_LETTER_QUEUE)
            return
        log.warning(
            "handler failed for event %s (%s) on queue %s, attempt %d of %d",
            event.id,
            event.key,
            self.queue,
            attempts,
            limit,
            exc_info=exc,
        )
        if not alone:
            await self._publish_alone(event, attempts, self.queue)
            return
        retry = aio_pika.Message(
            message.body,
            headers={**message.headers, ATTEMPTS_HEADER: attempts},
            message_id=message.message_id,
            type=message.type,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        async with asyncio.timeout(self._bus.publish_timeout_s):
            await self._channel.default_exchange.publish(
                retry, routing_key=self.queue, mandatory=False
            )
        # Acked only once the copy is confirmed: a crash in between makes a duplicate, not a loss.
        await message.ack()

    async def _publish_alone(self, event: Event, attempts: int, queue: str) -> None:
        """`event` out of its broadcast message, as a message of its own, to the tail of `queue`
        (this one, or the dead letters'), confirmed."""
        message = aio_pika.Message(
            encode_run([json.dumps(event.to_json()).encode()]),
            headers={ATTEMPTS_HEADER: attempts},
            message_id=event.id,
            type=event.key,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        async with asyncio.timeout(self._bus.publish_timeout_s):
            await self._channel.default_exchange.publish(
                message, routing_key=queue, mandatory=False
            )


class RabbitBus:
    """`Bus` on RabbitMQ; `await start()` (or `async with`) before use, `close()` after."""

    def __init__(
        self,
        url: str,
        *,
        publish_timeout_s: float = 5.0,
        connect_timeout_s: float = 10.0,
        reconnect_interval_s: float = 2.0,
        max_attempts: int = MAX_ATTEMPTS,
        dedup_size: int = DEDUP_SIZE,
        name: str = "calltracking",
        routes: Sequence[QueueRoute] = (),
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._routes = {route.queue: route for route in routes}
        self.publish_timeout_s = publish_timeout_s
        self.max_attempts = max_attempts
        self.dedup_size = dedup_size
        self._url = url
        self._connect_timeout_s = connect_timeout_s
        self._reconnect_interval_s = reconnect_interval_s
        self._name = name
        self._connection: AbstractRobustConnection | None = None
        self._exchange: AbstractRobustExchange | None = None
        self._default: AbstractExchange | None = None
        self._broadcast: AbstractRobustExchange | None = None
        self._rounds = BroadcastRounds(self._send_run)
        self._subscriptions: set[RabbitSubscription] = set()
        self._closed = False

    async def __aenter__(self) -> RabbitBus:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect (the first attempt fails fast) and declare the topology."""
        connection = await aio_pika.connect_robust(
            self._url,
            timeout=self._connect_timeout_s,
            reconnect_interval=self._reconnect_interval_s,
            client_properties={"connection_name": self._name},
        )
        self._connection = connection
        try:
            channel = await connection.channel(publisher_confirms=True)
            self._exchange = await channel.declare_exchange(
                EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
            )
            self._broadcast = await channel.declare_exchange(
                BROADCAST_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
            )
            dlx = await channel.declare_exchange(
                DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
            )
            dead = await channel.declare_queue(DEAD_LETTER_QUEUE, durable=True)
            await dead.bind(dlx)
            for route in self._routes.values():
                await channel.declare_queue(route.queue, durable=True, arguments=_QUEUE_ARGUMENTS)
            self._default = channel.default_exchange
        except BaseException:
            await connection.close()
            raise

    async def publish(self, event: Event) -> None:
        if self._exchange is None or self._default is None or self._closed:
            raise BusError("the bus is not started or already closed")
        body = json.dumps(event.to_json()).encode()
        message = aio_pika.Message(
            body,
            message_id=event.id,
            type=event.key,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        copied = self._rounds.add(event.key, body)
        routed = [route.queue for route in self._routes.values() if route.takes(event)]
        try:
            async with asyncio.timeout(self.publish_timeout_s):
                await self._exchange.publish(message, routing_key=event.key, mandatory=False)
                # After the main copy, not beside it: each of a relay's events leaves that
                # exchange in the outbox's order. Few events are routed.
                for queue in routed:
                    await self._default.publish(message, routing_key=queue, mandatory=False)
                await asyncio.shield(copied)  # the round is shared: never cancel it
        except TimeoutError as exc:
            raise BusError(
                f"event {event.id} not confirmed within {self.publish_timeout_s}s"
            ) from exc
        except Exception as exc:
            raise BusError(f"event {event.id} not confirmed: {exc!r}") from exc

    async def subscribe(
        self,
        queue: str | None,
        keys: Sequence[str],
        handler: Handler,
        *,
        durable: bool = True,
        prefetch: int = 16,
        wants: Wants | None = None,
    ) -> RabbitSubscription:
        if self._connection is None or self._closed:
            raise BusError("the bus is not started or already closed")
        if not keys or isinstance(keys, str):
            raise ValueError("keys must be a non-empty sequence of topic patterns")
        if queue == "":
            raise ValueError("a named queue needs a name; pass None for a broadcast queue")
        route = self._routes.get(queue) if queue is not None else None
        if route is not None and (not durable or set(keys) != set(route.keys)):
            raise ValueError(f"queue {queue} is routed: durable, with its route's keys only")
        channel = await self._connection.channel(publisher_confirms=True)
        subscription: RabbitSubscription | None = None
        try:
            await channel.set_qos(prefetch_count=prefetch)
            if queue is None:
                declared = await channel.declare_queue(
                    f"calltracking.node.{secrets.token_hex(8)}",
                    exclusive=True,
                    auto_delete=True,
                    arguments=_QUEUE_ARGUMENTS,
                )
            else:
                declared = await channel.declare_queue(
                    queue, durable=True, auto_delete=not durable, arguments=_QUEUE_ARGUMENTS
                )
            for key in keys:
                if route is not None:
                    await declared.unbind(EXCHANGE, key)  # bound there by earlier versions
                else:
                    await declared.bind(EXCHANGE if queue is not None else BROADCAST_EXCHANGE, key)
            subscription = RabbitSubscription(
                self, channel, declared, handler, wants, batched=queue is None
            )
            self._subscriptions.add(subscription)
            await subscription.start()
        except BaseException:
            if subscription is None:
                await channel.close()
            else:
                await subscription.close()  # also closes the channel
            raise
        return subscription

    async def close(self) -> None:
        self._closed = True
        await self._rounds.close()
        for subscription in list(self._subscriptions):
            await subscription.close()
        if self._connection is not None:
            await self._connection.close()

    async def _send_run(self, key: str, body: bytes) -> None:
        """One broadcast message (bus/broadcast.py), confirmed; transient, as its queues are."""
        if self._broadcast is None:
            raise BusError("the bus is not started")
        message = aio_pika.Message(
            body,
            type=key,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
        )
        await self._broadcast.publish(message, routing_key=key, mandatory=False)

    def _forget(self, subscription: RabbitSubscription) -> None:
        self._subscriptions.discard(subscription)
