"""Redeclaration checks: an existing queue or exchange must be declared the same way.

RabbitMQ compares the flags and a fixed set of `x-` arguments, and reports the first
difference as PRECONDITION_FAILED with a text naming the argument, what was received and
what is current. Arguments outside that set are not compared.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from amqpd.core.errors import PRECONDITION_FAILED, ChannelError

QUEUE_ARGUMENTS_CHECKED = (
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-type",
    "x-queue-version",
    "x-single-active-consumer",
    "x-delivery-limit",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-queue-leader-locator",
)
EXCHANGE_ARGUMENTS_CHECKED = ("alternate-exchange",)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def amqp_type_name(value: Any) -> str:
    """RabbitMQ's name for the field-table type a client library would encode `value` as."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "signedint" if -(2**31) <= value < 2**31 else "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, Decimal):
        return "decimal"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list | tuple):
        return "array"
    if value is None:
        return "void"
    return "longstr"


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return _flag(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode(errors="replace")
    return str(value)


def _describe(value: Any) -> str:
    return f"the value '{_plain(value)}' of type '{amqp_type_name(value)}'"


def check_flag(kind: str, name: str, vhost: str, arg: str, received: bool, current: bool) -> None:
    if received != current:
        raise ChannelError(
            PRECONDITION_FAILED,
            f"inequivalent arg '{arg}' for {kind} '{name}' in vhost '{vhost}': "
            f"received '{_flag(received)}' but current is '{_flag(current)}'",
        )


def check_arguments(
    kind: str,
    name: str,
    vhost: str,
    received: dict[str, Any],
    current: dict[str, Any],
    checked: tuple[str, ...],
) -> None:
    for arg in checked:
        new, old = received.get(arg), current.get(arg)
        if new == old and isinstance(new, bool) == isinstance(old, bool):
            continue
        if new is None or old is None:
            shown_new = "none" if new is None else _describe(new)
            shown_old = "none" if old is None else _describe(old)
        else:
            shown_new, shown_old = f"'{_plain(new)}'", f"'{_plain(old)}'"
        raise ChannelError(
            PRECONDITION_FAILED,
            f"inequivalent arg '{arg}' for {kind} '{name}' in vhost '{vhost}': "
            f"received {shown_new} but current is {shown_old}",
        )
