"""Unit tests of the sans-IO codec in amqpd/wire/, checked against pamqp's own encoder.

No broker and no socket: bytes are built with pamqp (the reference encoder/decoder the
clients use), fed to amqpd's FrameReader / decode_method / peek_header, and amqpd's
encoders' output is decoded back by pamqp.frame.unmarshal.
"""

from __future__ import annotations

import datetime
import decimal
import itertools
import math
import random
import struct

import pytest
from pamqp import body, commands, frame, header, heartbeat

from amqpd.wire.content import (
    ContentHeaderError,
    body_frames,
    decode_headers,
    header_frame,
    peek_header,
)
from amqpd.wire.frames import (
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    HEARTBEAT_FRAME,
    FrameError,
    FrameReader,
)
from amqpd.wire.methods import (
    BASIC_ACK,
    BASIC_NACK,
    BASIC_PUBLISH,
    BASIC_REJECT,
    MethodSyntaxError,
    UnknownMethodError,
    decode_method,
    deliver_parts,
    encode_confirm,
    encode_get_ok,
    encode_method,
    pack_tag_bits,
    shortstr,
)
from tests.rawamqp import raw_frame

MIB = 1024 * 1024


def payload_of(value: frame.FrameTypes, channel: int = 1) -> bytes:
    """The payload of the single frame pamqp marshals for `value`."""
    raw = frame.marshal(value, channel)
    (size,) = struct.unpack_from(">I", raw, 3)
    assert len(raw) == 7 + size + 1
    return raw[7:-1]


def slots(value: object) -> dict[str, object]:
    return {name: getattr(value, name) for name in value.__slots__}  # type: ignore[attr-defined]


# --- FrameReader -----------------------------------------------------------------------------


def sample_stream() -> tuple[bytes, list[tuple[int, int, bytes]]]:
    """A stream of varied frames and the (type, channel, payload) list it must split into."""
    props = commands.Basic.Properties(content_type="text/plain", headers={"k": "v"})
    values: list[tuple[int, frame.FrameTypes]] = [
        (1, commands.Basic.Publish(exchange="amq.topic", routing_key="a.b.c", mandatory=True)),
        (1, header.ContentHeader(0, 5, props)),
        (1, body.ContentBody(b"hello")),
        (0, heartbeat.Heartbeat()),
        (7, commands.Basic.Ack(delivery_tag=99, multiple=True)),
        (65535, commands.Channel.Open()),
        (2, commands.Basic.Publish(exchange="", routing_key="q")),
        (2, header.ContentHeader(0, MIB, commands.Basic.Properties())),
        (2, body.ContentBody(bytes(range(256)) * (MIB // 256))),
    ]
    # many tiny frames back to back, so one chunk holds dozens of complete frames
    values += [(3, commands.Basic.Ack(delivery_tag=n)) for n in range(1, 60)]
    values += [(0, heartbeat.Heartbeat()) for _ in range(5)]
    values.append((4, body.ContentBody(b"")))  # an empty body frame is legal framing
    stream = bytearray()
    expected: list[tuple[int, int, bytes]] = []
    for channel, value in values:
        if isinstance(value, body.ContentBody) and not value.value:
            raw = raw_frame(FRAME_BODY, channel, b"")  # pamqp refuses empty payloads
        else:
            raw = frame.marshal(value, channel)
        stream += raw
        frame_type, _, size = struct.unpack_from(">BHI", raw)
        expected.append((frame_type, channel, bytes(raw[7 : 7 + size])))
    return bytes(stream), expected


def feed_in_chunks(reader: FrameReader, stream: bytes, cuts: list[int]) -> list:
    frames = []
    start = 0
    for cut in [*cuts, len(stream)]:
        frames += reader.feed(stream[start:cut])
        start = cut
    return frames


def test_whole_stream_in_one_feed() -> None:
    stream, expected = sample_stream()
    reader = FrameReader()
    assert reader.feed(stream) == expected
    assert reader.buffered == 0


@pytest.mark.parametrize("seed", range(8))
def test_random_splits_give_the_same_frames(seed: int) -> None:
    stream, expected = sample_stream()
    rng = random.Random(seed)
    # mostly small cuts (inside headers and size fields) plus a few large jumps
    cuts = sorted({rng.randrange(1, len(stream)) for _ in range(400)})
    cuts += [c for c in range(1, 64)]  # every split of the first frame's head
    reader = FrameReader()
    assert feed_in_chunks(reader, stream, sorted(set(cuts))) == expected
    assert reader.buffered == 0


def test_one_byte_at_a_time_gives_the_same_frames() -> None:
    stream, expected = sample_stream()
    reader = FrameReader()
    frames = []
    for index in range(len(stream)):
        frames += reader.feed(stream[index : index + 1])
    assert frames == expected
    assert reader.buffered == 0


def test_frames_are_returned_as_soon_as_their_end_byte_arrives() -> None:
    first = frame.marshal(commands.Basic.Ack(delivery_tag=1), 1)
    second = frame.marshal(commands.Basic.Ack(delivery_tag=2), 1)
    reader = FrameReader()
    assert reader.feed(first[:-1]) == []
    assert reader.feed(first[-1:] + second[:3]) == [(FRAME_METHOD, 1, first[7:-1])]
    assert reader.buffered == 3
    assert reader.feed(second[3:]) == [(FRAME_METHOD, 1, second[7:-1])]


def test_heartbeat_frame_constant_is_what_pamqp_sends() -> None:
    assert HEARTBEAT_FRAME == frame.marshal(heartbeat.Heartbeat(), 0)
    assert FrameReader().feed(HEARTBEAT_FRAME) == [(FRAME_HEARTBEAT, 0, b"")]


def test_frame_max_allows_a_payload_of_frame_max() -> None:
    # RabbitMQ lets the payload alone reach frame_max (the 8 framing bytes are slack)
    reader = FrameReader(4096)
    assert reader.feed(raw_frame(FRAME_BODY, 1, b"x" * 4088)) == [(FRAME_BODY, 1, b"x" * 4088)]
    assert reader.feed(raw_frame(FRAME_BODY, 1, b"y" * 4096)) == [(FRAME_BODY, 1, b"y" * 4096)]


@pytest.mark.parametrize("size", [4097, 4096 * 2, 0xFFFFFFFF])
def test_payload_over_frame_max_raises_once_the_size_field_is_known(size: int) -> None:
    reader = FrameReader(4096)
    head = struct.pack(">BHI", FRAME_BODY, 1, size)
    assert reader.feed(head[:6]) == []  # size field incomplete: nothing to judge yet
    with pytest.raises(FrameError) as caught:
        reader.feed(head[6:])  # no payload sent: must not wait for (or buffer) it
    assert caught.value.text == (
        f"FRAME_ERROR - type 3, all octets = <<>>: {{frame_too_large,{size},4088}}"
    )


def test_frame_max_zero_means_unlimited() -> None:
    data = raw_frame(FRAME_BODY, 1, b"y" * (2 * MIB))
    assert FrameReader(0).feed(data) == [(FRAME_BODY, 1, b"y" * (2 * MIB))]


@pytest.mark.parametrize("bad_end", [0x00, 0xCD, 0xFF, ord("A")])
def test_missing_frame_end_raises(bad_end: int) -> None:
    good = frame.marshal(commands.Basic.Qos(prefetch_count=5), 1)
    broken = good[:-1] + bytes([bad_end])
    with pytest.raises(FrameError) as caught:
        FrameReader().feed(broken)
    assert caught.value.text.startswith("FRAME_ERROR - ")
    # fed one byte at a time it still raises, exactly when the end byte arrives
    reader = FrameReader()
    for index in range(len(broken) - 1):
        assert reader.feed(broken[index : index + 1]) == []
    with pytest.raises(FrameError):
        reader.feed(broken[-1:])


def test_missing_frame_end_after_good_frames_raises() -> None:
    good = frame.marshal(commands.Basic.Ack(delivery_tag=1), 1)
    with pytest.raises(FrameError):
        FrameReader().feed(good + good[:-1] + b"\x00" + good)


# --- decode_method: hot methods ---------------------------------------------------------------

EXCHANGES = ["", "x", "amq.direct", "a-b_c.d:e@f#g,h/i+j k", "e" * 127]
ROUTING_KEYS = ["", "r", "a.b.#.*", "ключ.日本", "k" * 255, "é" * 127]


@pytest.mark.parametrize("exchange", EXCHANGES)
@pytest.mark.parametrize("routing_key", ROUTING_KEYS)
@pytest.mark.parametrize("mandatory", [False, True])
@pytest.mark.parametrize("immediate", [False, True])
def test_decode_publish_matches_pamqp(
    exchange: str, routing_key: str, mandatory: bool, immediate: bool
) -> None:
    method = commands.Basic.Publish(
        exchange=exchange, routing_key=routing_key, mandatory=mandatory, immediate=immediate
    )
    payload = payload_of(method)
    assert decode_method(payload) == (
        BASIC_PUBLISH,
        (exchange, routing_key, mandatory, immediate),
    )


@pytest.mark.parametrize("exchange", ["e" * 255, "ex with spaces", "ëxchange-日本", "é" * 127])
def test_decode_publish_names_pamqp_would_not_encode(exchange: str) -> None:
    # RabbitMQ takes any UTF-8 shortstr; build the payload by hand and check that amqpd
    # and pamqp's decoder read the same thing.
    payload = b"\x00\x3c\x00\x28\x00\x00" + shortstr(exchange) + shortstr("rk") + b"\x03"
    reference = commands.Basic.Publish.__new__(commands.Basic.Publish)
    reference.unmarshal(payload[4:])
    assert decode_method(payload) == (BASIC_PUBLISH, (exchange, "rk", True, True))
    assert reference.exchange == exchange


# pamqp codes longlong as signed, so comparisons with it stop at 2**63 - 1; the unsigned
# top half (AMQP delivery tags are unsigned) is checked by hand below.
TAGS = [0, 1, 255, 2**32 + 7, 2**63 - 1]
HIGH_TAGS = [2**63, 2**64 - 1]


@pytest.mark.parametrize("tag", TAGS)
@pytest.mark.parametrize("multiple", [False, True])
def test_decode_ack_matches_pamqp(tag: int, multiple: bool) -> None:
    payload = payload_of(commands.Basic.Ack(delivery_tag=tag, multiple=multiple))
    assert decode_method(payload) == (BASIC_ACK, (tag, multiple))


@pytest.mark.parametrize("tag", TAGS)
@pytest.mark.parametrize("multiple", [False, True])
@pytest.mark.parametrize("requeue", [False, True])
def test_decode_nack_matches_pamqp(tag: int, multiple: bool, requeue: bool) -> None:
    payload = payload_of(commands.Basic.Nack(delivery_tag=tag, multiple=multiple, requeue=requeue))
    assert decode_method(payload) == (BASIC_NACK, (tag, multiple, requeue))


@pytest.mark.parametrize("tag", TAGS)
@pytest.mark.parametrize("requeue", [False, True])
def test_decode_reject_matches_pamqp(tag: int, requeue: bool) -> None:
    payload = payload_of(commands.Basic.Reject(delivery_tag=tag, requeue=requeue))
    assert decode_method(payload) == (BASIC_REJECT, (tag, requeue))


@pytest.mark.parametrize("tag", HIGH_TAGS)
def test_decode_acks_with_unsigned_high_tags(tag: int) -> None:
    tail = struct.pack(">Q", tag)
    assert decode_method(b"\x00\x3c\x00\x50" + tail + b"\x01") == (BASIC_ACK, (tag, True))
    assert decode_method(b"\x00\x3c\x00\x78" + tail + b"\x02") == (
        BASIC_NACK,
        (tag, False, True),
    )
    assert decode_method(b"\x00\x3c\x00\x5a" + tail + b"\x00") == (BASIC_REJECT, (tag, False))


# --- decode_method: the rest goes through pamqp ------------------------------------------------

TABLE = {
    "str": "välue",
    "int": -5,
    "big": 2**40,
    "bool": True,
    "float": 1.5,
    "none": None,
    "nested": {"a": [1, "two", {"three": 3}]},
    "ts": datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    "dec": decimal.Decimal("3.14"),
}

RARE_METHODS = [
    commands.Connection.StartOk(
        client_properties={"product": "t", "capabilities": {"basic.nack": True}},
        mechanism="PLAIN",
        response="\0guest\0guest",
        locale="en_US",
    ),
    commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=60),
    commands.Connection.Open(virtual_host="/"),
    commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0),
    commands.Connection.CloseOk(),
    commands.Channel.Open(),
    commands.Channel.Flow(active=False),
    commands.Channel.Close(
        reply_code=406, reply_text="PRECONDITION_FAILED", class_id=50, method_id=10
    ),
    commands.Channel.CloseOk(),
    commands.Exchange.Declare(
        exchange="ex",
        exchange_type="topic",
        passive=False,
        durable=True,
        auto_delete=True,
        internal=True,
        nowait=True,
        arguments={"alternate-exchange": "ae"},
    ),
    commands.Exchange.Delete(exchange="ex", if_unused=True, nowait=True),
    commands.Exchange.Bind(destination="d", source="s", routing_key="#", arguments=TABLE),
    commands.Exchange.Unbind(destination="d", source="s", routing_key="#"),
    commands.Queue.Declare(
        queue="q",
        passive=True,
        durable=True,
        exclusive=True,
        auto_delete=True,
        nowait=False,
        arguments={"x-max-length": 10, "x-queue-type": "classic"},
    ),
    commands.Queue.Declare(queue="", passive=False, durable=False, exclusive=False),
    commands.Queue.Bind(queue="q", exchange="e", routing_key="rk", arguments=TABLE),
    commands.Queue.Unbind(queue="q", exchange="e", routing_key="rk"),
    commands.Queue.Purge(queue="q", nowait=True),
    commands.Queue.Delete(queue="q", if_unused=True, if_empty=True, nowait=False),
    commands.Basic.Qos(prefetch_size=0, prefetch_count=65535, global_=True),
    commands.Basic.Consume(
        queue="q",
        consumer_tag="ctag",
        no_local=True,
        no_ack=True,
        exclusive=True,
        nowait=True,
        arguments={"x-priority": 5},
    ),
    commands.Basic.Cancel(consumer_tag="ctag", nowait=True),
    commands.Basic.Get(queue="q", no_ack=True),
    commands.Basic.Recover(requeue=True),
    commands.Basic.RecoverAsync(requeue=False),
    commands.Confirm.Select(nowait=True),
    commands.Tx.Select(),
    commands.Tx.Commit(),
    commands.Tx.Rollback(),
]


@pytest.mark.parametrize("method", RARE_METHODS, ids=lambda m: m.name)
def test_rare_methods_decode_to_pamqp_objects(method: commands.base.Frame) -> None:
    index, value = decode_method(payload_of(method))
    assert index == method.index
    assert type(value) is type(method)
    assert slots(value) == slots(method)


@pytest.mark.parametrize(
    ("class_id", "method_id"),
    [(0, 0), (9, 1), (10, 99), (20, 12), (60, 99), (60, 61), (99, 1), (65535, 65535)],
)
def test_unknown_class_or_method_raises(class_id: int, method_id: int) -> None:
    with pytest.raises(UnknownMethodError) as caught:
        decode_method(struct.pack(">HH", class_id, method_id) + b"\x00" * 20)
    assert caught.value.index == class_id << 16 | method_id


@pytest.mark.parametrize("payload", [b"", b"\x00", b"\x00\x3c", b"\x00\x3c\x00"])
def test_payload_shorter_than_ids_raises_syntax_error(payload: bytes) -> None:
    with pytest.raises(MethodSyntaxError):
        decode_method(payload)


TRUNCATABLE = [
    commands.Basic.Publish(exchange="exchange", routing_key="routing.key", mandatory=True),
    commands.Basic.Ack(delivery_tag=12345, multiple=True),
    commands.Basic.Nack(delivery_tag=12345, multiple=True, requeue=False),
    commands.Basic.Reject(delivery_tag=12345, requeue=False),
    commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=60),
    commands.Channel.Close(reply_code=406, reply_text="text", class_id=50, method_id=10),
    commands.Queue.Declare(queue="q", durable=True, arguments={"x-max-length": 10}),
    commands.Exchange.Declare(exchange="ex", exchange_type="topic", arguments={"a": "b"}),
    commands.Queue.Bind(queue="q", exchange="e", routing_key="rk", arguments={"a": 1}),
    commands.Basic.Consume(queue="q", consumer_tag="ctag", arguments={"x-priority": 1}),
    commands.Basic.Qos(prefetch_count=10),
    commands.Basic.Get(queue="q", no_ack=True),
    commands.Queue.Delete(queue="q", if_empty=True),
]


@pytest.mark.parametrize("method", TRUNCATABLE, ids=lambda m: m.name)
def test_truncated_payloads_raise_syntax_error(method: commands.base.Frame) -> None:
    payload = payload_of(method)
    decode_method(payload)  # the whole payload is fine
    for length in range(4, len(payload)):
        with pytest.raises(MethodSyntaxError) as caught:
            decode_method(payload[:length])
        assert caught.value.index == method.index, length


@pytest.mark.parametrize(
    "method",
    [
        commands.Channel.Open(),
        commands.Connection.StartOk(
            client_properties={}, mechanism="PLAIN", response="\0a\0b", locale="en_US"
        ),
        commands.Connection.SecureOk(response="\0user\0password"),
    ],
    ids=lambda m: m.name,
)
def test_truncated_trailing_shortstr_raises_syntax_error(method: commands.base.Frame) -> None:
    payload = payload_of(method)
    with pytest.raises(MethodSyntaxError):
        decode_method(payload[:-1])


@pytest.mark.parametrize(
    "method",
    [
        commands.Channel.Open(),
        commands.Basic.Qos(prefetch_count=1),
        commands.Queue.Purge(queue="q"),
    ],
    ids=lambda m: m.name,
)
def test_trailing_bytes_after_arguments_raise_syntax_error(method: commands.base.Frame) -> None:
    with pytest.raises(MethodSyntaxError):
        decode_method(payload_of(method) + b"junk")


# --- encoders ---------------------------------------------------------------------------------

ODD_NAMES = ["", "q", "with spaces", "ünïcødé-队列", "n" * 255, "é" * 127]


def unmarshal_one(data: bytes) -> tuple[int, frame.FrameTypes]:
    consumed, channel, value = frame.unmarshal(data)
    assert consumed == len(data), "encoder produced more than one frame"
    assert data[-1] == 0xCE
    return channel, value


def encode_deliver(
    channel: int, consumer_tag: bytes, delivery_tag: int, redelivered: bool, exchange_rk: bytes
) -> bytes:
    """A whole basic.deliver, put together as the consumer's cached delivery path does."""
    prefix, suffix = deliver_parts(channel, consumer_tag, exchange_rk)
    return prefix + pack_tag_bits(delivery_tag, redelivered) + suffix


@pytest.mark.parametrize("name", ODD_NAMES)
@pytest.mark.parametrize("tag", [1, 2**32 + 1, 2**63 - 1])
@pytest.mark.parametrize("redelivered", [False, True])
def test_encode_deliver_decodes_in_pamqp(name: str, tag: int, redelivered: bool) -> None:
    data = encode_deliver(
        65535,
        shortstr("ctag " + name[:100]),
        tag,
        redelivered,
        shortstr(name) + shortstr(name[::-1]),
    )
    channel, value = unmarshal_one(data)
    assert channel == 65535
    assert isinstance(value, commands.Basic.Deliver)
    assert slots(value) == {
        "consumer_tag": "ctag " + name[:100],
        "delivery_tag": tag,
        "redelivered": redelivered,
        "exchange": name,
        "routing_key": name[::-1],
    }


@pytest.mark.parametrize("tag", HIGH_TAGS)
def test_encoders_keep_unsigned_high_tags(tag: int) -> None:
    deliver = encode_deliver(1, shortstr("c"), tag, True, shortstr("e") + shortstr("r"))
    assert struct.unpack_from(">Q", deliver, 7 + 4 + 2)[0] == tag
    get_ok = encode_get_ok(1, tag, False, shortstr("e") + shortstr("r"), 0)
    assert struct.unpack_from(">Q", get_ok, 7 + 4)[0] == tag
    confirm = encode_confirm(1, tag, True, False)
    assert struct.unpack_from(">Q", confirm, 7 + 4)[0] == tag


@pytest.mark.parametrize("name", ODD_NAMES)
@pytest.mark.parametrize("redelivered", [False, True])
@pytest.mark.parametrize("count", [0, 1, 2**32 - 1])
def test_encode_get_ok_decodes_in_pamqp(name: str, redelivered: bool, count: int) -> None:
    data = encode_get_ok(3, 42, redelivered, shortstr("ex") + shortstr(name), count)
    channel, value = unmarshal_one(data)
    assert channel == 3
    assert isinstance(value, commands.Basic.GetOk)
    assert slots(value) == {
        "delivery_tag": 42,
        "redelivered": redelivered,
        "exchange": "ex",
        "routing_key": name,
        "message_count": count,
    }


@pytest.mark.parametrize("tag", TAGS)
@pytest.mark.parametrize("multiple", [False, True])
@pytest.mark.parametrize("ack", [False, True])
def test_encode_confirm_decodes_in_pamqp(tag: int, multiple: bool, ack: bool) -> None:
    data = encode_confirm(9, tag, multiple, ack)
    channel, value = unmarshal_one(data)
    assert channel == 9
    if ack:
        assert isinstance(value, commands.Basic.Ack)
        assert slots(value) == {"delivery_tag": tag, "multiple": multiple}
    else:
        assert isinstance(value, commands.Basic.Nack)
        # requeue=1 as in RabbitMQ's confirm nacks (tests/test_wire_bytes.py)
        assert slots(value) == {"delivery_tag": tag, "multiple": multiple, "requeue": True}
    if ack:
        assert data == frame.marshal(commands.Basic.Ack(delivery_tag=tag, multiple=multiple), 9)


REPLY_METHODS = [
    commands.Connection.Start(
        server_properties={"product": "amqpd", "capabilities": {"publisher_confirms": True}},
        mechanisms="PLAIN AMQPLAIN",
        locales="en_US",
    ),
    commands.Connection.Tune(channel_max=2047, frame_max=131072, heartbeat=60),
    commands.Connection.OpenOk(),
    commands.Connection.Close(
        reply_code=541, reply_text="INTERNAL_ERROR", class_id=60, method_id=40
    ),
    commands.Channel.OpenOk(),
    commands.Channel.Close(
        reply_code=404,
        reply_text="NOT_FOUND - no queue 'q' in vhost '/'",
        class_id=50,
        method_id=10,
    ),
    commands.Exchange.DeclareOk(),
    commands.Queue.DeclareOk(queue="amq.gen-abc", message_count=7, consumer_count=2),
    commands.Queue.PurgeOk(message_count=2**32 - 1),
    commands.Queue.DeleteOk(message_count=3),
    commands.Basic.QosOk(),
    commands.Basic.ConsumeOk(consumer_tag="amq.ctag-x"),
    commands.Basic.CancelOk(consumer_tag="ctag"),
    commands.Basic.Cancel(consumer_tag="ctag", nowait=True),
    commands.Basic.GetEmpty(),
    commands.Basic.Return(reply_code=312, reply_text="NO_ROUTE", exchange="e", routing_key="r"),
    commands.Basic.RecoverOk(),
    commands.Channel.Flow(active=True),
    commands.Channel.FlowOk(active=False),
    commands.Confirm.SelectOk(),
    commands.Tx.SelectOk(),
    commands.Queue.Declare(queue="q", durable=True, exclusive=True, auto_delete=True),
    commands.Exchange.Declare(
        exchange="x",
        exchange_type="direct",
        passive=True,
        durable=True,
        auto_delete=True,
        internal=True,
        nowait=True,
        arguments=TABLE,
    ),
]


@pytest.mark.parametrize("method", REPLY_METHODS, ids=lambda m: m.name)
def test_encode_method_is_byte_identical_to_pamqp(method: commands.base.Frame) -> None:
    assert encode_method(5, method) == frame.marshal(method, 5)
    channel, value = unmarshal_one(encode_method(5, method))
    assert channel == 5
    assert slots(value) == slots(method)


@pytest.mark.parametrize("name", ["queue with spaces", "очередь", "キュー name", "q" * 255])
def test_encode_method_accepts_names_pamqp_validation_rejects(name: str) -> None:
    # amqpd must echo any UTF-8 name RabbitMQ accepts, so its encoder skips pamqp's checks
    declare_ok = commands.Queue.DeclareOk(queue="placeholder", message_count=1, consumer_count=0)
    declare_ok.queue = name
    consume_ok = commands.Basic.ConsumeOk(consumer_tag="placeholder")
    consume_ok.consumer_tag = name
    returned = commands.Basic.Return(
        reply_code=312, reply_text="NO_ROUTE", exchange="e", routing_key="r"
    )
    returned.exchange = name
    for method in (declare_ok, consume_ok, returned):
        _, value = unmarshal_one(encode_method(1, method))
        assert slots(value) == slots(method)


def test_encode_method_keeps_a_255_byte_reply_text() -> None:
    close = commands.Channel.Close(reply_code=406, reply_text="x" * 255, class_id=0, method_id=0)
    _, value = unmarshal_one(encode_method(1, close))
    assert value.reply_text == "x" * 255


# --- content headers --------------------------------------------------------------------------

# Wire order; the first eight are the ones peek_header walks through.
PROPERTY_VALUES: dict[str, object] = {
    "content_type": "application/json",
    "content_encoding": "gzip",
    "headers": {"x-match": "any", "n": 1, "nested": {"list": [1, "a", None]}, "ü": "日本"},
    "delivery_mode": 2,
    "priority": 7,
    "correlation_id": "corr-" + "c" * 200,
    "reply_to": "amq.rabbitmq.reply-to",
    "expiration": "60000",
    "message_id": "mid",
    "timestamp": datetime.datetime(2021, 5, 6, 7, 8, 9, tzinfo=datetime.UTC),
    "message_type": "type",
    "user_id": "guest",
    "app_id": "app",
}
PEEKED = list(PROPERTY_VALUES)[:8]
TRAILING = list(PROPERTY_VALUES)[8:]


def build_header(body_size: int, present: dict[str, object]) -> bytes:
    return payload_of(header.ContentHeader(0, body_size, commands.Basic.Properties(**present)))


def check_peek(payload: bytes, body_size: int, present: dict[str, object]) -> None:
    info = peek_header(payload)
    assert info.class_id == 60
    assert info.body_size == body_size
    assert info.delivery_mode == present.get("delivery_mode", 0)
    assert info.priority == present.get("priority")
    assert info.expiration == present.get("expiration")
    if "headers" in present:
        assert info.headers_raw is not None
        assert decode_headers(info.headers_raw) == present["headers"]
        # headers_raw is exactly the table as it appears on the wire
        assert info.headers_raw in payload
    else:
        assert info.headers_raw is None
        assert decode_headers(info.headers_raw) == {}


SUBSETS = [
    combo for size in range(len(PEEKED) + 1) for combo in itertools.combinations(PEEKED, size)
]


@pytest.mark.parametrize("subset", SUBSETS, ids=lambda s: "+".join(s) or "none")
@pytest.mark.parametrize("trailing", [False, True], ids=["alone", "with-trailing"])
def test_peek_header_every_property_combination(subset: tuple[str, ...], trailing: bool) -> None:
    present = {name: PROPERTY_VALUES[name] for name in subset}
    if trailing:
        present.update({name: PROPERTY_VALUES[name] for name in TRAILING})
    body_size = len(subset) * 1000 + 3
    check_peek(build_header(body_size, present), body_size, present)


@pytest.mark.parametrize("body_size", [0, 1, 2**32, 2**63, 2**64 - 1])
@pytest.mark.parametrize("delivery_mode", [1, 2])
@pytest.mark.parametrize("priority", [0, 9, 255])
@pytest.mark.parametrize("expiration", ["0", "1", "86400000", "é" * 10])
def test_peek_header_values(
    body_size: int, delivery_mode: int, priority: int, expiration: str
) -> None:
    present = {"delivery_mode": delivery_mode, "priority": priority, "expiration": expiration}
    check_peek(build_header(body_size, present), body_size, present)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"a": "b"},
        TABLE,
        {"deep": {"deeper": {"deepest": [[[], {}], "x" * 300]}}},
        {f"k{n}": n for n in range(200)},
    ],
    ids=["empty", "one", "all-types", "nested", "many"],
)
def test_peek_header_headers_table_round_trips(headers: dict[str, object]) -> None:
    present = {"content_type": "t", "headers": headers, "priority": 1, "app_id": "a"}
    payload = build_header(10, present)
    info = peek_header(payload)
    assert info.headers_raw is not None
    decoded = decode_headers(info.headers_raw)
    reference = header.ContentHeader()
    reference.unmarshal(payload)
    assert decoded == reference.properties.headers
    assert decoded.keys() == headers.keys()


def test_peek_header_on_a_non_basic_class_reports_it() -> None:
    payload = struct.pack(">HHQH", 70, 0, 12, 0)
    assert peek_header(payload).class_id == 70


@pytest.mark.parametrize(
    "subset",
    [("expiration",), ("headers", "expiration"), tuple(PEEKED), ("priority",), ("headers",)],
    ids=lambda s: "+".join(s),
)
def test_peek_header_truncated_raises(subset: tuple[str, ...]) -> None:
    present = {name: PROPERTY_VALUES[name] for name in subset}
    payload = build_header(5, present)
    peek_header(payload)
    for length in range(len(payload)):
        with pytest.raises(ContentHeaderError):
            peek_header(payload[:length])


def test_header_frame_round_trips_through_pamqp() -> None:
    present = {name: PROPERTY_VALUES[name] for name in PROPERTY_VALUES}
    payload = build_header(77, present)
    channel, value = unmarshal_one(header_frame(12, payload))
    assert channel == 12
    assert isinstance(value, header.ContentHeader)
    assert value.body_size == 77
    assert value.properties == commands.Basic.Properties(**present)


# --- body_frames ------------------------------------------------------------------------------


def body_cases() -> list[tuple[int, int]]:
    cases = []
    for frame_max in (4096, 4097, 131072):
        chunk = frame_max - 8
        for size in (0, 1, chunk - 1, chunk, chunk + 1, 2 * chunk, 2 * chunk + 1, 5 * chunk - 3):
            cases.append((frame_max, size))
    cases.append((131072, MIB + 13))
    cases.append((4096, MIB))
    return cases


@pytest.mark.parametrize(("frame_max", "size"), body_cases())
def test_body_frames_split_at_frame_max_and_reassemble(frame_max: int, size: int) -> None:
    data = bytes(random.Random(size).getrandbits(8) for _ in range(min(size, 4096)))
    data = (data * (size // max(len(data), 1) + 1))[:size]
    pieces = body_frames(7, data, frame_max)
    if not size:
        assert pieces == []
        return
    wire = b"".join(bytes(piece) for piece in pieces)
    frames = FrameReader(frame_max).feed(wire)  # raises if any frame exceeds frame_max
    chunk = frame_max - 8
    assert len(frames) == math.ceil(size / chunk)
    assert all(frame_type == FRAME_BODY and channel == 7 for frame_type, channel, _ in frames)
    assert all(len(payload) == chunk for _, _, payload in frames[:-1])
    assert b"".join(payload for _, _, payload in frames) == data
    # and pamqp, as a client would, reads the same bodies
    offset, received = 0, []
    while offset < len(wire):
        consumed, _, value = frame.unmarshal(wire[offset:])
        assert isinstance(value, body.ContentBody)
        received.append(value.value)
        offset += consumed
    assert b"".join(received) == data


def test_header_type_constant() -> None:
    assert FRAME_HEADER == 2
    assert FrameReader().feed(header_frame(1, build_header(0, {}))) == [
        (FRAME_HEADER, 1, build_header(0, {}))
    ]
