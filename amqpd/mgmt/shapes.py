"""Core objects as RabbitMQ's management API shows them (JSON field names and values).

Pure functions of a queue, exchange, binding or vhost plus the few live numbers the caller
gathered (unacked counts, rates); nothing here changes state. Queue rows and their
counters are in `rows`. Counts are read
live, never from a statistics cache.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import resource
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from amqpd.core.exchange import Exchange
from amqpd.core.queue import Queue
from amqpd.core.vhost import VHost
from amqpd.mgmt import rows
from amqpd.mgmt.jsonable import to_json
from amqpd.mgmt.rates import Rates


def queue_json(
    queue: Queue,
    unacked: int,
    rates: Rates,
    node: str,
    detailed: bool = False,
    policy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    shown = rows.queue_dict(queue, unacked, rates.pair(rows.queue_key(queue)), node, policy)
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
        # A deep queue's compact entries (core.paged): persistent messages, paged out.
        paged = getattr(queue.messages, "paged", 0)
        if paged:
            paged_bytes = queue.messages.paged_bytes  # type: ignore[union-attr]
            ready_bytes += paged_bytes
            persistent += paged
            persistent_bytes += paged_bytes
            paged_out += paged
            paged_out_bytes += paged_bytes
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


def exchange_json(
    exchange: Exchange, rates: Rates, policy: dict[str, Any] | None = None
) -> dict[str, Any]:
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
        "message_stats": rows.exchange_stats(exchange, rates.pair(rows.exchange_key(exchange))),
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
