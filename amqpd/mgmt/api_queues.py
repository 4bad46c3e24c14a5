"""`/api/queues`: list, show, declare (PUT), delete, purge (`/contents`), get, bindings.

Counts are live: ready messages from the queue, unacked ones from the channels holding
them. Declaring and deleting go through the vhost API with the requester's configure
permission; `get` takes messages from the head and puts them back (redelivered) for the
`*_requeue_true` ack modes, as RabbitMQ does.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from amqpd.core.queue import Queue
from amqpd.core.vhost import VHost
from amqpd.mgmt import declaring, inspect, listing, rows, shapes
from amqpd.mgmt.context import Call
from amqpd.mgmt.errors import bad_request
from amqpd.mgmt.messages import payload_json, properties_json
from amqpd.mgmt.router import NO_CONTENT, RawJson, Reply, Router

ACK_MODES = ("ack_requeue_true", "ack_requeue_false", "reject_requeue_true", "reject_requeue_false")
SLICE = 0.001  # seconds of listing per event-loop turn, so AMQP traffic keeps flowing


def _find(call: Call) -> tuple[VHost, Queue]:
    vhost = call.vhost()
    return vhost, declaring.find(vhost.queues, call.params["queue"])


# Query parameters that need every queue as a dict (filter, sort, project, page).
SHAPING = ("name", "sort", "sort_reverse", "columns", "page", "page_size")


async def list_queues(call: Call) -> Any:
    """Queues are read on the loop a slice at a time (about a millisecond each), so a long
    list delays AMQP traffic by no more than that. A plain listing is written as JSON text
    directly (`rows.QueueText`); a filtered, sorted or paged one is built as dicts (with
    only `columns`, as rabbitmqadmin asks, each is projected as it is made)."""
    mgmt = call.mgmt
    unacked = mgmt.unacked_by_queue()
    query = dict(call.query)
    policies = mgmt.policies
    pair = mgmt.rates.pair
    key = rows.queue_key
    shaped = any(name in query for name in SHAPING)
    columns = listing.columns_of(query) if listing.only_columns(query) else None
    text = mgmt.queue_text
    node = mgmt.node
    pieces: list[str] = []  # the queues of this slice, as JSON text
    chunks: list[bytes] = []  # the answer so far, a slice per chunk
    items: list[dict[str, Any]] = []
    vhosts = call.vhosts()
    deadline = time.perf_counter() + SLICE
    for vhost in vhosts:
        found = vhost.queues
        for name in mgmt.queue_order.names(vhost.name, found):
            queue = found.get(name)
            if queue is None:
                continue
            policy = policies.effective(queue.vhost, "queue", name)
            if shaped:
                item = rows.queue_dict(queue, unacked[queue], pair(key(queue)), node, policy)
                items.append(listing.project(item, columns) if columns else item)
            else:
                pieces.append(text.render(queue, unacked[queue], pair(key(queue)), policy))
            if time.perf_counter() > deadline:
                if pieces:  # encoded a slice at a time: no long join at the end
                    chunks.append(("," if chunks else "[").encode() + ",".join(pieces).encode())
                    pieces.clear()
                await asyncio.sleep(0)
                deadline = time.perf_counter() + SLICE
    if len(text) > 2 * sum(len(vhost.queues) for vhost in vhosts) + 1000:
        text.forget_deleted()  # many queues listed once are gone
    if columns:
        return items  # projected already, in order
    if shaped:
        return listing.render(items, query)
    if pieces:
        chunks.append(("," if chunks else "[").encode() + ",".join(pieces).encode())
    chunks.append(b"]" if chunks else b"[]")
    return RawJson(chunks)


def show_queue(call: Call) -> Any:
    _vhost, queue = _find(call)
    mgmt = call.mgmt
    views = mgmt.views()
    unacked = mgmt.unacked_by_queue(views)[queue]
    policy = mgmt.policies.effective(queue.vhost, "queue", queue.name)
    shown = shapes.queue_json(queue, unacked, mgmt.rates, mgmt.node, True, policy)
    shown["consumer_details"] = [
        details for view in views for owner, details in view.consumers(mgmt.node) if owner is queue
    ]
    waiting = sum(m.info.body_size for m in inspect.unacked_messages(views, queue))
    shown["message_bytes_unacknowledged"] = waiting
    shown["message_bytes"] = shown["message_bytes_ready"] + waiting
    shown["message_bytes_ram"] = shown["message_bytes"] - shown["message_bytes_paged_out"]
    shown["incoming"] = []
    shown["deliveries"] = []
    return shown


def declare_queue(call: Call) -> Any:
    vhost = call.vhost()
    name = call.params["queue"]
    body = call.json()
    arguments = declaring.arguments(body)

    def declare() -> None:
        vhost.check_queue_name(name)
        vhost.declare_queue(
            name,
            owner=None,
            durable=declaring.flag(body, "durable", True),
            auto_delete=declaring.flag(body, "auto_delete"),
            arguments=arguments,
        )

    return declaring.declare(call, "queue", name, vhost.queues, declare)


def delete_queue(call: Call) -> Any:
    vhost, queue = _find(call)
    call.requester.check(vhost.name, "configure", "queue", queue.name)
    if call.query.get("if-empty", "false").lower() == "true" and queue.messages:
        raise bad_request(f"queue '{queue.name}' in vhost '{vhost.name}' not empty")
    if call.query.get("if-unused", "false").lower() == "true" and queue.consumers:
        raise bad_request(f"queue '{queue.name}' in vhost '{vhost.name}' in use")
    vhost.remove_queue(queue)
    return NO_CONTENT


def purge_queue(call: Call) -> Any:
    vhost, queue = _find(call)
    call.requester.check(vhost.name, "read", "queue", queue.name)
    queue.purge()
    return NO_CONTENT


def get_messages(call: Call) -> Any:
    vhost, queue = _find(call)
    call.requester.check(vhost.name, "read", "queue", queue.name)
    body = call.json()
    try:
        count = int(body.get("count", 1))
    except (TypeError, ValueError):
        raise bad_request("count must be an integer") from None
    ackmode = body.get("ackmode", "ack_requeue_true")
    if body.get("requeue") is not None and "ackmode" not in body:  # RabbitMQ < 3.7 clients
        ackmode = "ack_requeue_true" if declaring.flag(body, "requeue") else "ack_requeue_false"
    if ackmode not in ACK_MODES:
        raise bad_request(f"ackmode must be one of {', '.join(ACK_MODES)}")
    encoding = body.get("encoding", "auto")
    if encoding not in ("auto", "base64"):
        raise bad_request("encoding must be auto or base64")
    truncate = body.get("truncate")
    if truncate is not None:
        try:
            truncate = int(truncate)
        except (TypeError, ValueError):
            raise bad_request("truncate must be an integer") from None
    taken = []
    for _ in range(max(count, 0)):
        entry = queue.take()
        if entry is None:
            break
        taken.append(entry)
    shown = []
    remaining = len(queue.messages)
    for index, (_seq, message, redelivered) in enumerate(taken):
        item = {
            "payload_bytes": len(message.body),
            "redelivered": redelivered,
            "exchange": message.exchange,
            "routing_key": message.routing_key,
            "message_count": remaining + len(taken) - index - 1,
            "properties": properties_json(message.header),
        }
        item.update(payload_json(message.body, encoding, truncate))
        shown.append(item)
    if ackmode.endswith("requeue_true"):
        queue.requeue([(seq, message) for seq, message, _redelivered in taken])
    else:
        for _seq, message, _redelivered in taken:
            queue.settled(message)
    return shown


def queue_bindings(call: Call) -> Any:
    vhost, queue = _find(call)
    found = [b for b in shapes.bindings(vhost) if b["destination_type"] == "queue"]
    return listing.render([b for b in found if b["destination"] == queue.name], call.query)


def register(router: Router) -> None:
    router.add("GET", "/api/queues", list_queues)
    router.add("GET", "/api/queues/{vhost}", list_queues)
    router.add("GET", "/api/queues/{vhost}/{queue}", show_queue)
    router.add("PUT", "/api/queues/{vhost}/{queue}", declare_queue)
    router.add("DELETE", "/api/queues/{vhost}/{queue}", delete_queue)
    router.add("DELETE", "/api/queues/{vhost}/{queue}/contents", purge_queue)
    router.add("POST", "/api/queues/{vhost}/{queue}/get", get_messages)
    router.add("GET", "/api/queues/{vhost}/{queue}/bindings", queue_bindings)


__all__ = ["register", "Reply"]
