"""Dead-lettering: a message leaving a queue as `rejected`, `expired` or `maxlen` is
republished to the queue's dead-letter exchange, with the `x-death` history RabbitMQ 3.10
writes.

`dead_lettered(message, queue_name, reason, ...)` builds the republished message: the
headers gain (or update) an `x-death` entry per (queue, reason), most recent first, with
`count`, `reason`, `queue`, `time`, `exchange`, `routing-keys` and `original-expiration`;
the first death also sets `x-first-death-{reason,queue,exchange}`; the expiration property
is removed. `is_cycle` is RabbitMQ's rule for dropping automatic loops: a message that
comes back to a queue it died in is dropped unless a rejection happened on the way.
Other headers and properties are kept byte for byte (see `table.py`).
"""

from __future__ import annotations

from collections.abc import Callable

from amqpd.core.message import ContentInfo, Message
from amqpd.core.table import (
    decode_longstr,
    encode_array,
    encode_long,
    encode_longstr,
    encode_table_value,
    encode_timestamp,
    join_table,
    replace_headers,
    split_array,
    split_table,
)

X_DEATH = b"x-death"
REJECTED = "rejected"


def routing_keys(message: Message) -> list[bytes]:
    """The keys a message was published with: its routing key, then its CC header's keys."""
    keys = [message.routing_key.encode()]
    if message.info.headers_raw is not None:
        for name, value in split_table(message.info.headers_raw):
            if name == b"CC" and value[:1] == b"A":
                keys += [
                    item for item in map(decode_longstr, split_array(value)) if item is not None
                ]
    return keys


def _entry_field(entry: bytes, field: bytes) -> bytes | None:
    if entry[:1] != b"F":
        return None
    for name, value in split_table(entry[1:]):
        if name == field:
            return decode_longstr(value)
    return None


def _incremented(entry: bytes) -> bytes:
    """An x-death entry with its count raised by one, its fields sorted by name."""
    pairs = []
    for name, value in split_table(entry[1:]):
        if name == b"count":
            count = int.from_bytes(value[1:], "big", signed=True) if value[:1] == b"l" else 0
            value = encode_long(count + 1)
        pairs.append((name, value))
    return encode_table_value(sorted(pairs))


def dead_lettered(
    message: Message,
    queue_name: str,
    reason: str,
    exchange: str,
    routing_key: str | None,
    now_ms: int,
    parse: Callable[[bytes], ContentInfo],
) -> Message:
    """The message to republish to `exchange` (with `routing_key`, or its own if None);
    `parse` reads the properties of the rewritten content header (the codec's job)."""
    info = message.info
    pairs = split_table(info.headers_raw)
    queue = queue_name.encode()
    reason_bytes = reason.encode()
    deaths: list[bytes] | None = None
    for name, value in pairs:
        if name == X_DEATH and value[:1] == b"A":
            deaths = split_array(value)
    if deaths is None:
        fields = [
            (b"count", encode_long(1)),
            (b"reason", encode_longstr(reason_bytes)),
            (b"queue", encode_longstr(queue)),
            (b"time", encode_timestamp(now_ms // 1000)),
            (b"exchange", encode_longstr(message.exchange)),
            (b"routing-keys", encode_array(map(encode_longstr, routing_keys(message)))),
        ]
        if info.expiration is not None:
            fields.append((b"original-expiration", encode_longstr(info.expiration)))
        new_deaths = [encode_table_value(fields)]
        headers = dict(pairs)
        headers.setdefault(b"x-first-death-reason", encode_longstr(reason_bytes))
        headers.setdefault(b"x-first-death-queue", encode_longstr(queue))
        headers.setdefault(b"x-first-death-exchange", encode_longstr(message.exchange))
    else:
        found = None
        others = []
        for entry in deaths:
            if (
                found is None
                and _entry_field(entry, b"queue") == queue
                and _entry_field(entry, b"reason") == reason_bytes
            ):
                found = entry
            else:
                others.append(entry)
        if found is not None:
            first = _incremented(found)
        else:
            fields = [
                (b"count", encode_long(1)),
                (b"reason", encode_longstr(reason_bytes)),
                (b"queue", encode_longstr(queue)),
                (b"time", encode_timestamp(now_ms // 1000)),
                (b"exchange", encode_longstr(message.exchange)),
                (b"routing-keys", encode_array(map(encode_longstr, routing_keys(message)))),
            ]
            if info.expiration is not None:
                fields.append((b"original-expiration", encode_longstr(info.expiration)))
            first = encode_table_value(sorted(fields))
        new_deaths = [first, *others]
        headers = dict(pairs)
    headers[X_DEATH] = encode_array(new_deaths)
    header = replace_headers(
        message.header, join_table(sorted(headers.items())), drop_expiration=True
    )
    key = message.routing_key if routing_key is None else routing_key
    republished = Message(exchange, key, header, parse(header), message.body)
    return republished


def deaths_of(message: Message) -> list[tuple[bytes | None, bytes | None]]:
    """(queue, reason) of each x-death entry of a message, most recent first."""
    for name, value in split_table(message.info.headers_raw):
        if name == X_DEATH and value[:1] == b"A":
            return [
                (_entry_field(entry, b"queue"), _entry_field(entry, b"reason"))
                for entry in split_array(value)
            ]
    return []


def is_cycle(queue_name: str, deaths: list[tuple[bytes | None, bytes | None]]) -> bool:
    """True if dead-lettering into `queue_name` would close a loop with no rejection in it."""
    queue = queue_name.encode()
    for index, (name, _reason) in enumerate(deaths):
        if name == queue:
            return all(reason != b"rejected" for _name, reason in deaths[: index + 1])
    return False
