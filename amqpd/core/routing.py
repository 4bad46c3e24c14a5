"""Routing helpers the vhost uses for RabbitMQ's routing extensions.

`walk` follows a message from an exchange through exchange-to-exchange bindings and
alternate exchanges (each exchange once) to the queues it reaches, for one or more routing
keys. `sender_selected` reads the `CC` and `BCC` headers (sender-selected distribution)
into extra routing keys and removes `BCC` from the message before anyone sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from amqpd.core.exchange import Exchange
from amqpd.core.message import ContentInfo, Message
from amqpd.core.table import (
    TableError,
    decode_longstr,
    join_table,
    replace_headers,
    split_array,
    split_table,
)


def sender_selected(message: Message, parse: Callable[[bytes], ContentInfo]) -> list[str]:
    """Routing keys from the CC and BCC headers (after the routing key); a BCC header
    is removed from the message before anyone sees it."""
    keys = [message.routing_key]
    try:
        pairs = split_table(message.info.headers_raw)
    except TableError:
        return keys
    bcc = False
    for name, value in pairs:
        if name == b"CC" or name == b"BCC":
            bcc = bcc or name == b"BCC"
            if value[:1] == b"A":
                for item in split_array(value):
                    key = decode_longstr(item)
                    if key is not None:
                        keys.append(key.decode(errors="replace"))
    if bcc:
        header = replace_headers(
            message.header,
            join_table([pair for pair in pairs if pair[0] != b"BCC"]),
            drop_expiration=False,
        )
        message.header = header
        message.info = parse(header)
        message._headers = None
    return keys


def walk(
    exchange: Exchange, message: Message, keys: Iterable[str], exchanges: dict[str, Exchange]
) -> list[Any]:
    """Follow exchange-to-exchange bindings and alternate exchanges, each exchange once.
    An exchange that routes a message nowhere hands it to its alternate exchange."""
    queues: dict[Any, None] = {}
    seen = {exchange}
    pending = [exchange]
    while pending:
        source = pending.pop()
        found: dict[Any, None] = {}
        for key in keys:
            found.update(dict.fromkeys(source.route(message, key)))
        if not found and source.alternate is not None:
            alternate = exchanges.get(source.alternate)
            if alternate is not None:
                found[alternate] = None
        for destination in found:
            if isinstance(destination, Exchange):
                if destination not in seen:
                    seen.add(destination)
                    pending.append(destination)
            else:
                queues[destination] = None
    return list(queues)
