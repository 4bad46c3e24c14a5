"""Prometheus's per-queue series (`/metrics/per-object`), written as text in slices.

With 10,000 queues the per-queue series are 50,000 lines; building them as
prometheus_client metric objects and formatting them in one call held the event loop for a
few hundred milliseconds. `per_queue_text(queues, unacked)` writes the same exposition
text (rabbitmq_prometheus's names: `rabbitmq_queue_messages{,_ready,_unacked}`,
`rabbitmq_queue_consumers`, `rabbitmq_queue_messages_published_total`) a millisecond's
worth of queues at a time, yielding to AMQP traffic in between.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from typing import Any

SLICE = 0.001  # seconds of writing per event-loop turn

# (metric name, type, help); counters' samples end in `_total`
FAMILIES = (
    ("rabbitmq_queue_messages_ready", "gauge", "Messages ready to be delivered"),
    ("rabbitmq_queue_messages_unacked", "gauge", "Messages delivered but not yet acked"),
    ("rabbitmq_queue_messages", "gauge", "Sum of ready and unacked messages"),
    ("rabbitmq_queue_consumers", "gauge", "Consumers on a queue"),
    (
        "rabbitmq_queue_messages_published",
        "counter",
        "Total number of messages published to queues",
    ),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


async def per_queue_text(queues: Iterable[Any], unacked: Mapping[Any, int]) -> str:
    ready_lines: list[str] = []
    unacked_lines: list[str] = []
    messages_lines: list[str] = []
    consumers_lines: list[str] = []
    published_lines: list[str] = []
    deadline = time.perf_counter() + SLICE
    for queue in queues:
        if queue.deleted:
            continue
        labels = f'{{vhost="{_label(queue.vhost)}",queue="{_label(queue.name)}"}} '
        ready = len(queue.messages)
        waiting = unacked.get(queue, 0)
        ready_lines.append(f"rabbitmq_queue_messages_ready{labels}{ready}\n")
        unacked_lines.append(f"rabbitmq_queue_messages_unacked{labels}{waiting}\n")
        messages_lines.append(f"rabbitmq_queue_messages{labels}{ready + waiting}\n")
        consumers_lines.append(f"rabbitmq_queue_consumers{labels}{len(queue.consumers)}\n")
        published_lines.append(
            f"rabbitmq_queue_messages_published_total{labels}{queue.enqueued_count}\n"
        )
        if time.perf_counter() > deadline:
            await asyncio.sleep(0)
            deadline = time.perf_counter() + SLICE
    parts = []
    for (name, kind, doc), lines in zip(
        FAMILIES,
        (ready_lines, unacked_lines, messages_lines, consumers_lines, published_lines),
        strict=True,
    ):
        parts.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n")
        parts.append("".join(lines))
    return "".join(parts)
