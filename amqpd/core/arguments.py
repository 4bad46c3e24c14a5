"""Validation of `x-` arguments on queue.declare, exchange.declare and basic.consume.

RabbitMQ checks the arguments it knows and answers a bad one with 406 PRECONDITION_FAILED,
naming the argument and an Erlang-flavoured detail (`{value_negative,-1}`, ...). Unknown
arguments are accepted and ignored. Each function raises `ChannelError` or returns None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from amqpd.core.equivalence import amqp_type_name
from amqpd.core.errors import PRECONDITION_FAILED, ChannelError

QUEUE_TYPES = ("classic", "quorum")  # quorum queues are served as classic ones
# Queue arguments RabbitMQ knows that amqpd accepts without acting on them (storage and
# cluster placement hints with no single-node behaviour to copy): a declare logs a warning.
NOT_ENFORCED = (
    "x-queue-mode",
    "x-queue-version",
    "x-queue-master-locator",
    "x-queue-leader-locator",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-dead-letter-strategy",
    "x-quorum-initial-group-size",
)
# Arguments RabbitMQ knows but a quorum queue refuses (3.10).
NOT_FOR_QUORUM = (
    "x-max-priority",
    "x-queue-mode",
    "x-queue-version",
    "x-queue-master-locator",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
    "x-initial-cluster-size",
)
QUEUE_MODES = ("default", "lazy")
OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")
STRING_QUEUE_ARGUMENTS = ("x-dead-letter-exchange", "x-dead-letter-routing-key")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _integer(minimum: int, maximum: int | None = None) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not _is_int(value):
            return f'"expected integer, got {amqp_type_name(value)}"'
        if value < 0:
            return f"{{value_negative,{value}}}"
        if value < minimum:
            return f"{{value_zero,{value}}}"
        if maximum is not None and value > maximum:
            return f"{{max_value_exceeded,{value}}}"
        return None

    return check


def _one_of(choices: tuple[str, ...], detail: Callable[[Any], str]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        return None if text in choices else detail(text)

    return check


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"{{unacceptable_type,{amqp_type_name(value)}}}"


_QUEUE_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "x-message-ttl": _integer(0),
    "x-expires": _integer(1),
    "x-max-length": _integer(0),
    "x-max-length-bytes": _integer(0),
    "x-max-priority": _integer(0, 255),
    "x-overflow": _one_of(OVERFLOW_MODES, lambda value: "invalid_overflow"),
    "x-queue-type": _one_of(QUEUE_TYPES, lambda value: f"\"unsupported queue type '{value}'\""),
    "x-queue-mode": _one_of(QUEUE_MODES, lambda value: f"\"unsupported queue mode '{value}'\""),
    "x-single-active-consumer": _boolean,
}


def _invalid(arg: str, kind: str, name: str, vhost: str, detail: str) -> ChannelError:
    return ChannelError(
        PRECONDITION_FAILED, f"invalid arg '{arg}' for {kind} '{name}' in vhost '{vhost}': {detail}"
    )


def _wrong_type(arg: str, kind: str, name: str, vhost: str, value: Any) -> ChannelError:
    return ChannelError(
        PRECONDITION_FAILED,
        f"invalid type '{amqp_type_name(value)}' for arg '{arg}' in {kind} '{name}' "
        f"in vhost '{vhost}'",
    )


def validate_queue_arguments(name: str, vhost: str, arguments: dict[str, Any]) -> None:
    for arg in STRING_QUEUE_ARGUMENTS:
        if arg in arguments and not isinstance(arguments[arg], str | bytes):
            raise _wrong_type(arg, "queue", name, vhost, arguments[arg])
    for arg, check in _QUEUE_CHECKS.items():
        if arg in arguments:
            detail = check(arguments[arg])
            if detail is not None:
                raise _invalid(arg, "queue", name, vhost, detail)
    if "x-dead-letter-routing-key" in arguments and "x-dead-letter-exchange" not in arguments:
        raise _invalid(
            "x-dead-letter-routing-key", "queue", name, vhost, "routing_key_but_no_dlx_defined"
        )


def validate_exchange_arguments(name: str, vhost: str, arguments: dict[str, Any]) -> None:
    value = arguments.get("alternate-exchange")
    if value is not None and not isinstance(value, str | bytes):
        raise _wrong_type("alternate-exchange", "exchange", name, vhost, value)


def validate_consumer_arguments(queue: str, vhost: str, arguments: dict[str, Any]) -> None:
    if "x-priority" in arguments and not _is_int(arguments["x-priority"]):
        detail = f'"expected integer, got {amqp_type_name(arguments["x-priority"])}"'
        raise _invalid("x-priority", "queue", queue, vhost, detail)


def is_quorum(arguments: dict[str, Any]) -> bool:
    kind = arguments.get("x-queue-type")
    return kind == "quorum" or kind == b"quorum"


def validate_quorum_declare(
    name: str,
    vhost: str,
    *,
    durable: bool,
    exclusive: bool,
    auto_delete: bool,
    server_named: bool,
    arguments: dict[str, Any],
) -> None:
    """What RabbitMQ 3.10 refuses when declaring a quorum queue, in its order and words."""
    for refused, prop in ((auto_delete, "auto-delete"), (exclusive, "exclusive-owner"),
                          (not durable, "non-durable")):  # fmt: skip
        if refused:
            raise ChannelError(
                PRECONDITION_FAILED,
                f"invalid property '{prop}' for queue '{name}' in vhost '{vhost}'",
            )
    if server_named:
        raise ChannelError(
            PRECONDITION_FAILED, "Cannot declare a server-named queue for type rabbit_quorum_queue"
        )
    for arg in NOT_FOR_QUORUM:
        if arg in arguments:
            raise ChannelError(
                PRECONDITION_FAILED,
                f"invalid arg '{arg}' for queue '{name}' in vhost '{vhost}' "
                "of queue type rabbit_quorum_queue",
            )
