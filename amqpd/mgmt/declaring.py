"""What the queue and exchange handlers share: finding one by path, reading a declare body,
and declaring with RabbitMQ's answers (201 created, 204 when it existed already).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from typing import Any, TypeVar

from amqpd.core.errors import AMQPError
from amqpd.mgmt.context import Call
from amqpd.mgmt.errors import bad_request, from_amqp, not_found
from amqpd.mgmt.router import CREATED, NO_CONTENT, Reply

T = TypeVar("T")


def find(found: Mapping[str, T], name: str) -> T:
    """The object called `name`, or 404."""
    item = found.get(name)
    if item is None:
        raise not_found()
    return item


def flag(body: Mapping[str, Any], name: str, default: bool = False) -> bool:
    """A boolean of a request body; "true"/"false" strings count as rabbitmqadmin sends them."""
    value = body.get(name, default)
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def arguments(body: Mapping[str, Any]) -> dict[str, Any]:
    found = body.get("arguments") or {}
    if not isinstance(found, dict):
        raise bad_request("arguments must be an object")
    return found


def declare(
    call: Call, kind: str, name: str, existing: Container[str], declare: Callable[[], object]
) -> Reply:
    """Declare `name` (a "queue" or "exchange") with the requester's configure permission."""
    call.requester.check(call.params["vhost"], "configure", kind, name)
    existed = name in existing
    try:
        declare()
    except AMQPError as error:
        raise from_amqp(error) from None
    return NO_CONTENT if existed else CREATED
