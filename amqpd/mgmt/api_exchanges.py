"""`/api/exchanges` and `/api/bindings`: list, show, declare, delete, publish, bind, unbind.

The default exchange is `amq.default` in paths, as in RabbitMQ. A binding is addressed by
source, destination and its `properties_key` (the routing key, plus a digest of the
arguments when there are any). Publishing goes through the vhost's routing like an AMQP
publish and answers `{"routed": true|false}`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from amqpd.core.errors import AMQPError
from amqpd.core.exchange import Exchange
from amqpd.core.message import Message
from amqpd.core.vhost import VHost
from amqpd.mgmt import declaring, listing, shapes
from amqpd.mgmt.context import Call
from amqpd.mgmt.errors import bad_request, from_amqp, not_found
from amqpd.mgmt.messages import BadMessage, build_header, decode_payload
from amqpd.mgmt.router import NO_CONTENT, Reply, Router
from amqpd.wire.content import peek_header

DEFAULT = "amq.default"


def _exchange_name(raw: str) -> str:
    return "" if raw == DEFAULT else raw


def _find(call: Call) -> tuple[VHost, Exchange]:
    vhost = call.vhost()
    return vhost, declaring.find(vhost.exchanges, _exchange_name(call.params["exchange"]))


def list_exchanges(call: Call) -> Any:
    items = [
        shapes.exchange_json(
            exchange,
            call.mgmt.rates,
            call.mgmt.policies.effective(vhost.name, "exchange", exchange.name),
        )
        for vhost in call.vhosts()
        for exchange in list(vhost.exchanges.values())
    ]
    items.sort(key=lambda item: (item["vhost"], item["name"]))
    return listing.render(items, call.query)


def show_exchange(call: Call) -> Any:
    vhost, exchange = _find(call)
    policy = call.mgmt.policies.effective(vhost.name, "exchange", exchange.name)
    shown = shapes.exchange_json(exchange, call.mgmt.rates, policy)
    shown.update({"incoming": [], "outgoing": []})
    return shown


def declare_exchange(call: Call) -> Any:
    vhost = call.vhost()
    name = _exchange_name(call.params["exchange"])
    body = call.json()
    type_name = body.get("type")
    if not isinstance(type_name, str) or not type_name:
        raise bad_request("type is required")
    arguments = declaring.arguments(body)

    def declare() -> None:
        vhost.declare_exchange(
            name,
            type_name,
            durable=declaring.flag(body, "durable", True),
            auto_delete=declaring.flag(body, "auto_delete"),
            internal=declaring.flag(body, "internal"),
            arguments=arguments,
        )

    return declaring.declare(call, "exchange", name, vhost.exchanges, declare)


def delete_exchange(call: Call) -> Any:
    vhost, exchange = _find(call)
    try:
        vhost.check_deletable_exchange(exchange.name)
        call.requester.check(vhost.name, "configure", "exchange", exchange.name)
        if_unused = call.query.get("if-unused", "false").lower() == "true"
        vhost.delete_exchange(exchange.name, if_unused=if_unused)
    except AMQPError as error:
        raise from_amqp(error) from None
    return NO_CONTENT


def publish(call: Call) -> Any:
    vhost, exchange = _find(call)
    call.requester.check(vhost.name, "write", "exchange", exchange.name or DEFAULT)
    body = call.json()
    routing_key = body.get("routing_key", "")
    if not isinstance(routing_key, str):
        raise bad_request("routing_key must be a string")
    try:
        payload = decode_payload(body.get("payload", ""), body.get("payload_encoding", "string"))
        header = build_header(body.get("properties") or {}, len(payload))
    except BadMessage as error:
        raise bad_request(str(error)) from None
    if exchange.internal:
        raise bad_request(
            f"cannot publish to internal exchange '{exchange.name}' in vhost '{vhost.name}'"
        )
    message = Message(exchange.name, routing_key, header, peek_header(header), payload)
    queues, _ticket = vhost.publish(exchange, message)
    return {"routed": bool(queues)}


def exchange_bindings(call: Call) -> Any:
    vhost, exchange = _find(call)
    side = call.params["side"]
    if side not in ("source", "destination"):
        raise not_found()
    found = list(shapes.bindings(vhost))
    if side == "source":
        found = [b for b in found if b["source"] == exchange.name]
    else:
        found = [
            b
            for b in found
            if b["destination_type"] == "exchange" and b["destination"] == exchange.name
        ]
    return listing.render(found, call.query)


def list_bindings(call: Call) -> Any:
    items = [binding for vhost in call.vhosts() for binding in shapes.bindings(vhost)]
    return listing.render(items, call.query)


def _between(call: Call) -> tuple[VHost, list[dict[str, Any]], str, str, str]:
    vhost = call.vhost()
    source = _exchange_name(call.params["source"])
    kind = {"q": "queue", "e": "exchange"}[call.params.get("kind", "q")]
    destination = call.params["destination"]
    if source not in vhost.exchanges:
        raise not_found()
    if kind == "queue" and destination not in vhost.queues:
        raise not_found()
    if kind == "exchange" and destination not in vhost.exchanges:
        raise not_found()
    found = [
        b
        for b in shapes.bindings(vhost)
        if b["source"] == source
        and b["destination"] == destination
        and b["destination_type"] == kind
    ]
    return vhost, found, source, kind, destination


def bindings_between(call: Call) -> Any:
    return listing.render(_between(call)[1], call.query)


def add_binding(call: Call) -> Any:
    vhost, _found, source, kind, destination = _between(call)
    body = call.json()
    routing_key = body.get("routing_key", "")
    arguments = body.get("arguments") or {}
    if not isinstance(routing_key, str) or not isinstance(arguments, dict):
        raise bad_request("routing_key must be a string and arguments an object")
    requester = call.requester
    requester.check(vhost.name, "write", kind, destination)
    requester.check(vhost.name, "read", "exchange", source)
    try:
        if kind == "queue":
            vhost.bind_queue(destination, source, routing_key, arguments, None)
        else:
            vhost.bind_exchange(destination, source, routing_key, arguments)
    except AMQPError as error:
        raise from_amqp(error) from None
    key = shapes.properties_key(routing_key, arguments)
    return Reply(201, None, (("Location", quote(key, safe="~%")),))


def _one_binding(call: Call) -> tuple[VHost, dict[str, Any], str, str, str]:
    vhost, found, source, kind, destination = _between(call)
    for binding in found:
        if binding["properties_key"] == call.params["props"]:
            return vhost, binding, source, kind, destination
    raise not_found()


def show_binding(call: Call) -> Any:
    return _one_binding(call)[1]


def delete_binding(call: Call) -> Any:
    vhost, binding, source, kind, destination = _one_binding(call)
    requester = call.requester
    requester.check(vhost.name, "write", kind, destination)
    requester.check(vhost.name, "read", "exchange", source)
    routing_key = binding["routing_key"]
    arguments = _raw_arguments(vhost, source, destination, kind, routing_key, binding)
    try:
        if kind == "queue":
            vhost.unbind_queue(destination, source, routing_key, arguments, None)
        else:
            vhost.unbind_exchange(destination, source, routing_key, arguments)
    except AMQPError as error:
        raise from_amqp(error) from None
    return NO_CONTENT


def _raw_arguments(
    vhost: VHost, source: str, destination: str, kind: str, routing_key: str, shown: Any
) -> dict[str, Any]:
    """The binding's arguments as the core keeps them (not their JSON rendering)."""
    exchange = vhost.exchanges[source]
    for (target, key, _frozen), arguments in exchange.bindings.items():
        is_queue = not isinstance(target, Exchange)
        if (
            target.name == destination
            and key == routing_key
            and is_queue == (kind == "queue")
            and shapes.properties_key(key, arguments) == shown["properties_key"]
        ):
            return arguments
    raise not_found()


def register(router: Router) -> None:
    router.add("GET", "/api/exchanges", list_exchanges)
    router.add("GET", "/api/exchanges/{vhost}", list_exchanges)
    router.add("GET", "/api/exchanges/{vhost}/{exchange}", show_exchange)
    router.add("PUT", "/api/exchanges/{vhost}/{exchange}", declare_exchange)
    router.add("DELETE", "/api/exchanges/{vhost}/{exchange}", delete_exchange)
    router.add("POST", "/api/exchanges/{vhost}/{exchange}/publish", publish)
    router.add("GET", "/api/exchanges/{vhost}/{exchange}/bindings/{side}", exchange_bindings)
    router.add("GET", "/api/bindings", list_bindings)
    router.add("GET", "/api/bindings/{vhost}", list_bindings)
    for kind in ("q", "e"):
        base = f"/api/bindings/{{vhost}}/e/{{source}}/{kind}/{{destination}}"
        router.add("GET", base, _with_kind(bindings_between, kind))
        router.add("POST", base, _with_kind(add_binding, kind))
        router.add("GET", base + "/{props}", _with_kind(show_binding, kind))
        router.add("DELETE", base + "/{props}", _with_kind(delete_binding, kind))


def _with_kind(handler: Any, kind: str) -> Any:
    def bound(call: Call) -> Any:
        call.params["kind"] = kind
        return handler(call)

    return bound
