"""Core objects as RabbitMQ's management API shows them (JSON field names and values).

Pure functions of a queue, exchange, binding or vhost plus the few live numbers the caller
gathered (unacked counts, consumers, rates); nothing here changes state. Counts are read
live, never from a statistics cache.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import resource
from collections.abc import Iterator
from typing import Any, NamedTuple
from urllib.parse import quote

from amqpd.core.exchange import Exchange
from amqpd.core.queue import Queue
from amqpd.core.vhost import VHost
from amqpd.mgmt.jsonable import to_json
from amqpd.mgmt.rates import Rates, with_details

# A rough per-message cost of a queued message in RAM (entry, Message object, header).
MESSAGE_OVERHEAD = 300
QUEUE_OVERHEAD = 2000


def queue_counts(queue: Queue, unacked: int) -> dict[str, int]:
    ready = len(queue.messages)
    return {
        "messages": ready + unacked,
        "messages_ready": ready,
        "messages_unacknowledged": unacked,
    }


def queue_stats(queue: Queue) -> dict[str, int]:
    return {
        "publish": queue.enqueued_count,
        "deliver": queue.delivered_count,
        "get": queue.get_count,
        "deliver_get": queue.delivered_count + queue.get_count,
    }


def queue_key(queue: Queue) -> tuple[str, str, str]:
    return ("queue", queue.vhost, queue.name)


class QueueFacts(NamedTuple):
    """What a queue's JSON is made of, read on the event loop in one go; turning it into
    JSON (`facts_json`) touches no broker object, so it may run in another thread."""

    name: str
    vhost: str
    durable: bool
    auto_delete: bool
    exclusive: bool
    arguments: dict[str, Any]
    counts: dict[str, int]
    stats: dict[str, int]
    consumers: int
    exclusive_tag: str | None
    rates: Any
    policy: dict[str, Any] | None


def queue_facts(
    queue: Queue, unacked: int, rates: Rates, policy: dict[str, Any] | None = None
) -> QueueFacts:
    consumers = queue.consumers
    return QueueFacts(
        queue.name,
        queue.vhost,
        queue.durable,
        queue.auto_delete,
        queue.exclusive_owner is not None,
        queue.arguments,
        queue_counts(queue, unacked),
        queue_stats(queue),
        len(consumers),
        next((c.tag for c in consumers if c.exclusive), None) if consumers else None,
        rates.pair(("queue", queue.vhost, queue.name)),
        policy,
    )


def facts_json(facts: QueueFacts, node: str) -> dict[str, Any]:
    consumers = facts.consumers
    shown: dict[str, Any] = {
        "name": facts.name,
        "vhost": facts.vhost,
        "node": node,
        "type": "classic",
        "durable": facts.durable,
        "auto_delete": facts.auto_delete,
        "exclusive": facts.exclusive,
        "arguments": to_json(facts.arguments) if facts.arguments else {},
        "state": "running",
        "consumers": consumers,
        "consumer_capacity": 1.0 if consumers else 0,
        "consumer_utilisation": 1.0 if consumers else 0,
        "exclusive_consumer_tag": facts.exclusive_tag,
        "single_active_consumer_tag": None,
        "policy": facts.policy["name"] if facts.policy else None,
        "operator_policy": None,
        "effective_policy_definition": dict(facts.policy["definition"]) if facts.policy else {},
        "memory": QUEUE_OVERHEAD + MESSAGE_OVERHEAD * facts.counts["messages"],
        "message_stats": with_details(facts.rates, facts.stats),
        "head_message_timestamp": None,
    }
    shown.update(with_details(facts.rates, facts.counts))
    return shown


def queue_json(
    queue: Queue,
    unacked: int,
    rates: Rates,
    node: str,
    detailed: bool = False,
    policy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    shown = facts_json(queue_facts(queue, unacked, rates, policy), node)
    if detailed:
        # Sizes from the content header: reading `body` would page an evicted body back in.
        ready_bytes = persistent = persistent_bytes = paged_out = paged_out_bytes = 0
        for _seq, message, _redelivered in queue.messages:
            size = message.info.body_size
            ready_bytes += size
            if message.delivery_mode == 2 and queue.durable:
                persistent += 1
                persistent_bytes += size
            if not message.resident:
                paged_out += 1
                paged_out_bytes += size
        shown.update(
            {
                "message_bytes_ready": ready_bytes,
                "messages_persistent": persistent,
                "message_bytes_persistent": persistent_bytes,
                "messages_ram": shown["messages"] - paged_out,
                "messages_ready_ram": shown["messages_ready"] - paged_out,
                "messages_unacknowledged_ram": shown["messages_unacknowledged"],
                "messages_paged_out": paged_out,
                "message_bytes_paged_out": paged_out_bytes,
            }
        )
    return shown


def exchange_json(exchange: Exchange, policy: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "policy": policy["name"] if policy else None,
        "name": exchange.name,
        "vhost": exchange.vhost,
        "type": exchange.type_name,
        "durable": exchange.durable,
        "auto_delete": exchange.auto_delete,
        "internal": exchange.internal,
        "arguments": to_json(exchange.arguments),
        "user_who_performed_action": "rmq-internal" if exchange.name.startswith("amq.") else "",
    }


def properties_key(routing_key: str, arguments: dict[str, Any]) -> str:
    """Identifies a binding among those between one source and destination (URL-safe)."""
    quoted = quote(routing_key, safe="") if routing_key else "~"
    if not arguments:
        return quoted
    digest = hashlib.sha1(
        json.dumps(to_json(arguments), sort_keys=True).encode(), usedforsecurity=False
    ).digest()
    return f"{quote(routing_key, safe='')}~{base64.urlsafe_b64encode(digest[:6]).decode()}"


def binding_json(
    vhost: str, source: str, destination: Any, routing_key: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    return {
        "source": source,
        "vhost": vhost,
        "destination": destination.name,
        "destination_type": "exchange" if isinstance(destination, Exchange) else "queue",
        "routing_key": routing_key,
        "arguments": to_json(arguments),
        "properties_key": properties_key(routing_key, arguments),
    }


def bindings(vhost: VHost) -> Iterator[dict[str, Any]]:
    """Every binding of a vhost; the default exchange's (one per queue) first."""
    default = vhost.exchanges.get("")
    ordered = [default] if default is not None else []
    ordered += [exchange for name, exchange in vhost.exchanges.items() if name != ""]
    for exchange in ordered:
        for (destination, routing_key, _frozen), arguments in list(exchange.bindings.items()):
            yield binding_json(vhost.name, exchange.name, destination, routing_key, arguments)


def process_memory() -> int:
    """Resident memory of this process in bytes (peak RSS where /proc is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
