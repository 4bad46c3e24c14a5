"""Malformed and oversized frames get a 501 connection.close and one short log line (10.2, 10.4).

Before connection.tune-ok a client may send frames of at most 4096 bytes (AMQP's frame-min
size, as RabbitMQ enforces); a bigger one, or a frame whose end octet is wrong, is answered
with `501 FRAME_ERROR` quoting at most 16 octets (RabbitMQ drops the socket silently before
login: a deliberate difference), never buffered whole and never logged in full. A start-ok
that does not decode must not leak the password into the log.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest
from pamqp import commands, encode

from tests import rawamqp
from tests.broker_process import BrokerProcess, external_broker
from tests.conftest import BrokerAddress
from tests.sec_broker import log_since, own_broker


def _same(text: str) -> str:
    """RabbitMQ pretty-prints long terms over two lines; compare without that whitespace."""
    return re.sub(r",\n\s*", ",", text)


@pytest.fixture(scope="module")
def proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    if external_broker() is not None:
        pytest.skip("RabbitMQ drops such sockets before login without a close")
    with own_broker(tmp_path_factory.mktemp("frames")) as proc:
        yield proc


def _after_header(proc: BrokerProcess) -> rawamqp.RawConnection:
    conn = rawamqp.RawConnection(proc.host, proc.port)
    conn.send_bytes(rawamqp.PROTOCOL_HEADER)
    conn.expect(commands.Connection.Start)
    return conn


def _closed_with(conn: rawamqp.RawConnection, text: str) -> None:
    closed = conn.wait_close()
    assert (closed.level, closed.reply_code) == ("connection", 501)
    assert _same(closed.reply_text) == text
    conn.close_ok_then_eof()


def _short_log(lines: list[str], connections: int = 1) -> None:
    assert not any("Traceback" in line for line in lines), lines
    lines = [line for line in lines if " amqpd.server: " not in line]  # startup, alarms
    # Each connection's accepted / closed lines are logged at INFO by design.
    lines = [line for line in lines if " INFO amqpd.connection: " not in line]
    lines = [line for line in lines if " amqpd.mgmt: " not in line]  # its listeners start late
    assert len(lines) <= connections, lines
    assert all(len(line) < 300 for line in lines), lines


def test_oversized_frame_before_login(proc: BrokerProcess) -> None:
    mark = len(proc.log_lines)
    with _after_header(proc) as conn:
        conn.send_bytes(struct.pack(">BHI", 1, 0, 131_004) + b"\x01" * 131_004 + b"\x00")
        _closed_with(conn, "FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,131004,4088}")
    _short_log(log_since(proc, mark))


def _start_ok_payload(pad: int) -> bytes:
    start_ok = commands.Connection.StartOk(
        client_properties={"pad": "x" * pad},
        mechanism="PLAIN",
        response="\0guest\0guest",
        locale="en_US",
    )
    return struct.pack(">HH", 10, 11) + start_ok.marshal()


def test_frame_of_4096_bytes_is_allowed_before_tune(proc: BrokerProcess) -> None:
    pad = 4096 - len(_start_ok_payload(0))
    payload = _start_ok_payload(pad)
    assert len(payload) == 4096
    with _after_header(proc) as conn:
        conn.send_bytes(rawamqp.raw_frame(1, 0, payload))
        conn.expect(commands.Connection.Tune)
    with _after_header(proc) as conn:
        conn.send_bytes(rawamqp.raw_frame(1, 0, _start_ok_payload(pad + 1)))
        _closed_with(conn, "FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,4097,4088}")


def test_bad_frame_end_before_login(proc: BrokerProcess) -> None:
    mark = len(proc.log_lines)
    with _after_header(proc) as conn:
        conn.send_bytes(struct.pack(">BHI", 1, 0, 50) + b"a" * 50 + b"\x00")
        _closed_with(
            conn,
            'FRAME_ERROR - type 1, first 16 octets = <<"aaaaaaaaaaaaaaaa">>: '
            "{invalid_frame_end_marker,0}",
        )
    _short_log(log_since(proc, mark))


def test_undecodable_start_ok_does_not_log_the_password(proc: BrokerProcess) -> None:
    mark = len(proc.log_lines)
    password = "s3cr3t-pw"
    with _after_header(proc) as conn:
        arguments = encode.field_table({}) + rawamqp.short_str("PLAIN")
        # a locale cut short, after enough bytes that the reply text is cut at 255 bytes
        arguments += encode.long_string(f"\0guest\0{password}") + b"\xc8" + b"e" * 150
        conn.send_bytes(rawamqp.raw_frame(1, 0, rawamqp.method_payload(10, 11, arguments)))
        closed = conn.wait_close()
        assert (closed.reply_code, closed.class_id, closed.method_id) == (501, 10, 11)
        assert closed.reply_text.startswith("FRAME_ERROR - cannot decode <<")
        assert closed.reply_text.endswith("...") and len(closed.reply_text) == 255
        conn.close_ok_then_eof()
    lines = log_since(proc, mark)
    _short_log(lines)
    decimal = ",".join(str(octet) for octet in password.encode())
    assert not any(password in line or decimal in line for line in lines), lines


def test_flood_of_bad_frames_keeps_the_log_small(proc: BrokerProcess) -> None:
    mark = len(proc.log_lines)
    stop = time.monotonic() + 2.0
    sent = [0]

    def flood() -> None:
        frame = struct.pack(">BHI", 1, 0, 131_004) + b"\x02" * 131_004 + b"\x00"
        while time.monotonic() < stop:
            with socket.create_connection((proc.host, proc.port)) as sock:
                try:
                    sock.sendall(rawamqp.PROTOCOL_HEADER + frame)
                    sock.recv(4096)
                except OSError:
                    pass
            sent[0] += 1

    threads = [threading.Thread(target=flood) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = log_since(proc, mark, settle=0.5)
    assert sent[0] > 10
    assert not any("Traceback" in line for line in lines)
    assert sum(len(line) + 1 for line in lines) < 300 * sent[0]


# -- after login: the same texts as RabbitMQ -------------------------------------------


@pytest.fixture
def raw(broker: BrokerAddress) -> Iterator[rawamqp.RawConnection]:
    conn = rawamqp.connect(broker.host, broker.port)
    conn.open_channel(1)
    yield conn
    conn.close()


def test_bad_frame_end_after_login_quotes_16_octets(raw: rawamqp.RawConnection) -> None:
    raw.send_bytes(struct.pack(">BHI", 1, 1, 100) + bytes(range(100)) + b"\x00")
    octets = ",".join(str(octet) for octet in range(16))
    _closed_with(
        raw, f"FRAME_ERROR - type 1, first 16 octets = <<{octets}>>: {{invalid_frame_end_marker,0}}"
    )


def test_unknown_frame_type_quotes_16_octets(raw: rawamqp.RawConnection) -> None:
    raw.send_bytes(struct.pack(">BHI", 9, 0, 40) + b"a" * 40 + b"\xce")
    _closed_with(
        raw, 'FRAME_ERROR - type 9, first 16 octets = <<"aaaaaaaaaaaaaaaa">>: unknown_frame'
    )


def test_client_text_cannot_forge_log_lines(proc: BrokerProcess) -> None:
    mark = len(proc.log_lines)
    with rawamqp.RawConnection(proc.host, proc.port) as conn:
        conn.start()
        conn.tune()
        conn.send(0, commands.Connection.Open(virtual_host="x\n2099-01-01 00:00:00,000 ERROR"))
        assert conn.wait_close().reply_code == 530
        conn.close_ok_then_eof()
    lines = log_since(proc, mark, until="2099-01-01")
    assert any("2099-01-01" in line for line in lines), lines  # logged, escaped
    assert not any(line.startswith("2099") for line in lines), lines
    with rawamqp.RawConnection(proc.host, proc.port) as conn:
        conn.send_bytes(rawamqp.PROTOCOL_HEADER)
        conn.expect(commands.Connection.Start)
        start_ok = commands.Connection.StartOk(
            mechanism="X\nforged " + "m" * 200, response="\0guest\0guest", locale="en_US"
        )
        conn.send(0, start_ok)
        conn.expect_eof()
    lines = log_since(proc, mark)
    assert not any(line.startswith("forged") for line in lines), lines
    _short_log(lines, connections=2)
