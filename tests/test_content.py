"""Message content passes through the broker exactly.

All fourteen basic properties and header tables with every field type the clients can
send round-trip unchanged; bodies of every interesting size (empty, around the body-frame
boundary, 1 MiB, 20 MiB) arrive byte for byte, also to a consumer whose connection
negotiated a smaller frame_max than the publisher's.
"""

from __future__ import annotations

import decimal
import hashlib
import os
from datetime import UTC, datetime

import aio_pika
import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.exceptions import ChannelClosedByBroker

from tests.conftest import BrokerAddress

TIMEOUT = 15.0  # a failure path only: generous for a loaded machine
MiB = 1024 * 1024


def get_one(ch: BlockingChannel, queue: str):  # type: ignore[no-untyped-def]
    method, props, body = ch.basic_get(queue, auto_ack=True)
    assert method is not None, "message did not arrive"
    return method, props, body


def consume(conn: BlockingConnection, queue: str, n: int, timeout: float = 30.0) -> list:
    """Receive exactly n messages through basic.consume (the deliver path, not basic.get)."""
    ch = conn.channel()
    got = []
    for method, props, body in ch.consume(queue, auto_ack=True, inactivity_timeout=timeout):
        assert method is not None, f"only {len(got)} of {n} messages arrived"
        got.append((method, props, body))
        if len(got) == n:
            break
    assert ch.cancel() == 0, "more messages than expected"
    ch.close()
    return got


def consume_one(conn: BlockingConnection, queue: str, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    return consume(conn, queue, 1, timeout)[0]


def negotiated_frame_max(conn: BlockingConnection) -> int:
    return int(conn._impl.params.frame_max)  # type: ignore[attr-defined]


# --- properties and headers --------------------------------------------------------------


PIKA_HEADERS: dict[str, object] = {
    "str": "hello",
    "str-empty": "",
    "str-unicode": "grüße, 世界 🐇",
    "bytes": b"\x00\x01\xfe\xffbinary",
    "bytes-empty": b"",
    "int-zero": 0,
    "int-small": 42,
    "int-negative": -7,
    "int-32-max": 2**31 - 1,
    "int-32-min": -(2**31),
    "int-large": 2**40 + 3,
    "int-large-negative": -(2**50) - 1,
    "int-64-max": 2**63 - 1,
    "bool-true": True,
    "bool-false": False,
    "decimal": decimal.Decimal("1.5"),
    "decimal-negative": decimal.Decimal("-12.345"),
    "decimal-integral": decimal.Decimal(7),
    "datetime": datetime(2024, 2, 29, 23, 59, 58, tzinfo=UTC),  # pika decodes as UTC
    "void": None,
    "table": {"a": 1, "nested": {"deeper": ["x", 2, {"k": "v"}]}},
    "table-empty": {},
    "array": [1, "two", True, None, [3, [4]], {"in": "array"}, b"\x00"],
    "array-empty": [],
}


def all_properties(unique: str) -> pika.BasicProperties:
    return pika.BasicProperties(
        content_type="application/x-test",
        content_encoding="gzip",
        headers=dict(PIKA_HEADERS),
        delivery_mode=2,
        priority=7,
        correlation_id=f"{unique}-corr",
        reply_to=f"{unique}-reply",
        expiration="60000",
        message_id=f"{unique}-msg",
        timestamp=1_700_000_000,
        type="test.event",
        user_id="guest",  # RabbitMQ checks this against the authenticated user
        app_id="amqpd-tests",
        cluster_id="cluster-x",
    )


PROPERTY_NAMES = [
    "content_type", "content_encoding", "headers", "delivery_mode", "priority",
    "correlation_id", "reply_to", "expiration", "message_id", "timestamp", "type",
    "user_id", "app_id", "cluster_id",
]


@pytest.mark.parametrize("path", ["get", "consume"])
def test_all_properties_and_header_types_round_trip(connection, channel, unique, path):
    q = channel.queue_declare(unique).method.queue
    sent = all_properties(unique)
    channel.confirm_delivery()
    channel.basic_publish("", q, b"props", sent)
    if path == "get":
        _m, got, body = get_one(channel, q)
    else:
        _m, got, body = consume_one(connection, q, TIMEOUT)
    assert body == b"props"
    for name in PROPERTY_NAMES:
        assert getattr(got, name) == getattr(sent, name), name
    # Types too, not just equal values (True == 1, Decimal(7) == 7).
    for key, value in PIKA_HEADERS.items():
        # pika decodes 64-bit ints as its `long`, a subclass of int.
        assert isinstance(got.headers[key], type(value)), key
        assert isinstance(got.headers[key], bool) == isinstance(value, bool), key
    assert got.headers["table"]["nested"]["deeper"][2] == {"k": "v"}
    channel.queue_delete(q)


def test_no_properties_at_all(connection, channel, unique):
    q = channel.queue_declare(unique).method.queue
    channel.confirm_delivery()
    channel.basic_publish("", q, b"bare")
    _m, got, body = get_one(channel, q)
    assert body == b"bare"
    for name in PROPERTY_NAMES:
        assert getattr(got, name) is None, name
    channel.queue_delete(q)


def test_user_id_must_match_the_login(connection, channel, unique):
    q = channel.queue_declare(unique).method.queue
    channel.basic_publish("", q, b"x", pika.BasicProperties(user_id="mallory"))
    with pytest.raises(ChannelClosedByBroker) as info:
        channel.queue_declare(q, passive=True)
    assert info.value.reply_code == 406
    assert info.value.reply_text == (
        "PRECONDITION_FAILED - user_id property set to 'mallory' but authenticated user "
        "was 'guest'"
    )
    connection.channel().queue_delete(q)


AIO_HEADERS: dict[str, object] = {
    "float": 1.5,  # pamqp sends 'f' (32-bit); pika cannot send floats at all
    "float-negative": -0.25,
    "int8": -100,  # 'b'
    "int16": -30000,  # 's'
    "uint16": 60000,  # 'u'
    "int32": -2_000_000_000,  # 'I'
    "uint32": 4_000_000_000,  # 'i'
    "int64": -(2**62),  # 'l'
    "str": "text",
    "bool": True,
    "decimal": decimal.Decimal("3.14"),
    "datetime": datetime(2001, 9, 9, 1, 46, 40),
    "void": None,
    "array": [1.5, 2, "three"],
    "table": {"float": 2.5},
    "bytes": bytearray(b"\x00raw"),
}


async def test_aio_pika_header_types_round_trip(broker: BrokerAddress, unique: str):
    async with await aio_pika.connect(broker.url, timeout=TIMEOUT) as conn:
        ch = await conn.channel()
        q = await ch.declare_queue(unique)
        await ch.default_exchange.publish(
            aio_pika.Message(b"aio", headers=dict(AIO_HEADERS), priority=3,
                             content_type="text/plain"),
            q.name,
        )
        msg = await q.get(timeout=TIMEOUT)
        assert msg is not None
        await msg.ack()
        assert msg.body == b"aio"
        assert (msg.priority, msg.content_type) == (3, "text/plain")
        got = dict(msg.headers)
        assert got.keys() == AIO_HEADERS.keys()
        for key, value in AIO_HEADERS.items():
            if isinstance(value, bytearray):
                assert bytes(got[key]) == bytes(value), key
            elif isinstance(value, datetime):
                assert got[key].replace(tzinfo=None) == value, key
            else:
                assert got[key] == value, key
                assert type(got[key]) is type(value), key
        await q.delete()


# --- bodies ------------------------------------------------------------------------------


def _payload(size: int) -> bytes:
    """Non-repeating bytes, so a dropped or duplicated frame cannot go unnoticed."""
    if size <= 64 * 1024:
        return os.urandom(size)
    block = os.urandom(64 * 1024)
    return b"".join(
        hashlib.sha256(i.to_bytes(4, "big")).digest()[:8] + block[8:]
        for i in range(size // len(block) + 1)
    )[:size]


def test_empty_body(connection, channel, unique):
    q = channel.queue_declare(unique).method.queue
    channel.confirm_delivery()
    channel.basic_publish("", q, b"", pika.BasicProperties(message_id="empty"))
    channel.basic_publish("", q, b"")
    _m, props, body = get_one(channel, q)
    assert (body, props.message_id) == (b"", "empty")
    _m, props, body = consume_one(connection, q, TIMEOUT)
    assert (body, props.message_id) == (b"", None)
    channel.queue_delete(q)


def _boundary_sizes(frame_max: int) -> list[int]:
    payload = frame_max - 8  # a body frame's payload: frame_max minus 7 header + 1 end byte
    return [0, 1, payload - 1, payload, payload + 1, 2 * payload, 2 * payload + 1, 3 * payload]


def test_body_sizes_around_the_frame_boundary(connection, channel, unique):
    frame_max = negotiated_frame_max(connection)
    assert frame_max >= 4096
    q = channel.queue_declare(unique).method.queue
    channel.confirm_delivery()
    sizes = _boundary_sizes(frame_max)
    bodies = [_payload(n) for n in sizes]
    for body in bodies:
        channel.basic_publish("", q, body)
    for size, body in zip(sizes, bodies, strict=True):
        _m, _p, got = get_one(channel, q)
        assert len(got) == size
        assert got == body
    channel.queue_delete(q)


@pytest.mark.parametrize("size", [MiB, 20 * MiB], ids=["1MiB", "20MiB"])
def test_large_bodies_byte_for_byte(connection, channel, unique, size):
    q = channel.queue_declare(unique).method.queue
    body = _payload(size)
    channel.confirm_delivery()
    channel.basic_publish("", q, body, pika.BasicProperties(message_id="big"))
    method, props, got = consume_one(connection, q)
    assert props.message_id == "big"
    assert len(got) == size
    assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()
    assert got == body
    channel.queue_delete(q)


def test_small_frame_max_consumer_receives_large_bodies(broker, connection, channel, unique):
    q = channel.queue_declare(unique).method.queue
    channel.confirm_delivery()
    small = pika.BlockingConnection(broker.params(frame_max=4096))
    try:
        assert negotiated_frame_max(small) == 4096
        assert negotiated_frame_max(connection) > 4096
        sizes = [*_boundary_sizes(4096), 100_000, MiB]
        bodies = [_payload(n) for n in sizes]
        for body in bodies:
            channel.basic_publish("", q, body)  # cut into big frames by the publisher
        received = consume(small, q, len(bodies))
        for size, body, (_m, _p, got) in zip(sizes, bodies, received, strict=True):
            assert len(got) == size
            assert got == body
    finally:
        small.close()
    channel.queue_delete(q)


def test_small_frame_max_publisher_to_large_frame_consumer(broker, connection, unique):
    small = pika.BlockingConnection(broker.params(frame_max=4096))
    try:
        ch = small.channel()
        q = ch.queue_declare(unique).method.queue
        ch.confirm_delivery()
        body = _payload(MiB + 17)
        ch.basic_publish("", q, body)  # 257 body frames of at most 4088 bytes
        _m, _p, got = consume_one(connection, q)
        assert got == body
        ch.queue_delete(q)
    finally:
        small.close()
