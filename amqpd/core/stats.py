"""Message counters for the management API and Prometheus: per vhost, queue and exchange.

`MessageStats` (one per vhost), `QueueStats` (one per queue) and the exchange's own two
integers are bags of monotonically growing counts. The hot path only ever adds to them (one
attribute increment per event, or one per batch); whoever reports them reads them and
computes rates by sampling. No clocks, no locks, no I/O.
"""

from __future__ import annotations

COUNTERS = (
    "publish",
    "confirm",
    "deliver",
    "deliver_no_ack",
    "get",
    "get_no_ack",
    "get_empty",
    "ack",
    "redeliver",
    "return_unroutable",
    "drop_unroutable",
)


class MessageStats:
    __slots__ = COUNTERS

    def __init__(self) -> None:
        self.publish = 0  # messages published (routed or not)
        self.confirm = 0  # publisher confirms sent
        self.deliver = 0  # deliveries to consumers (counted per dispatch pass)
        self.deliver_no_ack = 0  # ... of them to auto-ack consumers
        self.get = 0  # messages fetched by basic.get
        self.get_no_ack = 0  # ... of them with no_ack
        self.get_empty = 0  # basic.get answered get-empty
        self.ack = 0  # deliveries acknowledged
        self.redeliver = 0  # deliveries and gets of messages flagged redelivered
        self.return_unroutable = 0  # mandatory publishes returned as unroutable
        self.drop_unroutable = 0  # other publishes that reached no queue

    def snapshot(self) -> dict[str, int]:
        """The counters as RabbitMQ names them: `deliver` and `get` count only those needing
        an ack, `*_no_ack` the others, `deliver_get` all of them."""
        values = {name: getattr(self, name) for name in COUNTERS}
        values["deliver_get"] = values["deliver"] + values["get"]
        values["deliver"] -= values["deliver_no_ack"]
        values["get"] -= values["get_no_ack"]
        return values


class QueueStats:
    """What one queue counts besides its deliveries and gets (which it counts itself, as
    `delivered_count` and `get_count`): the auto-ack share of them, acks, redeliveries and
    empty gets. Increments only; the channel's delivery tracker and the queue add to them."""

    __slots__ = ("deliver_no_ack", "get_no_ack", "get_empty", "ack", "redeliver")

    def __init__(self) -> None:
        self.deliver_no_ack = 0
        self.get_no_ack = 0
        self.get_empty = 0
        self.ack = 0
        self.redeliver = 0


# The fields of a queue's `message_stats` (the management API lists them in this order).
QUEUE_COUNTERS = (
    "publish",
    "deliver",
    "deliver_no_ack",
    "get",
    "get_no_ack",
    "deliver_get",
    "get_empty",
    "ack",
    "redeliver",
)
