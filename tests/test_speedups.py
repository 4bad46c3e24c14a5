"""The compiled accelerator (amqpd._speedups) against its pure-Python twins, on the same inputs.

Each test feeds identical generated input (well-formed and mutated) to the compiled and the
pure function and requires identical results: the same values, or the same exception type
(and, for framing errors, the same reply text). Skipped where the extension was not built.
"""

from __future__ import annotations

import datetime
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pamqp import commands
from pamqp.header import ContentHeader

from amqpd.store import records as R
from amqpd.wire import content, frames, methods

speedups = pytest.importorskip("amqpd._speedups")

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class CompiledReader(speedups.FrameReader):
    """The compiled splitter with the wire module's error factory, whatever accel selected."""

    __slots__ = ()
    _frame_error = staticmethod(frames._frame_error)


def encode_frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    return frames.frame_head(frame_type, channel, len(payload)) + payload + frames.FRAME_END_BYTE


def outcome(function, *args):
    try:
        return ("ok", function(*args))
    except Exception as error:  # the type and text are what must match
        return ("error", type(error), str(getattr(error, "text", "")))


# ------------------------------------------------------------------------------ frames

frame = st.tuples(
    st.sampled_from([1, 2, 3, 8, 0, 7, 255]),
    st.integers(0, 65535),
    st.binary(max_size=300),
)


@st.composite
def frame_stream(draw):
    stream = b"".join(encode_frame(t, ch, payload) for t, ch, payload in draw(st.lists(frame)))
    if stream and draw(st.booleans()):  # damage one byte: bad end marker, odd sizes
        at = draw(st.integers(0, len(stream) - 1))
        stream = stream[:at] + bytes([draw(st.integers(0, 255))]) + stream[at + 1 :]
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    return stream, cuts


@SETTINGS
@given(frame_stream(), st.sampled_from([0, 8, 64, 200, 4096]))
def test_frame_reader_same_frames_and_errors(stream_cuts, frame_max):
    stream, cuts = stream_cuts
    pure, compiled = frames.PureFrameReader(frame_max), CompiledReader(frame_max)
    start = 0
    for cut in [*cuts, len(stream)]:
        piece = stream[start:cut]
        start = cut
        expected = outcome(pure.feed, piece)
        assert outcome(compiled.feed, piece) == expected
        if expected[0] == "error":
            return
        assert compiled.buffered == pure.buffered


def test_frame_reader_limits_are_settable_and_byte_at_a_time_works():
    good = encode_frame(3, 1, b"x" * 5000)
    compiled = CompiledReader()
    compiled.frame_max = 4096
    with pytest.raises(frames.FrameError) as raised:
        compiled.feed(good)
    with pytest.raises(frames.FrameError) as pure_raised:
        frames.PureFrameReader(4096).feed(good)
    assert raised.value.text == pure_raised.value.text
    reader = CompiledReader(0)
    got = []
    for i in range(len(good)):
        got += reader.feed(bytearray(good[i : i + 1]))
    assert got == [(3, 1, b"x" * 5000)] and reader.buffered == 0


# --------------------------------------------------------------------- merged publishes

PUBLISH = b"\x00\x3c\x00\x28"
ACK = b"\x00\x3c\x00\x50"


@st.composite
def publish_frames(draw):
    """Frame lists rich in publishes: whole ones, and ones with a wrong channel, type,
    short header, announced size or missing body, among other frames."""
    out = []
    for _ in range(draw(st.integers(0, 8))):
        channel = draw(st.sampled_from([1, 2]))
        body = draw(st.binary(max_size=20))
        size = len(body) + draw(st.sampled_from([0, 0, 0, 1, -1]))
        header = b"\x00\x3c\x00\x00" + struct.pack(">Q", max(0, size)) + b"\x00\x00"
        if draw(st.integers(0, 9)) == 0:
            header = header[: draw(st.integers(0, 13))]
        run = [
            (1, channel, PUBLISH + draw(st.binary(max_size=6))),
            (2, draw(st.sampled_from([channel] * 4 + [3])), header),
            (draw(st.sampled_from([3, 3, 3, 1])), draw(st.sampled_from([channel] * 4 + [3])), body),
        ]
        run = run[: draw(st.sampled_from([3, 3, 3, 2, 1]))]
        out += run
        if draw(st.booleans()):
            out.append(draw(frame))
        for _ in range(draw(st.sampled_from([0, 0, 1, 3]))):
            out.append((draw(st.sampled_from([1, 1, 1, 2])), channel, draw(acks)))
    return out


# basic.ack payloads: mostly single acks (which merge), some with other bits or lengths.
acks = st.builds(
    lambda tag, bits, cut: (ACK + struct.pack(">Q", tag) + bytes([bits]))[: 13 - cut],
    st.integers(0, 2**64 - 1),
    st.sampled_from([0, 0, 0, 1, 2]),
    st.sampled_from([0, 0, 0, 0, 1]),
)


@SETTINGS
@given(publish_frames())
def test_merge_publishes_same_items(frame_list):
    expected = frames.pure_merge_publishes(list(frame_list))
    merged = speedups.merge_publishes(frames.FRAME_PUBLISH, frames.FRAME_ACKS, list(frame_list))
    assert merged == expected
    # Expanding the merged items gives the input back.
    flat = []
    for item in expected:
        if item[0] == frames.FRAME_ACKS:
            assert 1 <= len(item[2]) <= frames.MAX_ACK_RUN
            flat += [(1, item[1], ack) for ack in frames.ack_payloads(item[2])]
        elif item[0] == frames.FRAME_PUBLISH:
            method, header, body = item[2]
            flat += [(1, item[1], method), (2, item[1], header)]
            flat += [(3, item[1], body)] if struct.unpack_from(">Q", header, 4)[0] else []
        else:
            flat.append(item)
    assert flat == frame_list


def test_merge_publishes_groups_runs_of_single_acks():
    def ack(tag, channel=1, bits=0):
        return (1, channel, ACK + struct.pack(">Q", tag) + bytes([bits]))

    long_run = [ack(tag) for tag in range(1, frames.MAX_ACK_RUN + 3)]
    for merge in (frames.pure_merge_publishes, frames.merge_publishes):
        assert merge([ack(1), ack(2), (8, 0, b""), ack(3), ack(4, bits=1), ack(5, channel=2)]) == [
            (frames.FRAME_ACKS, 1, [1, 2]),
            (8, 0, b""),
            (frames.FRAME_ACKS, 1, [3]),
            ack(4, bits=1),  # multiple=true: not merged
            (frames.FRAME_ACKS, 2, [5]),
        ]
        assert merge([ack(1), ack(2, channel=2)]) == [
            (frames.FRAME_ACKS, 1, [1]),
            (frames.FRAME_ACKS, 2, [2]),
        ]
        assert merge(long_run) == [
            (frames.FRAME_ACKS, 1, list(range(1, frames.MAX_ACK_RUN + 1))),
            (frames.FRAME_ACKS, 1, [frames.MAX_ACK_RUN + 1, frames.MAX_ACK_RUN + 2]),
        ]
        assert merge([ack(2**64 - 1)]) == [(frames.FRAME_ACKS, 1, [2**64 - 1])]


def test_merge_publishes_merges_whole_publishes_only():
    header = b"\x00\x3c\x00\x00" + struct.pack(">Q", 2) + b"\x00\x00"
    empty = b"\x00\x3c\x00\x00" + struct.pack(">Q", 0) + b"\x00\x00"
    whole = [(1, 1, PUBLISH + b"x"), (2, 1, header), (3, 1, b"hi")]
    for merge in (frames.pure_merge_publishes, frames.merge_publishes):
        assert merge(whole + [(8, 0, b"")]) == [
            (frames.FRAME_PUBLISH, 1, (PUBLISH + b"x", header, b"hi")),
            (8, 0, b""),
        ]
        assert merge([(1, 1, PUBLISH), (2, 1, empty)]) == [
            (frames.FRAME_PUBLISH, 1, (PUBLISH, empty, b""))
        ]
        split = [(1, 1, PUBLISH), (2, 1, header), (3, 1, b"h")]  # rest of the body to come
        assert merge(split) is split
        assert merge(whole[:2]) == whole[:2]


@SETTINGS
@given(
    st.binary(max_size=40),
    st.one_of(st.integers(-2, 2**64 + 2), st.just(2**64 - 1), st.booleans()),
    st.one_of(st.booleans(), st.integers(0, 2)),
    st.binary(max_size=40),
    st.one_of(st.binary(max_size=60), st.just(bytearray(b"xy"))),
)
def test_join_delivery_same_bytes_and_errors(prefix, tag, redelivered, suffix, content):
    expected = outcome(methods.pure_join_delivery, prefix, tag, redelivered, suffix, content)
    compiled = outcome(
        speedups.join_delivery,
        methods.pure_join_delivery,
        prefix,
        tag,
        redelivered,
        suffix,
        content,
    )
    assert compiled == expected


@SETTINGS
@given(
    st.binary(max_size=40),
    st.one_of(st.integers(-2, 2**64 + 2), st.just(2**64 - 1)),
    st.binary(max_size=40),
    st.one_of(st.integers(0, 3), st.just(0xFFFF), st.just(0x10000), st.just(-1)),
    st.binary(min_size=0, max_size=30),
    st.one_of(st.binary(max_size=60), st.just(b"x" * 4096), st.just(b"x" * 4097)),
    st.sampled_from([9, 20, 68, 4104, 131072]),
)
def test_deliver_small_same_bytes(prefix, tag, suffix, channel, header, body, frame_max):
    expected = methods.pure_deliver_small(prefix, tag, suffix, channel, header, body, frame_max)
    compiled = speedups.deliver_small(prefix, tag, suffix, channel, header, body, frame_max)
    assert compiled == expected
    fits = len(body) <= min(4096, frame_max - 8)
    if fits and 0 <= tag < 2**64 and 0 <= channel <= 0xFFFF:
        # The frames built piece by piece, joined.
        pieces, _ = content.pure_content_frames(channel, header, body, frame_max)
        joined = methods.pure_join_delivery(prefix, tag, False, suffix, b"".join(pieces))
        assert expected == joined
    else:
        assert expected is None


# ----------------------------------------------------------------------------- methods

compiled_decode = speedups.MethodDecoder(methods.pure_decode_method, methods.MethodSyntaxError)
hot_prefix = st.sampled_from(
    [b"\x00\x3c\x00\x28", b"\x00\x3c\x00\x50", b"\x00\x3c\x00\x5a", b"\x00\x3c\x00\x78"]
)


def decode_outcome(function, payload):
    try:
        return ("ok", function(payload))
    except methods.MethodSyntaxError as error:
        return ("syntax", error.index, error.payload)
    except Exception as error:
        return ("error", type(error))


@SETTINGS
@given(
    st.one_of(st.binary(max_size=40), st.builds(bytes.__add__, hot_prefix, st.binary(max_size=40)))
)
def test_decode_method_same_on_any_bytes(payload):
    assert decode_outcome(compiled_decode, payload) == decode_outcome(
        methods.pure_decode_method, payload
    )


@SETTINGS
@given(
    st.text(max_size=60),
    st.text(max_size=60),
    st.booleans(),
    st.booleans(),
    st.integers(0, 2**64 - 1),
    st.integers(0, 255),
)
def test_decode_method_same_on_well_formed_hot_methods(
    exchange, key, mandatory, immediate, tag, bits
):
    if len(exchange.encode()) > 255 or len(key.encode()) > 255:
        return
    publish = (
        b"\x00\x3c\x00\x28\x00\x00"
        + methods.shortstr(exchange)
        + methods.shortstr(key)
        + bytes([mandatory | immediate << 1])
    )
    for payload in (
        publish,
        publish[:-1],
        publish + b"\x00",
        b"\x00\x3c\x00\x50" + struct.pack(">QB", tag, bits),
        b"\x00\x3c\x00\x78" + struct.pack(">QB", tag, bits),
        b"\x00\x3c\x00\x5a" + struct.pack(">QB", tag, bits),
    ):
        expected = decode_outcome(methods.pure_decode_method, payload)
        assert decode_outcome(compiled_decode, payload) == expected
    expected_args = (exchange, key, mandatory, immediate)
    assert compiled_decode(publish) == (methods.BASIC_PUBLISH, expected_args)


def test_decode_method_cold_methods_fall_through():
    payload = b"\x00\x3c\x00\x0a" + struct.pack(">IHB", 0, 10, 0)  # basic.qos
    index, method = compiled_decode(payload)
    assert index == 0x003C000A and isinstance(method, commands.Basic.Qos)
    assert method.prefetch_count == 10
    with pytest.raises(methods.UnknownMethodError):
        compiled_decode(b"\x00\x3c\x03\x00")


# ---------------------------------------------------------------------- content headers


def compiled_peek(payload):
    return speedups.peek_header(content.HeaderInfo, content.ContentHeaderError, payload)


def peek_outcome(function, payload):
    try:
        result = function(payload)
    except content.ContentHeaderError:
        return ("error",)
    assert type(result) is content.HeaderInfo
    return ("ok", tuple(result))


short = st.text(max_size=20)
properties = st.fixed_dictionaries(
    {},
    optional={
        "content_type": short,
        "content_encoding": short,
        "headers": st.dictionaries(short, st.one_of(short, st.integers(-1000, 1000)), max_size=3),
        "delivery_mode": st.integers(1, 2),
        "priority": st.integers(0, 9),
        "correlation_id": short,
        "reply_to": short,
        "expiration": st.integers(0, 10**6).map(str),
        "message_id": short,
        "timestamp": st.datetimes(
            min_value=datetime.datetime(1971, 1, 1), max_value=datetime.datetime(2100, 1, 1)
        ),
        "message_type": short,
        "user_id": short,
        "app_id": short,
    },
)


@SETTINGS
@given(properties, st.integers(0, 2**40), st.data())
def test_peek_header_same_on_encoded_and_damaged_headers(props, body_size, data):
    payload = ContentHeader(0, body_size, commands.Basic.Properties(**props)).marshal()
    expected = peek_outcome(content.pure_peek_header, payload)
    assert expected[0] == "ok"
    assert peek_outcome(compiled_peek, payload) == expected
    cut = data.draw(st.integers(0, len(payload)))
    damaged = payload[:cut]
    if payload and data.draw(st.booleans()):
        at = data.draw(st.integers(0, len(payload) - 1))
        damaged = payload[:at] + bytes([data.draw(st.integers(0, 255))]) + payload[at + 1 :]
    assert peek_outcome(compiled_peek, damaged) == peek_outcome(content.pure_peek_header, damaged)


@SETTINGS
@given(st.binary(max_size=80))
def test_peek_header_same_on_any_bytes(payload):
    assert peek_outcome(compiled_peek, payload) == peek_outcome(content.pure_peek_header, payload)


# ------------------------------------------------------------------------- store records

names = st.text(max_size=12)


@SETTINGS
@given(
    st.integers(0, 2**64 - 1),
    st.dictionaries(names, st.booleans(), max_size=5),
    names,
    names,
    st.binary(max_size=64),
    st.binary(max_size=300),
    st.booleans(),
)
def test_encode_publish_same_bytes_and_cache(mid, queues, exchange, key, header, body, cached):
    pure_strings: dict[str, bytes] | None = {} if cached else None
    compiled_strings: dict[str, bytes] | None = {} if cached else None
    expected = R.pure_encode_publish(mid, queues, exchange, key, header, body, pure_strings)
    got = speedups.encode_publish(mid, queues, exchange, key, header, body, compiled_strings)
    assert got == expected
    assert got[2] is body
    assert compiled_strings == pure_strings


def test_encode_publish_cache_stays_bounded_like_the_pure_one():
    pure_strings: dict[str, bytes] = {}
    compiled_strings: dict[str, bytes] = {}
    for i in range(5000):
        R.pure_encode_publish(i, {"q": True}, "x", f"k{i}", b"h", b"b", pure_strings)
        speedups.encode_publish(i, {"q": True}, "x", f"k{i}", b"h", b"b", compiled_strings)
    assert compiled_strings == pure_strings and len(pure_strings) <= 4096


@SETTINGS
@given(st.sampled_from([R.DELIVERED, R.REMOVED]), names, st.integers(0, 2**64 - 1))
def test_encode_ref_same_bytes(rtype, queue, mid):
    encoded = R.encoded_str({}, queue)
    assert speedups.encode_ref(rtype, encoded, mid) == R.pure_encode_ref(rtype, encoded, mid)


@SETTINGS
@given(st.binary(max_size=2000), st.integers(0, 2**32 - 1))
def test_crc32_is_zlibs(data, start):
    assert speedups.crc32(data, start) == zlib.crc32(data, start)


def test_crc32_of_a_large_buffer_is_zlibs():
    data = bytes(range(256)) * 1024 + b"tail"  # above the size checksummed without the GIL
    assert speedups.crc32(data) == zlib.crc32(data)
    record = speedups.encode_publish(1, {"q": False}, "", "q", b"h", data)
    assert record == R.pure_encode_publish(1, {"q": False}, "", "q", b"h", data)


# ---------------------------------------------------------------------------- deliveries


@SETTINGS
@given(
    st.integers(0, 65535),
    st.binary(max_size=40),
    st.one_of(st.binary(max_size=300), st.integers(0, 20000).map(lambda n: b"b" * n)),
    st.sampled_from([4096, 5000, 131072]),
)
def test_content_frames_same_bytes_and_size(channel, header, body, frame_max):
    pieces, size = speedups.content_frames(
        content.pure_content_frames, channel, header, body, frame_max
    )
    pure_pieces, pure_size = content.pure_content_frames(channel, header, body, frame_max)
    assert b"".join(pieces) == b"".join(pure_pieces)
    assert size == pure_size == sum(map(len, pieces))
    reader = frames.PureFrameReader()
    split = reader.feed(b"".join(pieces))
    assert split[0] == (frames.FRAME_HEADER, channel, header)
    assert b"".join(p for _, _, p in split[1:]) == body
