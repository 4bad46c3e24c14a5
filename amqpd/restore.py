"""Rebuild a vhost from what its store recovered: durable topology, then messages.

`restore(vhost, recovered)` runs once at start, before any client connects, with the
vhost's store detached so that nothing recovered is written back. It joins three layers
(store records, core objects, and the codec that parses the stored content headers), so
it lives above all of them, next to the server that calls it. Messages load on a stopped
clock; once the store is back, each queue expires (and dead-letters, durably) what ran
out while the broker was down, from the arrival times stored with the messages. Entries
that no longer make sense (an unknown exchange type, a binding to something missing, a
message whose content header does not parse) are skipped and counted, never fatal.
Messages recovered compact (`RecoveredIds`, without content) are rebuilt from the log for
the first `head` of each queue only; the rest go straight into the queue's compact middle
(`core.paged.PagedMessages`), so a restart needs no more memory than the running broker.
"""

from __future__ import annotations

import gc
import logging

from amqpd.core.clock import ManualClock
from amqpd.core.exchange import EXCHANGE_TYPES, Exchange
from amqpd.core.message import Message
from amqpd.core.paged import BATCH, PagedMessages
from amqpd.core.priority import PriorityMessages
from amqpd.core.queue import Queue
from amqpd.core.ttl import split_arrival
from amqpd.core.vhost import VHost
from amqpd.encoding import shortstr
from amqpd.paging import KEEP_BYTES, KEEP_RESIDENT, LogMessages, drop_lost
from amqpd.store import Recovered, RecoveredIds
from amqpd.wire.content import ContentHeaderError, HeaderInfo, peek_header

log = logging.getLogger("amqpd.restore")


def restore(vhost: VHost, recovered: Recovered, head: int = KEEP_RESIDENT) -> int:
    """Load `recovered` into `vhost`; returns the number of entries skipped. Messages
    recovered compact stay compact past the first `head` of each queue."""
    store, vhost.store = vhost.store, None
    reader = store.reader if store is not None else None
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
        stopped = ManualClock(start=0)
        for loading in vhost.queues.values():
            loading.clock = stopped
        now = vhost.clock.now()
        for queue_name, messages in recovered.messages.items():
            queue = vhost.queues.get(queue_name)
            if queue is None:
                skipped += len(messages)
                continue
            if isinstance(messages, RecoveredIds):
                if reader is None:
                    skipped += len(messages)
                    continue
                skipped += restore_compact(queue, messages, LogMessages(reader), head, now)
                continue
            for recovered_message in messages:
                stored = recovered_message.header
                parsed = headers.get(stored)
                arrived = now
                if parsed is None:
                    header, arrived = split_arrival(stored)
                    try:
                        info = peek_header(header)
                    except ContentHeaderError:
                        skipped += 1
                        continue
                    parsed = (header, info)
                    if not arrived:
                        arrived = now
                        if len(headers) < 100_000:
                            headers[stored] = parsed
                pair = (recovered_message.exchange, recovered_message.routing_key)
                exchange_rk = names.get(pair)
                if exchange_rk is None:
                    exchange_rk = names[pair] = shortstr(pair[0]) + shortstr(pair[1])
                body = recovered_message.body
                resident = b"" if body is None else body
                message = Message(pair[0], pair[1], parsed[0], parsed[1], resident, exchange_rk)
                message.store_id = recovered_message.message_id
                message.arrived = arrived
                if body is None and reader is not None:  # left in the log: read back on delivery
                    message.evict_body(reader)
                queue.enqueue(message, redelivered=recovered_message.delivered)
        vhost.next_message_id = max(vhost.next_message_id, recovered.next_message_id)
    finally:
        vhost.store = store
        if collecting:
            gc.enable()
    for queue in list(vhost.queues.values()):
        queue.use_clock(vhost.clock)
    if skipped:
        log.warning(
            "vhost %s: skipped %d recovered entries that no longer fit", vhost.name, skipped
        )
    return skipped


def restore_compact(
    queue: Queue, recovered: RecoveredIds, loader: LogMessages, head: int, now: int
) -> int:
    """Load a queue's compact recovered messages: the first `head` (fewer for large bodies)
    as messages, the rest as compact entries (a priority queue takes them all as messages).
    Returns the number skipped (records that could not be read back)."""
    ids, delivered, sizes = recovered.ids, recovered.delivered, recovered.sizes
    keep = len(ids)
    if not isinstance(queue.messages, PriorityMessages):
        size = sizes[0] if sizes else 0
        keep = min(keep, head, KEEP_BYTES // size if size else head)
    skipped = 0
    done = 0
    while done < keep:
        batch = ids[done : min(keep, done + 1024)]
        for i, message in enumerate(loader.load(batch), done):
            if isinstance(message, OSError):
                skipped += 1
                continue
            if not message.arrived:
                message.arrived = now
            queue.enqueue(message, redelivered=delivered[i] == 1)
        done += len(batch)
    if keep < len(ids):
        messages = queue.messages
        if not isinstance(messages, PagedMessages):
            messages = PagedMessages(
                loader,
                lambda *lost: drop_lost(queue, *lost),
                head=messages,
                batch=min(BATCH, max(head, 16)),
            )
        messages.since = now
        queue.extend_compact(messages, ids, delivered, sizes, keep)
    return skipped
