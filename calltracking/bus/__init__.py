"""The event bus: the `Bus` port, the in-process and RabbitMQ implementations, the outbox relay.

`rabbit` imports aio-pika; import it (`calltracking.bus.rabbit.RabbitBus`) only where a broker is
configured, so the embedded default never loads it.
"""

from calltracking.bus.base import Bus, BusError, Handler, SeenIds, Subscription
from calltracking.bus.memory import DeadLetter, MemoryBus
from calltracking.bus.relay import Outbox, OutboxRelay

__all__ = [
    "Bus",
    "BusError",
    "DeadLetter",
    "Handler",
    "MemoryBus",
    "Outbox",
    "OutboxRelay",
    "SeenIds",
    "Subscription",
]
