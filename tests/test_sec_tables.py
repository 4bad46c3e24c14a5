"""Field tables from clients: decoded without recursion, in linear time, depth bounded (10.3).

Unit tests compare `wire.tables.decode_table` with pamqp's decoder on generated tables and
check its refusals; behaviour tests send deeply nested tables where clients can put them
(start-ok client properties, queue.declare arguments, message headers on a headers exchange)
and expect one clean 501 connection.close and a short log, while shallow ones keep working.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands, decode, encode

from amqpd.wire.tables import MAX_DEPTH, TableError, TableTooDeep, decode_table
from tests import rawamqp
from tests.broker_process import BrokerProcess, external_broker
from tests.sec_broker import log_since, own_broker

TOO_DEEP = f"FRAME_ERROR - field tables nested deeper than {MAX_DEPTH} levels"


def nested(depth: int, kind: str = "F") -> bytes:
    """A table holding `depth` levels of nested tables (or arrays) below it (linear time)."""
    heads: list[bytes] = []
    size = 4  # the innermost empty table
    for level in range(depth):  # from the inside out
        head = b"A" if kind == "A" and level < depth - 1 else rawamqp.short_str("k") + kind.encode()
        heads.append(struct.pack(">I", size + len(head)) + head)
        size += 4 + len(head)
    return b"".join(reversed(heads)) + b"\x00\x00\x00\x00"


# -- unit: the decoder ------------------------------------------------------------------

_keys = st.text(max_size=8).filter(lambda key: len(key.encode()) < 256)
_scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.text(max_size=20),
    st.binary(max_size=20).map(bytearray),
    st.floats(width=32, allow_nan=False, allow_infinity=False),
    st.none(),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=4)),
    max_leaves=30,
)


@given(st.dictionaries(_keys, _values, max_size=6))
@settings(max_examples=100, deadline=None)
def test_decodes_like_pamqp(table: dict) -> None:
    raw = encode.field_table(table)
    assert decode_table(raw) == decode.field_table(raw)
    assert decode_table(b"xx" + raw, 2) == (2 + len(raw), decode.field_table(raw)[1])


def test_depth_limit() -> None:
    assert decode_table(nested(MAX_DEPTH - 1))[0] == len(nested(MAX_DEPTH - 1))
    for kind in "FA":
        with pytest.raises(TableTooDeep):
            decode_table(nested(MAX_DEPTH, kind))
    with pytest.raises(TableTooDeep):
        decode_table(nested(100_000))


def test_deep_and_wide_tables_are_fast() -> None:
    wide = b"".join(rawamqp.short_str(f"k{i}") + b"t\x01" for i in range(30_000))
    started = time.perf_counter()
    _end, table = decode_table(struct.pack(">I", len(wide)) + wide)
    with pytest.raises(TableTooDeep):
        decode_table(nested(30_000))
    assert len(table) == 30_000
    assert time.perf_counter() - started < 1.0  # pamqp's decoder copies the rest per value


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\x00",
        b"\x00\x00\x00\x05\x01kZ\x00\x00",  # unknown type
        b"\x00\x00\x00\x03\x01kS",  # string size missing
        b"\x00\x00\x00\x08\x01kS\x00\x00\x00\x09",  # string longer than the table
        b"\x00\x00\x00\x03\x05abc",  # name longer than the table
        b"\x00\x00\x00\x04\x01kI\x00",  # integer overruns the table
        b"\x00\x00\x00\x09\x01kF\x00\x00\x00\x09\x00",  # nested table longer than its parent
        b"\x00\x00\x00\x04\x02\xff\xfeV",  # name not UTF-8
        b"\x00\x00\x01\x00",  # size beyond the data
    ],
)
def test_malformed_tables_raise_table_error(raw: bytes) -> None:
    with pytest.raises(TableError):
        decode_table(raw)


# -- behaviour: a real broker ----------------------------------------------------------


@pytest.fixture(scope="module")
def proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    if external_broker() is not None:
        pytest.skip("RabbitMQ accepts any depth; the bound is amqpd's")
    with own_broker(tmp_path_factory.mktemp("tables")) as proc:
        yield proc


def _expect_too_deep(conn: rawamqp.RawConnection, class_id: int, method_id: int) -> None:
    closed = conn.wait_close()
    assert (closed.level, closed.reply_code, closed.reply_text) == ("connection", 501, TOO_DEEP)
    assert (closed.class_id, closed.method_id) == (class_id, method_id)
    conn.close_ok_then_eof()


def _clean_log(lines: list[str]) -> None:
    assert not any("Traceback" in line or "INTERNAL_ERROR" in line for line in lines), lines
    lines = [line for line in lines if " amqpd.server: " not in line]  # startup, alarms
    # Each connection's accepted / authenticated / closed lines are logged at INFO by design.
    lines = [line for line in lines if " INFO amqpd.connection: " not in line]
    lines = [line for line in lines if " amqpd.mgmt: " not in line]  # its listeners start late
    assert len(lines) <= 3 and sum(map(len, lines)) < 1500, lines


def test_deep_queue_arguments(proc: BrokerProcess) -> None:
    for depth, refused in ((20, False), (MAX_DEPTH, True), (15_000, True)):
        mark = len(proc.log_lines)
        with rawamqp.connect(proc.host, proc.port) as conn:
            conn.open_channel(1)
            arguments = b"\x00\x00" + rawamqp.short_str(f"deep-{depth}") + b"\x08"
            payload = rawamqp.method_payload(50, 10, arguments + nested(depth))
            conn.send_bytes(rawamqp.raw_frame(1, 1, payload[:131000]))
            if refused:
                _expect_too_deep(conn, 50, 10)
            else:
                assert conn.expect(commands.Queue.DeclareOk).queue == f"deep-{depth}"
        _clean_log(log_since(proc, mark))


def test_deep_client_properties(proc: BrokerProcess) -> None:
    mark = len(proc.log_lines)
    with rawamqp.RawConnection(proc.host, proc.port) as conn:
        conn.send_bytes(rawamqp.PROTOCOL_HEADER)
        conn.expect(commands.Connection.Start)
        response = encode.long_string("\0guest\0guest")
        arguments = nested(MAX_DEPTH) + rawamqp.short_str("PLAIN") + response
        arguments += rawamqp.short_str("en_US")
        conn.send_bytes(rawamqp.raw_frame(1, 0, rawamqp.method_payload(10, 11, arguments)))
        _expect_too_deep(conn, 10, 11)
    _clean_log(log_since(proc, mark))


def test_deep_message_headers_on_headers_exchange(proc: BrokerProcess) -> None:
    mark = len(proc.log_lines)
    with rawamqp.connect(proc.host, proc.port) as conn:
        conn.open_channel(1)
        conn.send(1, commands.Queue.Declare(queue="", exclusive=True))
        queue = conn.expect(commands.Queue.DeclareOk).queue
        conn.send(1, commands.Queue.Bind(queue=queue, exchange="amq.headers", arguments={}))
        conn.expect(commands.Queue.BindOk)
        for headers, ok in ((nested(5), True), (nested(MAX_DEPTH), False)):
            conn.send(1, commands.Basic.Publish(exchange="amq.headers"))
            props = struct.pack(">HHQH", 60, 0, 1, 1 << 13) + headers
            conn.send_bytes(rawamqp.raw_frame(2, 1, props) + rawamqp.raw_frame(3, 1, b"x"))
            if ok:
                conn.send(1, commands.Basic.Get(queue=queue, no_ack=True))
                conn.expect(commands.Basic.GetOk)
                conn.recv_frame()
                conn.recv_frame()
            else:
                closed = conn.wait_close()
                assert (closed.reply_code, closed.class_id, closed.method_id) == (501, 60, 40)
                assert closed.reply_text == "FRAME_ERROR - headers table: " + TOO_DEEP[14:]
                conn.close_ok_then_eof()
    _clean_log(log_since(proc, mark))


def test_malformed_headers_table_is_a_clean_close(proc: BrokerProcess, tmp_path: Path) -> None:
    mark = len(proc.log_lines)
    with rawamqp.connect(proc.host, proc.port) as conn:
        conn.open_channel(1)
        conn.send(1, commands.Queue.Declare(queue="", exclusive=True))
        queue = conn.expect(commands.Queue.DeclareOk).queue
        conn.send(1, commands.Queue.Bind(queue=queue, exchange="amq.headers"))
        conn.expect(commands.Queue.BindOk)
        conn.send(1, commands.Basic.Publish(exchange="amq.headers"))
        props = struct.pack(">HHQH", 60, 0, 1, 1 << 13) + b"\x00\x00\x00\x03\x01kZ"
        conn.send_bytes(rawamqp.raw_frame(2, 1, props) + rawamqp.raw_frame(3, 1, b"x"))
        closed = conn.wait_close()
        assert (closed.level, closed.reply_code) == ("connection", 501)
        assert closed.reply_text.startswith("FRAME_ERROR - headers table: ")
        conn.close_ok_then_eof()
    _clean_log(log_since(proc, mark))


def test_durable_arguments_of_any_decodable_value_survive_a_restart(tmp_path: Path) -> None:
    """Values pamqp's encoder mangles or refuses (a double beyond float32, a long string that
    is not UTF-8, a 200-byte field name) are stored as received: no crash of the store, and
    the same declaration is still equivalent after a restart."""
    if external_broker() is not None:
        pytest.skip("restarts amqpd")
    entries = [
        rawamqp.short_str("big") + b"d" + struct.pack(">d", -2.6e40),
        rawamqp.short_str("raw") + b"S" + struct.pack(">I", 2) + b"\xff\xfe",
        rawamqp.short_str("n" * 200) + b"A" + struct.pack(">I", 9) + b"d" + struct.pack(">d", 0.1),
    ]
    body = b"".join(entries)
    table = struct.pack(">I", len(body)) + body
    declare = rawamqp.method_payload(50, 10, b"\x00\x00" + rawamqp.short_str("sec-args") + b"\x02")
    for _round in range(2):
        with own_broker(tmp_path / "data") as proc:
            with rawamqp.connect(proc.host, proc.port) as conn:
                conn.open_channel(1)
                conn.send_bytes(rawamqp.raw_frame(1, 1, declare + table))
                assert conn.expect(commands.Queue.DeclareOk).queue == "sec-args"
            _clean_log([line for line in log_since(proc, 0) if " amqpd.store" not in line])
