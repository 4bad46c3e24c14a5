"""Durability end to end: real pika clients, a real amqpd restarted on the same data directory.

Every scenario runs twice: the broker stopped cleanly (SIGTERM) and killed (SIGKILL). Before
a kill the test waits for a publisher confirm of a persistent message on every open
connection (a *barrier*): the store makes records durable in order, so everything the broker
did for that connection before is then on disk. Without the barrier a kill right after a
declare-ok can lose the declaration; `test_declare_ok_means_written` checks that separately.
Needs a private broker per test, so skipped when AMQPD_TEST_URL names a shared one.
"""

from __future__ import annotations

import os
import shutil
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest

from tests.broker_process import BrokerProcess, external_broker

pytestmark = pytest.mark.skipif(
    external_broker() is not None, reason="restarts a private amqpd; AMQPD_TEST_URL is set"
)

PERSISTENT = pika.BasicProperties(delivery_mode=2)
TRANSIENT = pika.BasicProperties(delivery_mode=1)
BARRIER_QUEUE = "durability-barrier"
VHOST_DIR = "%2F"  # the data directory of vhost "/"


class Node:
    """One data directory served by a succession of amqpd processes."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.proc: BrokerProcess | None = None
        self.procs: list[BrokerProcess] = []
        self.connections: list[pika.BlockingConnection] = []

    def start(self) -> Node:
        # A fresh BrokerProcess per run: reusing one races with the old log reader thread.
        self.proc = BrokerProcess(self.data_dir).start()
        self.procs.append(self.proc)
        return self

    def connect(self) -> pika.BlockingConnection:
        assert self.proc is not None
        conn = pika.BlockingConnection(
            pika.ConnectionParameters(
                self.proc.host,
                self.proc.port,
                credentials=pika.PlainCredentials("guest", "guest"),
            )
        )
        self.connections.append(conn)
        return conn

    def channel(self, confirm: bool = True) -> pika.adapters.blocking_connection.BlockingChannel:
        ch = self.connect().channel()
        if confirm:
            ch.confirm_delivery()
        return ch

    def barrier(self) -> None:
        """On every open connection: a confirmed persistent publish (all before it is on disk)."""
        for conn in self.connections:
            if conn.is_open:
                ch = conn.channel()
                ch.confirm_delivery()
                ch.queue_declare(BARRIER_QUEUE, durable=True)
                ch.basic_publish("", BARRIER_QUEUE, b"barrier", PERSISTENT)
                ch.close()

    def restart(self, how: str) -> None:
        self.down(how)
        self.start()

    def down(self, how: str) -> None:
        assert self.proc is not None
        if how == "kill":
            self.barrier()
            self.proc.kill()
        else:
            # Let open pika connections answer the broker's connection.close (otherwise the
            # broker waits out its shutdown grace period for a client that is not reading).
            pumps = [
                threading.Thread(target=_pump, args=(conn,), daemon=True)
                for conn in self.connections
                if conn.is_open
            ]
            for pump in pumps:
                pump.start()
            assert self.proc.stop() == 0, "\n".join(self.proc.log_lines)
            for pump in pumps:
                pump.join(5)
        for conn in self.connections:
            _close_quietly(conn)
        self.connections.clear()

    def log(self) -> list[str]:
        return [line for proc in self.procs for line in proc.log_lines]

    def data_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.data_dir.rglob("*") if f.is_file())


def _pump(conn: pika.BlockingConnection) -> None:
    try:
        while conn.is_open:
            conn.process_data_events(0.05)
    except Exception:
        pass


def _close_quietly(conn: pika.BlockingConnection) -> None:
    try:
        if conn.is_open:
            conn.close()
    except Exception:
        pass


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path / "data").start()
    yield n
    for conn in n.connections:
        _close_quietly(conn)
    if n.proc is not None:
        n.proc.stop()
    tracebacks = [line for line in n.log() if "Traceback" in line]
    assert not tracebacks, "\n".join(n.log())


@pytest.fixture(params=["stop", "kill"])
def how(request: pytest.FixtureRequest) -> str:
    return request.param


def drain(ch, queue: str, ack: bool = True) -> list[tuple[bytes, bool]]:  # type: ignore[no-untyped-def]
    """Every message now in `queue`, in order, as (body, redelivered), via basic.get."""
    out = []
    while True:
        method, _props, body = ch.basic_get(queue, auto_ack=ack)
        if method is None:
            return out
        out.append((body, method.redelivered))


def bodies(ch, queue: str) -> list[bytes]:  # type: ignore[no-untyped-def]
    return [body for body, _ in drain(ch, queue)]


def count(ch, queue: str) -> int:  # type: ignore[no-untyped-def]
    return ch.queue_declare(queue, passive=True).method.message_count


def assert_absent(node: Node, kind: str, name: str) -> None:
    ch = node.channel(confirm=False)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        if kind == "queue":
            ch.queue_declare(name, passive=True)
        else:
            ch.exchange_declare(name, passive=True)
    assert info.value.reply_code == 404
    assert info.value.reply_text == f"NOT_FOUND - no {kind} '{name}' in vhost '/'"


# -- topology -------------------------------------------------------------------------


def test_durable_topology_survives_and_routes(node: Node, how: str) -> None:
    ch = node.channel()
    for kind in ("direct", "fanout", "topic", "headers"):
        ch.exchange_declare(f"x.{kind}", kind, durable=True)
        ch.queue_declare(f"q.{kind}", durable=True)
    ch.queue_bind("q.direct", "x.direct", "red")
    ch.queue_bind("q.fanout", "x.fanout", "ignored")
    ch.queue_bind("q.topic", "x.topic", "a.*.c")
    ch.queue_bind("q.headers", "x.headers", "", {"x-match": "all", "k": "v", "n": 7})
    # exchange-to-exchange: topic -> fanout -> queue
    ch.exchange_declare("x.e2e-src", "topic", durable=True)
    ch.exchange_declare("x.e2e-dst", "fanout", durable=True)
    ch.queue_declare("q.e2e", durable=True)
    ch.exchange_bind("x.e2e-dst", "x.e2e-src", "sensor.#")
    ch.queue_bind("q.e2e", "x.e2e-dst", "")
    ch.exchange_declare("x.internal", "fanout", durable=True, internal=True)

    node.restart(how)
    ch = node.channel()
    # Re-declaring with the same properties is accepted; a different type is not.
    for kind in ("direct", "fanout", "topic", "headers"):
        ch.exchange_declare(f"x.{kind}", kind, durable=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.exchange_declare("x.topic", "direct", durable=True)
    assert info.value.reply_code == 406
    ch = node.channel()
    ch.exchange_declare("x.internal", "fanout", durable=True, internal=True)

    def publish(exchange: str, key: str, body: bytes, headers: dict | None = None) -> None:
        props = pika.BasicProperties(delivery_mode=1, headers=headers)
        ch.basic_publish(exchange, key, body, props, mandatory=True)

    publish("x.direct", "red", b"d1")
    publish("x.fanout", "any", b"f1")
    publish("x.topic", "a.b.c", b"t1")
    publish("x.headers", "", b"h1", {"k": "v", "n": 7, "extra": 1})
    publish("x.e2e-src", "sensor.kitchen.temp", b"e1")
    for key, exchange, headers in [
        ("blue", "x.direct", None),
        ("a.b", "x.topic", None),
        ("", "x.headers", {"k": "v"}),
        ("other.thing", "x.e2e-src", None),
    ]:
        with pytest.raises(pika.exceptions.UnroutableError):
            publish(exchange, key, b"nope", headers)
    assert bodies(ch, "q.direct") == [b"d1"]
    assert bodies(ch, "q.fanout") == [b"f1"]
    assert bodies(ch, "q.topic") == [b"t1"]
    assert bodies(ch, "q.headers") == [b"h1"]
    assert bodies(ch, "q.e2e") == [b"e1"]
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.basic_publish("x.internal", "", b"x")
    assert info.value.reply_code == 403


def test_non_durable_and_exclusive_do_not_survive(node: Node, how: str) -> None:
    ch = node.channel()
    ch.exchange_declare("x.transient", "fanout", durable=False)
    ch.queue_declare("q.transient", durable=False)
    ch.queue_declare("q.exclusive", durable=True, exclusive=True)
    ch.queue_declare("q.kept", durable=True)
    ch.exchange_declare("x.kept", "fanout", durable=True)
    ch.queue_bind("q.transient", "x.kept", "")
    ch.queue_bind("q.kept", "x.transient", "")
    ch.basic_publish("", "q.transient", b"p", PERSISTENT)
    ch.basic_publish("", "q.exclusive", b"p", PERSISTENT)

    node.restart(how)
    assert_absent(node, "exchange", "x.transient")
    assert_absent(node, "queue", "q.transient")
    assert_absent(node, "queue", "q.exclusive")
    ch = node.channel()
    assert count(ch, "q.kept") == 0
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish("x.kept", "", b"x", mandatory=True)
    # the exclusive name is free for anyone again
    ch.queue_declare("q.exclusive", durable=True)


def test_declare_ok_means_written(node: Node) -> None:
    """A kill -9 right after declare-ok / bind-ok must not lose the declaration."""
    ch = node.channel(confirm=False)
    blob = os.urandom(500_000)
    missing = []
    for i in range(4):
        # Keep the store's writer busy so the declaration is still queued when it replies.
        ch.queue_declare("load", durable=True)
        for _ in range(20):
            ch.basic_publish("", "load", blob, PERSISTENT)
        ch.exchange_declare(f"x.race{i}", "fanout", durable=True)
        node.proc.kill()  # type: ignore[union-attr]
        node.connections.clear()
        node.start()
        probe = node.channel(confirm=False)
        try:
            probe.exchange_declare(f"x.race{i}", passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            missing.append(f"x.race{i}")
        ch = node.channel(confirm=False)
    assert not missing, f"declared (declare-ok received) but gone after kill -9: {missing}"


# -- messages -------------------------------------------------------------------------


def test_persistent_survive_transient_do_not(node: Node, how: str) -> None:
    ch = node.channel()
    ch.queue_declare("q.durable", durable=True)
    ch.queue_declare("q.transient", durable=False)
    for i in range(10):
        props = PERSISTENT if i % 2 == 0 else TRANSIENT
        ch.basic_publish("", "q.durable", f"m{i}".encode(), props)
    ch.basic_publish("", "q.transient", b"p", PERSISTENT)

    node.restart(how)
    ch = node.channel()
    assert drain(ch, "q.durable") == [(f"m{i}".encode(), False) for i in range(0, 10, 2)]
    assert_absent(node, "queue", "q.transient")


def test_message_in_two_durable_queues(node: Node, how: str) -> None:
    ch = node.channel()
    ch.exchange_declare("x.fan", "fanout", durable=True)
    for q in ("q.one", "q.two"):
        ch.queue_declare(q, durable=True)
        ch.queue_bind(q, "x.fan", "")
    ch.queue_declare("q.three", durable=False)
    ch.queue_bind("q.three", "x.fan", "")
    ch.basic_publish("x.fan", "", b"shared", PERSISTENT)

    node.restart(how)
    ch = node.channel()
    assert count(ch, "q.one") == 1 and count(ch, "q.two") == 1
    assert bodies(ch, "q.one") == [b"shared"]  # acked in q.one only

    node.restart(how)
    ch = node.channel()
    assert count(ch, "q.one") == 0
    assert drain(ch, "q.two") == [(b"shared", False)]


def test_order_acks_and_redelivered_flags(node: Node, how: str) -> None:
    ch = node.channel()
    ch.queue_declare("q.order", durable=True)
    for i in range(1000):
        ch.basic_publish("", "q.order", str(i).encode(), PERSISTENT)
    consumer = node.channel(confirm=False)
    received = []
    for _ in range(600):  # basic.get: no delivery beyond the ones this test sees
        method, _props, body = consumer.basic_get("q.order")
        assert method is not None
        received.append(int(body))
        if int(body) % 3 == 0:
            consumer.basic_ack(method.delivery_tag)
    assert received == list(range(600))

    node.restart(how)  # the consumer is still connected with 400 unacked deliveries
    ch = node.channel()
    expected = [(str(i).encode(), i < 600) for i in range(1000) if not (i < 600 and i % 3 == 0)]
    assert count(ch, "q.order") == len(expected)
    got = []
    for method, _props, body in ch.consume("q.order", inactivity_timeout=10):
        assert method is not None, f"stopped after {len(got)} of {len(expected)}"
        got.append((body, method.redelivered))
        ch.basic_ack(method.delivery_tag)
        if len(got) == len(expected):
            break
    ch.cancel()
    assert got == expected


def test_acked_rejected_nacked_never_come_back(node: Node, how: str) -> None:
    ch = node.channel()
    ch.queue_declare("q.settle", durable=True)
    for i in range(8):
        ch.basic_publish("", "q.settle", f"m{i}".encode(), PERSISTENT)
    tags = {}
    for i in range(6):
        method, _props, body = ch.basic_get("q.settle")
        assert body == f"m{i}".encode()
        tags[i] = method.delivery_tag
    ch.basic_ack(tags[0])
    ch.basic_reject(tags[1], requeue=False)
    ch.basic_nack(tags[2], requeue=False)
    ch.basic_nack(tags[4], multiple=True, requeue=False)  # m3 and m4
    # m5 delivered, unsettled; m6, m7 never delivered

    node.restart(how)
    ch = node.channel()
    assert drain(ch, "q.settle") == [(b"m5", True), (b"m6", False), (b"m7", False)]
    node.restart(how)
    ch = node.channel()
    assert count(ch, "q.settle") == 0


def test_purge_and_delete_are_durable(node: Node, how: str) -> None:
    ch = node.channel()
    ch.exchange_declare("x.d", "direct", durable=True)
    for q in ("q.purged", "q.deleted"):
        ch.queue_declare(q, durable=True)
        ch.queue_bind(q, "x.d", q)
        for i in range(5):
            ch.basic_publish("", q, f"{q}{i}".encode(), PERSISTENT)
    assert ch.queue_purge("q.purged").method.message_count == 5
    ch.basic_publish("", "q.purged", b"after-purge", PERSISTENT)
    assert ch.queue_delete("q.deleted").method.message_count == 5

    node.restart(how)
    ch = node.channel()
    assert bodies(ch, "q.purged") == [b"after-purge"]
    assert_absent(node, "queue", "q.deleted")
    ch.queue_declare("q.deleted", durable=True)  # comes back empty and unbound
    assert count(ch, "q.deleted") == 0
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish("x.d", "q.deleted", b"x", mandatory=True)


def test_unbind_and_exchange_delete_are_durable(node: Node, how: str) -> None:
    ch = node.channel()
    ch.exchange_declare("x.keep", "direct", durable=True)
    ch.exchange_declare("x.gone", "fanout", durable=True)
    ch.exchange_declare("x.src", "topic", durable=True)
    ch.exchange_declare("x.dst", "fanout", durable=True)
    ch.queue_declare("q.b", durable=True)
    ch.queue_bind("q.b", "x.keep", "a")
    ch.queue_bind("q.b", "x.keep", "b")
    ch.queue_bind("q.b", "x.gone", "")
    ch.queue_bind("q.b", "x.dst", "")
    ch.exchange_bind("x.dst", "x.src", "#")
    ch.exchange_bind("x.dst", "x.keep", "c")
    ch.queue_unbind("q.b", "x.keep", "b")
    ch.exchange_unbind("x.dst", "x.src", "#")
    ch.exchange_delete("x.gone")

    node.restart(how)
    assert_absent(node, "exchange", "x.gone")
    ch = node.channel()
    ch.basic_publish("x.keep", "a", b"via-a", mandatory=True)
    ch.basic_publish("x.keep", "c", b"via-c", mandatory=True)
    for exchange, key in (("x.keep", "b"), ("x.src", "anything")):
        with pytest.raises(pika.exceptions.UnroutableError):
            ch.basic_publish(exchange, key, b"x", mandatory=True)
    assert bodies(ch, "q.b") == [b"via-a", b"via-c"]


def test_auto_delete_durable_queue_without_consumers_survives(node: Node, how: str) -> None:
    ch = node.channel()
    ch.queue_declare("q.ad", durable=True, auto_delete=True)
    ch.basic_publish("", "q.ad", b"kept", PERSISTENT)

    node.restart(how)
    ch = node.channel()
    assert ch.queue_declare("q.ad", durable=True, auto_delete=True).method.message_count == 1
    # still auto-delete after the restart: the first consumer to go takes it away
    tag = ch.basic_consume("q.ad", lambda *args: None, auto_ack=True)
    ch.connection.process_data_events(0)
    ch.basic_cancel(tag)
    assert_absent(node, "queue", "q.ad")
    node.restart(how)
    assert_absent(node, "queue", "q.ad")


def test_counts_after_restart(node: Node, how: str) -> None:
    ch = node.channel()
    ch.queue_declare("q.count", durable=True)
    for i in range(10):
        ch.basic_publish("", "q.count", f"m{i}".encode(), PERSISTENT)

    node.restart(how)
    ch = node.channel()
    ok = ch.queue_declare("q.count", durable=True).method
    assert (ok.message_count, ok.consumer_count) == (10, 0)
    method, _props, body = ch.basic_get("q.count", auto_ack=True)
    assert (body, method.message_count, method.redelivered) == (b"m0", 9, False)
    got = []
    for method, _props, body in ch.consume("q.count", auto_ack=True, inactivity_timeout=10):
        assert method is not None
        got.append(body)
        if len(got) == 9:
            break
    assert ch.queue_declare("q.count", passive=True).method.consumer_count == 1
    ch.cancel()
    assert got == [f"m{i}".encode() for i in range(1, 10)]
    assert count(ch, "q.count") == 0


def test_large_message_survives(node: Node, how: str) -> None:
    payload = os.urandom(5 * 1024 * 1024)
    ch = node.channel()
    ch.queue_declare("q.large", durable=True)
    ch.basic_publish("", "q.large", payload, pika.BasicProperties(delivery_mode=2, priority=3))

    node.restart(how)
    ch = node.channel()
    method, props, body = ch.basic_get("q.large", auto_ack=True)
    assert method is not None and body == payload
    assert (props.delivery_mode, props.priority) == (2, 3)


def test_restart_twice_in_a_row(node: Node, how: str) -> None:
    ch = node.channel()
    ch.queue_declare("q.twice", durable=True)
    ch.basic_publish("", "q.twice", b"a", PERSISTENT)
    node.restart(how)
    node.restart(how)
    ch = node.channel()
    ch.basic_publish("", "q.twice", b"b", PERSISTENT)
    node.restart(how)
    ch = node.channel()
    assert drain(ch, "q.twice") == [(b"a", False), (b"b", False)]


def test_auto_delete_queue_with_consumer_at_clean_stop(node: Node) -> None:
    """Closing connections at shutdown cancels consumers, which deletes the queue: RabbitMQ
    3.10 does the same on `rabbitmqctl stop_app` (checked by hand against it)."""
    ch = node.channel()
    ch.queue_declare("q.adc", durable=True, auto_delete=True)
    ch.basic_publish("", "q.adc", b"m", PERSISTENT)
    ch.basic_consume("q.adc", lambda *args: None)
    ch.connection.process_data_events(0.05)
    node.restart("stop")
    assert_absent(node, "queue", "q.adc")


# -- disk ------------------------------------------------------------------------------


def test_disk_reclaim_after_acks(node: Node) -> None:
    ch = node.channel()
    ch.queue_declare("q.reclaim", durable=True)
    raw = node.connect().channel()
    blob = os.urandom(100 * 1024)
    for i in range(1000):  # ~98 MiB, three segments and more
        raw.basic_publish("", "q.reclaim", struct.pack(">I", i) + blob, PERSISTENT)
    raw.connection.process_data_events(0)
    ch.basic_publish("", "q.reclaim", b"end", PERSISTENT)  # confirmed: the rest is written
    assert count(ch, "q.reclaim") == 1001
    peak = node.data_bytes()
    assert peak > 95 * 1024 * 1024

    keep = set(range(0, 1000, 100))  # ten live messages spread over every segment
    seen = 0
    for method, _props, body in ch.consume("q.reclaim", inactivity_timeout=10):
        assert method is not None
        seen += 1
        if body == b"end" or struct.unpack(">I", body[:4])[0] not in keep:
            ch.basic_ack(method.delivery_tag)
        if seen == 1001:
            break
    ch.cancel()  # the ten unacked stay with the channel until it closes
    ch.queue_declare(BARRIER_QUEUE, durable=True)
    ch.basic_publish("", BARRIER_QUEUE, b"sync", PERSISTENT)  # acks are written too
    # Live data is ~1 MiB; with no more traffic the store shrinks to it (head retired too).
    assert _wait_until(lambda: node.data_bytes() < 2 * 1024 * 1024), node.data_bytes()

    node.restart("stop")
    # After a restart (and one write round, which is what triggers reclaim) the old head is
    # history too: only live data (and copies of it) remain.
    ch = node.channel()
    ch.basic_publish("", BARRIER_QUEUE, b"sync", PERSISTENT)
    assert _wait_until(lambda: node.data_bytes() < 2 * 1024 * 1024), sorted(
        (p.name, p.stat().st_size) for p in (node.data_dir / VHOST_DIR).iterdir()
    )
    left = drain(ch, "q.reclaim")
    assert [struct.unpack(">I", body[:4])[0] for body, _ in left] == sorted(keep)
    assert all(redelivered and body[4:] == blob for body, redelivered in left)


def _wait_until(condition, timeout: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    """Poll a condition (a liveness bound for the store's writer thread, not a speed check)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- damaged logs ----------------------------------------------------------------------

HEADER_SIZE = 24
RECORD_HEAD = struct.Struct("<4sIIB")  # marker, crc, length, type (docs/storage-format.md)
MESSAGE = 7
N_DAMAGE = 20


def parse_records(data: bytes) -> list[tuple[int, int, int]]:
    """(type, start, end) of each record of an undamaged segment, from the documented format."""
    out = []
    p = HEADER_SIZE
    while p < len(data):
        marker, _crc, length, rtype = RECORD_HEAD.unpack_from(data, p)
        assert marker == b"\xf3\xa9\x1d\xc7"
        end = p + RECORD_HEAD.size + length
        out.append((rtype, p, end))
        p = end
    assert p == len(data)
    return out


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory whose last segment holds a queue declaration and 20 messages."""
    data = tmp_path_factory.mktemp("pristine") / "data"
    n = Node(data).start()
    ch = n.channel()
    ch.queue_declare("q.dmg", durable=True)
    for i in range(N_DAMAGE):
        ch.basic_publish("", "q.dmg", f"message-{i:02d}".encode() * 10, PERSISTENT)
    n.down("stop")
    return data


def _last_segment(data: Path) -> Path:
    return sorted((data / VHOST_DIR).glob("segment-*.log"))[-1]


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x40]))


def _truncate(path: Path, size: int) -> None:
    os.truncate(path, size)


# (damage, expected message numbers or None for "queue gone", log fragment)
DAMAGE = {
    "cut-mid-last-record": ("cut", ("msg", 19, 20), list(range(19)), "torn"),
    "cut-in-record-head": ("cut", ("msg", 10, 6), list(range(10)), "torn"),
    "cut-at-record-boundary": ("cut", ("msg-end", 5, 0), list(range(6)), None),
    "cut-in-queue-declaration": ("cut", ("queue", 0, 9), None, "torn"),
    "cut-in-file-header": ("cut", ("file", 0, 10), None, "header"),
    "flip-mid-record": ("flip", ("msg", 7, 40), [i for i in range(20) if i != 7], "corrupt"),
    "flip-marker": ("flip", ("msg", 3, 1), [i for i in range(20) if i != 3], "corrupt"),
    "flip-last-record": ("flip", ("msg", 19, 30), list(range(19)), "tail"),
    "flip-length": ("flip", ("msg", 12, 10), [i for i in range(20) if i != 12], "corrupt"),
    # one damaged copy of the queue's declaration: its twin stands in, nothing is lost
    "flip-in-queue-declaration": ("flip", ("queue", 0, 20), list(range(20)), "corrupt"),
    "flip-in-queue-twin": ("flip", ("queue", 1, 9), list(range(20)), "corrupt"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_recovery_from_damaged_log(case: str, pristine: Path, tmp_path: Path) -> None:
    action, (where, index, delta), expected, fragment = DAMAGE[case]
    data = tmp_path / "data"
    shutil.copytree(pristine, data)
    segment = _last_segment(data)
    records = parse_records(segment.read_bytes())
    messages = [(s, e) for t, s, e in records if t == MESSAGE]
    queues = [(s, e) for t, s, e in records if t == 3]
    assert len(messages) == N_DAMAGE and len(queues) == 2  # the declaration and its twin
    if where == "msg":
        offset = messages[index][0] + delta
    elif where == "msg-end":
        offset = messages[index][1]
    elif where == "queue":
        offset = queues[index][0] + delta
    else:
        offset = delta
    if action == "cut":
        _truncate(segment, offset)
    else:
        _flip(segment, offset)

    node = Node(data).start()  # start() itself asserts the ready line
    try:
        ch = node.channel()
        if expected is None:
            assert_absent(node, "queue", "q.dmg")
        else:
            got = bodies(ch, "q.dmg")
            assert got == [f"message-{i:02d}".encode() * 10 for i in expected]
        if fragment is not None:
            warnings = [line for line in node.log() if "WARNING" in line and segment.name in line]
            assert any(fragment in line for line in warnings), "\n".join(node.log())
            if action == "cut" and where != "file":
                intact_end = max([e for _, _, e in records if e <= offset], default=HEADER_SIZE)
                torn = offset - intact_end
                assert any(f"truncating {torn} bytes" in line for line in warnings), warnings
        else:
            assert not [line for line in node.log() if "WARNING" in line], node.log()
        # the repaired log takes new messages and restarts cleanly
        ch = node.channel()
        ch.queue_declare("q.dmg", durable=True)
        ch.basic_publish("", "q.dmg", b"after", PERSISTENT)
        node.restart("stop")
        ch = node.channel()
        assert bodies(ch, "q.dmg") == [b"after"]
        assert not [line for line in node.log() if "Traceback" in line]
    finally:
        for conn in node.connections:
            _close_quietly(conn)
        if node.proc is not None:
            node.proc.stop()
