"""`/api/queues`: list, show, declare (PUT), delete, purge (`/contents`), get, bindings.

Counts are live: ready messages from the queue, unacked ones from the channels holding
them. Declaring and deleting go through the vhost API with the requester's configure
permission; `get` takes messages from the head and puts them back (redelivered) for the
`*_requeue_true` ack modes, as RabbitMQ does.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from amqpd.core.errors import AMQPError
from amqpd.core.queue import Queue
from amqpd.core.vhost import VHost
from amqpd.mgmt import inspect, listing, shapes
from amqpd.mgmt.context import Call
from amqpd.mgmt.errors import bad_request, from_amqp, not_found
from amqpd.mgmt.messages import payload_json, properties_json
from amqpd.mgmt.router import CREATED, NO_CONTENT, RawJson, Reply, Router

ACK_MODES = ("ack_requeue_true", "ack_requeue_false", "reject_requeue_true", "reject_requeue_false")
CHUNK = 100  # queues described per event-loop turn, so AMQP traffic keeps flowing


def _find(call: Call) -> tuple[VHost, Queue]:
    vhost = call.vhost()
    queue = vhost.queues.get(call.params["queue"])
    if queue is None:
        raise not_found()
    return vhost, queue


async def list_queues(call: Call) -> Any:
    """Facts are read on the loop a slice at a time; the JSON is built in a worker thread
    from those plain values, so a long list hardly delays AMQP traffic."""
    mgmt = call.mgmt
    unacked = mgmt.unacked_by_queue()
    facts: list[shapes.QueueFacts] = []
    for vhost in call.vhosts():
        queues = list(vhost.queues.values())
        for start in range(0, len(queues), CHUNK):
            facts += [
                shapes.queue_facts(
                    queue,
                    unacked[queue],
                    mgmt.rates,
                    mgmt.policies.effective(queue.vhost, "queue", queue.name),
                )
                for queue in queues[start : start + CHUNK]
            ]
            if len(queues) > CHUNK:
                await asyncio.sleep(0)
    if len(facts) <= CHUNK:
        return _render(facts, mgmt.node, dict(call.query))
    with mgmt.background_work():
        body = await asyncio.to_thread(_render_text, facts, mgmt.node, dict(call.query))
    return RawJson(body)


def _render(facts: list[shapes.QueueFacts], node: str, query: dict[str, str]) -> Any:
    items = [shapes.facts_json(one, node) for one in facts]
    items.sort(key=lambda item: (item["vhost"], item["name"]))
    return listing.render(items, query)


def _render_text(facts: list[shapes.QueueFacts], node: str, query: dict[str, str]) -> bytes:
    rendered = _render(facts, node, query)
    if not isinstance(rendered, list):
        return json.dumps(rendered, separators=(",", ":")).encode()
    # Encoded in slices: json.dumps holds the GIL throughout, the loop thread wants it back.
    pieces = [
        json.dumps(rendered[start : start + CHUNK], separators=(",", ":"))[1:-1]
        for start in range(0, len(rendered), CHUNK)
    ]
    return ("[" + ",".join(piece for piece in pieces if piece) + "]").encode()


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


def _flag(body: dict[str, Any], name: str, default: bool = False) -> bool:
    value = body.get(name, default)
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def declare_queue(call: Call) -> Any:
    vhost = call.vhost()
    name = call.params["queue"]
    body = call.json()
    arguments = body.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise bad_request("arguments must be an object")
    call.requester.check(vhost.name, "configure", "queue", name)
    existed = name in vhost.queues
    try:
        vhost.check_queue_name(name)
        vhost.declare_queue(
            name,
            owner=None,
            durable=_flag(body, "durable", True),
            auto_delete=_flag(body, "auto_delete"),
            arguments=arguments,
        )
    except AMQPError as error:
        raise from_amqp(error) from None
    return NO_CONTENT if existed else CREATED


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
        ackmode = "ack_requeue_true" if _flag(body, "requeue") else "ack_requeue_false"
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
