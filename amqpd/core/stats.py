"""Message counters of one vhost, for the management API and Prometheus.

`MessageStats` is a bag of monotonically growing integers. The hot path only ever adds to
them (one attribute increment per event, or one per batch); whoever reports them reads
them and computes rates by sampling. No clocks, no locks, no I/O.
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
