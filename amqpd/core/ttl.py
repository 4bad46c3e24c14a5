"""Message TTL: the per-message `expiration` property, read and checked as RabbitMQ does.

`parse_expiration(text)` turns the property into milliseconds or raises the 406 RabbitMQ
closes the channel with (`invalid expiration 'abc': no_integer`, ...). A queue's own
`x-message-ttl` is checked at declare (arguments.py); the effective TTL of a message in a
queue is the lower of the two, counted from when the message entered the broker.

Deadlines are absolute: a persistent message that may expire is stored with the time it
arrived (ms since the epoch) as 8 bytes after its content-header properties
(`with_arrival`), and recovery splits them off again (`split_arrival`), so a deadline that
passed while the broker was down is applied at recovery.
"""

from __future__ import annotations

import struct

from amqpd.core.errors import PRECONDITION_FAILED, ChannelError
from amqpd.core.table import TableError, properties_end

MAX_EXPIRATION = 315_360_000_000  # ten years in milliseconds, RabbitMQ's ceiling
_LINE = 80  # Erlang's ~p wraps a term that would run past this column


def _erlang_integer_prefix(text: str) -> tuple[int, str] | None:
    """Like Erlang's string:to_integer: an optional sign, digits, and what is left."""
    index = 1 if text[:1] in ("+", "-") else 0
    end = index
    while end < len(text) and "0" <= text[end] <= "9":
        end += 1
    if end == index:
        return None
    return int(text[:end]), text[end:]


def parse_expiration(text: str) -> int:
    """The expiration property in milliseconds; 406 PRECONDITION_FAILED if RabbitMQ refuses it."""
    if text.isascii() and text.isdigit() and len(text) < 12:  # plain digits, in range
        return int(text)
    prefix = f"invalid expiration '{text}': "
    parsed = _erlang_integer_prefix(text)
    if parsed is None:
        raise ChannelError(PRECONDITION_FAILED, prefix + "no_integer")
    value, rest = parsed
    if rest:
        raise ChannelError(PRECONDITION_FAILED, prefix + f'{{leftover_string,"{rest}"}}')
    if value < 0:
        raise ChannelError(PRECONDITION_FAILED, prefix + f"{{value_negative,{value}}}")
    if value > MAX_EXPIRATION:
        term = f"{{value_too_large,{value}}}"
        if len(prefix) + len(term) > _LINE:
            term = "{value_too_large,\n" + " " * (len(prefix) + 1) + f"{value}}}"
        raise ChannelError(PRECONDITION_FAILED, prefix + term)
    return value


_ARRIVAL = struct.Struct(">Q")


def with_arrival(header: bytes, arrived: int) -> bytes:
    """The header as the store keeps it for a message that may expire."""
    return header + _ARRIVAL.pack(arrived)


def split_arrival(stored: bytes) -> tuple[bytes, int]:
    """(content header, arrival ms or 0) of a header as the store kept it."""
    try:
        end = properties_end(stored)
    except (TableError, IndexError, struct.error):
        return stored, 0
    if len(stored) == end + _ARRIVAL.size:
        return stored[:end], _ARRIVAL.unpack_from(stored, end)[0]
    return stored, 0
