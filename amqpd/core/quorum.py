"""What a quorum queue adds to a classic one, as a client of RabbitMQ 3.10 sees it.

Every delivery carries an `x-delivery-count` header: how many times the message was
returned (requeued, or left unacked by a closing channel) so far. `counted_copy` makes that
delivery copy (the queue keeps the original); `count_returns` counts a batch of returns and
splits off those past `x-delivery-limit`, which the queue dead-letters as `delivery_limit`.
"""

from __future__ import annotations

from amqpd.core.message import Message
from amqpd.core.table import encode_long, join_table, replace_headers, split_table

DELIVERY_LIMIT = "delivery_limit"
X_DELIVERY_COUNT = b"x-delivery-count"


def count_returns(
    back: list[tuple[int, Message]], limit: int | None
) -> tuple[list[tuple[int, Message]], list[Message]]:
    """(entries to requeue, originals past the limit) for returned (seq, message) pairs."""
    kept = []
    over = []
    for seq, message in back:
        original = getattr(message, "origin", message)
        original.deliveries = getattr(original, "deliveries", 0) + 1
        if limit is not None and original.deliveries > limit:
            over.append(original)
        else:
            kept.append((seq, original))
    return kept, over


def counted_copy(message: Message) -> Message:
    """What a quorum queue delivers: the message with an `x-delivery-count` header (the
    times it was returned so far), appended as RabbitMQ 3.10 adds it."""
    pairs = [pair for pair in split_table(message.info.headers_raw) if pair[0] != X_DELIVERY_COUNT]
    pairs.append((X_DELIVERY_COUNT, encode_long(getattr(message, "deliveries", 0))))
    header = replace_headers(message.header, join_table(pairs), drop_expiration=False)
    # The copy keeps the original's parsed properties: only its header bytes (what is
    # delivered) gain the count; nothing routes or expires by the copy's headers.
    copy = Message(
        message.exchange,
        message.routing_key,
        header,
        message.info,
        message.body,
        message.exchange_rk,
    )
    copy.store_id = message.store_id
    copy.arrived = message.arrived
    copy.origin = message
    return copy
