"""Which consumer of a queue gets the next message, with RabbitMQ's consumer extensions.

`next_consumer(consumers, priorities, single_active)`: with single active consumer only the
first registered consumer (when ready); with consumer priorities the highest-priority ready
consumer, round robin among equals (the chosen one moves to the back); otherwise the next
ready consumer round robin. None if nobody is ready. The deque is rotated in place.
"""

from __future__ import annotations

from collections import deque
from typing import Any


def next_consumer(consumers: deque[Any], priorities: dict[Any, int], single_active: bool) -> Any:
    if not consumers:
        return None
    if single_active:
        active = consumers[0]
        return active if active.ready() else None
    if priorities:
        best = None
        best_priority = 0
        for consumer in consumers:
            priority = priorities.get(consumer, 0)
            if (best is None or priority > best_priority) and consumer.ready():
                best, best_priority = consumer, priority
        if best is not None:
            consumers.remove(best)
            consumers.append(best)
        return best
    for _ in range(len(consumers)):
        consumer = consumers[0]
        consumers.rotate(-1)
        if consumer.ready():
            return consumer
    return None
