"""Rebuild a vhost from what its store recovered: durable topology, then messages.

`restore(vhost, recovered)` runs once at start, before any client connects, with the
vhost's store detached so that nothing recovered is written back. It joins three layers
(store records, core objects, and the codec that parses the stored content headers), so
it lives above all of them, next to the server that calls it. Entries that no longer
make sense (an unknown exchange type, a binding to something missing, a message whose
content header does not parse) are skipped and counted, never fatal.
"""

from __future__ import annotations

import gc
import logging

from amqpd.core.exchange import EXCHANGE_TYPES, Exchange
from amqpd.core.message import Message
from amqpd.core.queue import Queue
from amqpd.core.vhost import VHost
from amqpd.encoding import shortstr
from amqpd.store import Recovered
from amqpd.wire.content import ContentHeaderError, HeaderInfo, peek_header

log = logging.getLogger("amqpd.restore")


def restore(vhost: VHost, recovered: Recovered) -> int:
    """Load `recovered` into `vhost`; returns the number of entries skipped."""
    store, vhost.store = vhost.store, None
    skipped = 0
    collecting = gc.isenabled()
    gc.disable()  # millions of new objects, no cycles among them: don't let the GC rescan
    try:
        for record in recovered.exchanges:
            exchange_class = EXCHANGE_TYPES.get(record.type)
            if record.name in vhost.exchanges:
                continue  # the predeclared amq.* exchanges
            if exchange_class is None:
                skipped += 1
                continue
            vhost.exchanges[record.name] = exchange_class(
                record.name,
                vhost.name,
                durable=True,
                auto_delete=record.auto_delete,
                internal=record.internal,
                arguments=record.arguments,
            )
        for queue_record in recovered.queues:
            created = vhost.create_queue(
                queue_record.name,
                durable=True,
                exclusive_owner=None,
                auto_delete=queue_record.auto_delete,
                arguments=queue_record.arguments,
            )
            created.store = store
        for binding in recovered.bindings:
            source = vhost.exchanges.get(binding.source)
            destination: Queue | Exchange | None = (
                vhost.queues.get(binding.destination)
                if binding.destination_kind == "queue"
                else vhost.exchanges.get(binding.destination)
            )
            if source is None or destination is None:
                skipped += 1
                continue
            source.bind(destination, binding.routing_key, binding.arguments)
            destination.bound_from.add(source)
        # Many messages share a content header and an exchange/routing key: parse and
        # encode each distinct one once, and share the bytes.
        headers: dict[bytes, tuple[bytes, HeaderInfo]] = {}
        names: dict[tuple[str, str], bytes] = {}
        for queue_name, messages in recovered.messages.items():
            queue = vhost.queues.get(queue_name)
            if queue is None:
                skipped += len(messages)
                continue
            for recovered_message in messages:
                parsed = headers.get(recovered_message.header)
                if parsed is None:
                    try:
                        info = peek_header(recovered_message.header)
                    except ContentHeaderError:
                        skipped += 1
                        continue
                    parsed = (recovered_message.header, info)
                    if len(headers) < 100_000:
                        headers[recovered_message.header] = parsed
                pair = (recovered_message.exchange, recovered_message.routing_key)
                exchange_rk = names.get(pair)
                if exchange_rk is None:
                    exchange_rk = names[pair] = shortstr(pair[0]) + shortstr(pair[1])
                message = Message(
                    pair[0], pair[1], parsed[0], parsed[1], recovered_message.body, exchange_rk
                )
                message.store_id = recovered_message.message_id
                queue.enqueue(message, redelivered=recovered_message.delivered)
        vhost.next_message_id = max(vhost.next_message_id, recovered.next_message_id)
    finally:
        vhost.store = store
        if collecting:
            gc.enable()
    if skipped:
        log.warning(
            "vhost %s: skipped %d recovered entries that no longer fit", vhost.name, skipped
        )
    return skipped
