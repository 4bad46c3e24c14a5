"""Every frame amqpd sends, compared byte for byte with RabbitMQ's for the same request.

Each scenario drives the broker with a raw-socket client and collects the frames it sends
back. They are compared, field by field, with RabbitMQ 3.x's frames for the same scenario,
recorded once in `tests/fixtures/rabbitmq_replies.json`, so the test needs no RabbitMQ. Only
fields that legitimately differ are skipped, each named where the scenario reads it
(generated names, server properties). Names used by a scenario carry a random token of
fixed length, stored as `@@@@@@@@` so the recorded bytes do not depend on it.

Re-record against a live RabbitMQ (guest/guest, vhost /):

    AMQPD_RECORD_WIRE=1 AMQPD_TEST_URL=127.0.0.1:5673 \
        .venv/bin/python -m pytest -q tests/test_wire_bytes.py

With AMQPD_TEST_URL alone the live RabbitMQ is compared with the fixture.

Not driven over the socket: connection.blocked/unblocked (amqpd sends them on a full disk,
RabbitMQ on a resource alarm; neither can be raised cheaply on a shared broker) and
basic.nack from confirms (amqpd has no reason to nack; RabbitMQ's is recorded through an
`x-overflow: reject-publish` queue): those encoders are compared without a socket.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pamqp import body, commands, constants, header
from pamqp.base import Frame

from amqpd.wire.methods import encode_confirm, encode_method
from tests import rawamqp
from tests.broker_process import external_broker
from tests.conftest import BrokerAddress

FIXTURE = Path(__file__).parent / "fixtures" / "rabbitmq_replies.json"
RECORDING = os.environ.get("AMQPD_RECORD_WIRE") == "1"
PLACEHOLDER = b"@@@@@@@@"
ACCESS_REQUEST = b"\x00\x1e\x00\x0a\x01/\x1c"  # access.request, realm "/", active+read
ACCESS_REQUEST_OK = 0x001E000B
CAPABILITIES = {
    "authentication_failure_close": True,
    "consumer_cancel_notify": True,
    "connection.blocked": True,
    "publisher_confirms": True,
    "basic.nack": True,
}


# -- frames split into named fields ---------------------------------------------------------


@dataclass
class Received:
    """One frame as received (token replaced) and the fields a scenario may not compare."""

    raw: bytes
    skip: frozenset[str] = frozenset()


def frame_fields(raw: bytes) -> list[tuple[str, bytes]]:
    """A frame cut into (name, bytes) pieces: the frame head, then for a method frame its
    class/method ids and each argument (consecutive bits share one octet), else the payload."""
    frame_type, channel, size = struct.unpack_from(">BHI", raw)
    head = [("frame", raw[:3]), ("end", raw[-1:])]
    tail = [("size", raw[3:7])]  # last: a wrong size is better explained by the field
    payload = raw[7:-1]
    assert len(payload) == size, f"frame size {size} but {len(payload)} payload bytes"
    if frame_type != constants.FRAME_METHOD:
        return [*head, ("payload", payload), *tail]
    fields = [*head, ("method", payload[:4])]
    class_id, method_id = struct.unpack_from(">HH", payload)
    method_class = commands.INDEX_MAPPING.get(class_id << 16 | method_id)
    if method_class is None:  # access.request-ok: pamqp does not know it
        return [*fields, ("arguments", payload[4:]), *tail]
    offset, bits = 4, []
    names = list(method_class.__slots__)
    for index, name in enumerate(names):
        data_type = method_class.amqp_type(name)
        if data_type == "bit":
            bits.append(name)
            last = index + 1 == len(names) or method_class.amqp_type(names[index + 1]) != "bit"
            if last:
                fields.append((",".join(bits), payload[offset : offset + 1]))
                offset, bits = offset + 1, []
            continue
        if data_type == "shortstr":
            width = 1 + payload[offset]
        elif data_type in ("longstr", "table"):
            width = 4 + struct.unpack_from(">I", payload, offset)[0]
        else:
            width = {"octet": 1, "short": 2, "long": 4, "longlong": 8}[data_type]
        fields.append((name, payload[offset : offset + width]))
        offset += width
    assert offset == len(payload), f"{len(payload) - offset} trailing bytes in {raw.hex()}"
    return fields + tail


def describe(raw: bytes) -> str:
    frame_type, channel, _ = struct.unpack_from(">BHI", raw)
    if frame_type == constants.FRAME_METHOD:
        class_id, method_id = struct.unpack_from(">HH", raw, 7)
        method_class = commands.INDEX_MAPPING.get(class_id << 16 | method_id)
        name = method_class.name if method_class else f"{class_id}/{method_id}"
        return f"{name} on channel {channel}"
    return f"frame type {frame_type} on channel {channel}"


def assert_same_frame(ours: Received, theirs: bytes) -> None:
    """Field-by-field equality, except the fields `ours.skip` names (and then the size)."""
    mine = frame_fields(ours.raw)
    reference = frame_fields(theirs)
    what = describe(theirs)
    assert [name for name, _ in mine] == [name for name, _ in reference], what
    for (name, value), (_, expected) in zip(mine, reference, strict=True):
        if name in ours.skip or (name == "size" and ours.skip):
            continue
        assert value == expected, (
            f"{what}: field {name} is {value.hex()} ({value!r}), RabbitMQ sends "
            f"{expected.hex()} ({expected!r})"
        )


# -- the raw client the scenarios drive -----------------------------------------------------


class Wire:
    """A raw connection that keeps every frame the broker sends in `received`."""

    def __init__(self, broker: BrokerAddress) -> None:
        self.token = secrets.token_hex(4).encode()
        self.conn = rawamqp.RawConnection(broker.host, broker.port)
        self.received: list[Received] = []

    def name(self, stem: str) -> str:
        """A per-run unique name (queue, exchange, tag) that records as a fixed one."""
        return f"w14-{stem}-{self.token.decode()}"

    def send(self, channel: int, method: Frame) -> None:
        self.conn.send(channel, method)

    def publish(self, channel: int, routing_key: str, content: bytes, **options: Any) -> None:
        mandatory = options.pop("mandatory", False)
        exchange = options.pop("exchange", "")
        self.send(
            channel,
            commands.Basic.Publish(
                exchange=exchange, routing_key=routing_key, mandatory=mandatory
            ),
        )
        properties = commands.Basic.Properties(**options)
        self.conn.send(channel, header.ContentHeader(0, len(content), properties))
        if content:
            self.conn.send(channel, body.ContentBody(content))

    def expect(self, count: int, skip: frozenset[str] = frozenset()) -> None:
        """Read `count` frames; frames on different channels may interleave, so they are
        kept ordered by channel (stable: each channel's own order is what counts)."""
        frames = [self._read_frame() for _ in range(count)]
        frames.sort(key=lambda raw: struct.unpack_from(">H", raw, 1)[0])
        self.received += [Received(raw, skip) for raw in frames]

    def _read_frame(self) -> bytes:
        head = self.conn.recv_bytes(7)
        (size,) = struct.unpack_from(">I", head, 3)
        return (head + self.conn.recv_bytes(size + 1)).replace(self.token, PLACEHOLDER)

    def handshake(self, record: bool = False, heartbeat: int = 0) -> None:
        start = len(self.received)
        self.conn.send_bytes(rawamqp.PROTOCOL_HEADER)
        self.expect(1, skip=frozenset({"server_properties"}))
        self.send(
            0,
            commands.Connection.StartOk(
                client_properties={"product": "w14", "capabilities": CAPABILITIES},
                mechanism="PLAIN",
                response="\0guest\0guest",
            ),
        )
        self.expect(1)
        self.send(0, commands.Connection.TuneOk(2047, 131072, heartbeat))
        self.send(0, commands.Connection.Open(virtual_host="/"))
        self.expect(1)
        if not record:
            del self.received[start:]

    def open(self, *channels: int) -> None:
        for number in channels:
            self.send(number, commands.Channel.Open())
            self.expect(1)

    def close(self) -> None:
        self.conn.close()


# -- scenarios: one per group of replies ----------------------------------------------------


def connection_handshake(wire: Wire) -> None:
    wire.handshake(record=True)
    wire.send(0, commands.Connection.Close(200, "bye", 0, 0))
    wire.expect(1)


def heartbeat_frame(wire: Wire) -> None:
    wire.handshake(heartbeat=1)
    wire.expect(1)


def login_refused(wire: Wire) -> None:
    wire.conn.send_bytes(rawamqp.PROTOCOL_HEADER)
    wire.expect(1, skip=frozenset({"server_properties"}))
    wire.send(
        0,
        commands.Connection.StartOk(
            client_properties={"capabilities": CAPABILITIES},
            mechanism="PLAIN",
            response="\0guest\0wrong",
        ),
    )
    wire.expect(1)


def connection_error(wire: Wire) -> None:
    wire.handshake()
    wire.send(1, commands.Basic.Qos())
    wire.expect(1)
    wire.send(0, commands.Connection.CloseOk())


def channel_lifecycle(wire: Wire) -> None:
    wire.handshake()
    wire.open(1, 65535)
    wire.send(1, commands.Channel.Flow(active=True))
    wire.expect(1)
    wire.send(1, commands.Channel.Close(200, "", 0, 0))
    wire.expect(1)
    wire.open(2)
    wire.conn.send_bytes(rawamqp.raw_frame(1, 2, ACCESS_REQUEST))
    wire.expect(1)  # access.request-ok


def channel_error(wire: Wire) -> None:
    wire.handshake()
    wire.open(1)
    wire.send(1, commands.Queue.Declare(queue=wire.name("missing"), passive=True))
    wire.expect(1)
    wire.send(1, commands.Channel.CloseOk())
    wire.open(1)
    wire.send(1, commands.Exchange.Declare(exchange="amq.w14", exchange_type="direct"))
    wire.expect(1)  # 403: reserved prefix
    wire.send(1, commands.Channel.CloseOk())
    wire.open(1)


def exchanges(wire: Wire) -> None:
    wire.handshake()
    wire.open(1)
    source, destination = wire.name("src"), wire.name("dst")
    wire.send(1, commands.Exchange.Declare(exchange=source, exchange_type="topic"))
    wire.send(1, commands.Exchange.Declare(exchange=destination, exchange_type="fanout"))
    wire.expect(2)
    wire.send(1, commands.Exchange.Bind(destination=destination, source=source, routing_key="#"))
    wire.send(1, commands.Exchange.Unbind(destination=destination, source=source, routing_key="#"))
    wire.send(1, commands.Exchange.Delete(exchange=source))
    wire.send(1, commands.Exchange.Delete(exchange=destination))
    wire.expect(4)


def queues(wire: Wire) -> None:
    wire.handshake()
    wire.open(1)
    queue = wire.name("q")
    wire.send(1, commands.Queue.Declare(queue=queue))
    wire.expect(1)
    wire.send(1, commands.Queue.Declare(queue="", exclusive=True))
    wire.expect(1, skip=frozenset({"queue"}))  # a generated amq.gen-... name
    wire.send(1, commands.Queue.Bind(queue=queue, exchange="amq.direct", routing_key="k"))
    wire.send(1, commands.Queue.Unbind(queue=queue, exchange="amq.direct", routing_key="k"))
    wire.send(1, commands.Confirm.Select())
    wire.expect(3)
    for content in (b"one", b"two", b"three"):
        wire.publish(1, queue, content)
        wire.expect(1)  # basic.ack
    wire.send(1, commands.Queue.Declare(queue=queue, passive=True))
    wire.send(1, commands.Queue.Purge(queue=queue))
    wire.expect(2)
    wire.publish(1, queue, b"four")
    wire.expect(1)
    wire.send(1, commands.Queue.Delete(queue=queue))
    wire.expect(1)


def consume_and_deliver(wire: Wire) -> None:
    wire.handshake()
    wire.open(1)
    queue, tag = wire.name("q"), wire.name("tag")
    wire.send(1, commands.Queue.Declare(queue=queue, auto_delete=True))
    wire.send(1, commands.Basic.Qos(prefetch_count=10))
    wire.send(1, commands.Basic.Consume(queue=queue, consumer_tag=tag))
    wire.expect(3)
    wire.publish(
        1,
        queue,
        b"x" * 40,
        content_type="text/plain",
        headers={"a": 1, "b": "two", "c": [1, "x"], "d": {"e": True}},
        delivery_mode=2,
        priority=3,
        correlation_id="c-1",
        message_id="m-1",
        timestamp=datetime.datetime(2023, 11, 14, tzinfo=datetime.UTC),
    )
    wire.publish(1, queue, b"")
    wire.expect(5)  # deliver, header, body; deliver, header
    wire.send(1, commands.Basic.Ack(delivery_tag=0, multiple=True))
    wire.send(1, commands.Basic.Recover(requeue=True))
    wire.expect(1)  # nothing unacked: recover-ok alone
    wire.send(1, commands.Basic.Cancel(consumer_tag=tag))
    wire.expect(1)
    wire.send(1, commands.Basic.Consume(queue=queue))
    wire.expect(1, skip=frozenset({"consumer_tag"}))  # a generated amq.ctag-... tag


def get_and_return(wire: Wire) -> None:
    wire.handshake()
    wire.open(1)
    queue = wire.name("q")
    wire.send(1, commands.Queue.Declare(queue=queue, auto_delete=True))
    wire.send(1, commands.Confirm.Select())
    wire.expect(2)
    for content in (b"first", b"second"):
        wire.publish(1, queue, content)
        wire.expect(1)
    wire.send(1, commands.Basic.Get(queue=queue))
    wire.expect(3)  # get-ok, header, body
    wire.send(1, commands.Basic.Reject(delivery_tag=1, requeue=True))
    wire.send(1, commands.Basic.Get(queue=queue, no_ack=True))
    wire.expect(3)
    wire.send(1, commands.Basic.Get(queue=queue, no_ack=True))
    wire.expect(3)
    wire.send(1, commands.Basic.Get(queue=queue))
    wire.expect(1)  # get-empty
    wire.publish(1, wire.name("nowhere"), b"back", mandatory=True, content_type="a/b")
    wire.expect(4)  # return, header, body, then the ack
    wire.publish(1, "", b"", exchange="amq.fanout", mandatory=True)
    wire.expect(3)  # return, header, ack


def server_cancel(wire: Wire) -> None:
    wire.handshake()
    wire.open(1, 2)
    queue, tag = wire.name("q"), wire.name("tag")
    wire.send(1, commands.Queue.Declare(queue=queue))
    wire.send(1, commands.Basic.Consume(queue=queue, consumer_tag=tag))
    wire.expect(2)
    wire.send(2, commands.Queue.Delete(queue=queue))
    wire.expect(2)  # basic.cancel on 1, delete-ok on 2


def transactions(wire: Wire) -> None:
    wire.handshake()
    wire.open(1)
    queue = wire.name("q")
    wire.send(1, commands.Queue.Declare(queue=queue, auto_delete=True, exclusive=True))
    wire.send(1, commands.Tx.Select())
    wire.expect(2)
    wire.publish(1, queue, b"tx")
    wire.send(1, commands.Tx.Commit())
    wire.expect(1)
    wire.publish(1, queue, b"gone")
    wire.send(1, commands.Tx.Rollback())
    wire.expect(1)


SCENARIOS: dict[str, Callable[[Wire], None]] = {
    function.__name__: function
    for function in (
        connection_handshake,
        heartbeat_frame,
        login_refused,
        connection_error,
        channel_lifecycle,
        channel_error,
        exchanges,
        queues,
        consume_and_deliver,
        get_and_return,
        server_cancel,
        transactions,
    )
}


# -- recording and comparing ----------------------------------------------------------------


def load_fixture() -> dict[str, list[str]]:
    if not FIXTURE.exists():
        return {}
    return json.loads(FIXTURE.read_text())


def save_fixture(name: str, frames: list[bytes]) -> None:
    recorded = load_fixture()
    recorded[name] = [raw.hex() for raw in frames]
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")


def check(name: str, received: list[Received]) -> None:
    if RECORDING:
        if external_broker() is None:
            pytest.fail("AMQPD_RECORD_WIRE=1 records RabbitMQ's bytes: set AMQPD_TEST_URL too")
        save_fixture(name, [frame.raw for frame in received])
        return
    expected = load_fixture().get(name)
    assert expected is not None, f"no recording for {name}: re-record (see module docstring)"
    theirs = [bytes.fromhex(raw) for raw in expected]
    assert [describe(f.raw) for f in received] == [describe(raw) for raw in theirs]
    for ours, reference in zip(received, theirs, strict=True):
        assert_same_frame(ours, reference)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_replies_match_rabbitmq_bytes(broker: BrokerAddress, name: str) -> None:
    wire = Wire(broker)
    try:
        SCENARIOS[name](wire)
    finally:
        wire.close()
    check(name, wire.received)


# -- encoders no scenario reaches -----------------------------------------------------------


def reject_publish_nack(broker: BrokerAddress) -> list[Received]:
    """RabbitMQ's basic.nack for a publish its queue refuses (no amqpd counterpart)."""
    wire = Wire(broker)
    try:
        wire.handshake()
        wire.open(1)
        wire.send(
            1,
            commands.Queue.Declare(
                queue=wire.name("full"),
                exclusive=True,
                arguments={"x-max-length": 0, "x-overflow": "reject-publish"},
            ),
        )
        wire.send(1, commands.Confirm.Select())
        wire.expect(2)
        wire.publish(1, wire.name("full"), b"refused")
        wire.expect(1)
        return wire.received[-1:]
    finally:
        wire.close()


def test_confirm_nack_matches_rabbitmq_bytes(broker: BrokerAddress) -> None:
    if RECORDING or external_broker() is not None:
        check("confirm_nack", reject_publish_nack(broker))
        return
    # RabbitMQ sets `multiple` when nothing older is unconfirmed; amqpd's caller would too.
    check("confirm_nack", [Received(encode_confirm(1, 1, True, ack=False))])


def test_blocked_and_unblocked_follow_the_spec() -> None:
    """Not recorded (see the module docstring): checked against the 0-9-1 layout."""
    reason = b"low on disk"
    blocked = encode_method(0, commands.Connection.Blocked(reason=reason.decode()))
    payload = b"\x00\x0a\x00\x3c" + bytes((len(reason),)) + reason
    assert blocked == struct.pack(">BHI", 1, 0, len(payload)) + payload + b"\xce"
    unblocked = encode_method(0, commands.Connection.Unblocked())
    assert unblocked == b"\x01\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x3d\xce"


def test_every_method_amqpd_sends_is_covered() -> None:
    """The scenarios' recorded frames name every method amqpd can send."""
    sent = {
        "Connection.Start", "Connection.Tune", "Connection.OpenOk", "Connection.Close",
        "Connection.CloseOk", "Channel.OpenOk", "Channel.FlowOk", "Channel.Close",
        "Channel.CloseOk", "Exchange.DeclareOk", "Exchange.DeleteOk", "Exchange.BindOk",
        "Exchange.UnbindOk", "Queue.DeclareOk", "Queue.BindOk", "Queue.UnbindOk",
        "Queue.PurgeOk", "Queue.DeleteOk", "Basic.QosOk", "Basic.ConsumeOk", "Basic.CancelOk",
        "Basic.Cancel", "Basic.Deliver", "Basic.GetOk", "Basic.GetEmpty", "Basic.Return",
        "Basic.RecoverOk", "Basic.Ack", "Basic.Nack", "Confirm.SelectOk", "Tx.SelectOk",
        "Tx.CommitOk", "Tx.RollbackOk",
    }  # fmt: skip
    seen, indexes = set(), set()
    for frames in load_fixture().values():
        for raw in frames:
            data = bytes.fromhex(raw)
            if data[0] == constants.FRAME_METHOD:
                index = struct.unpack_from(">I", data, 7)[0]
                indexes.add(index)
                if index in commands.INDEX_MAPPING:
                    seen.add(commands.INDEX_MAPPING[index].name)
    assert sent - seen == set()
    assert ACCESS_REQUEST_OK in indexes

