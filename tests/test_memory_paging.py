"""Queues deeper than RAM: queued persistent bodies leave memory and come back in order.

Unit tests drive the `Pager` and the store's `LogReader` over a real `DurableStore` (files,
no sockets); the broker test publishes a durable queue several times deeper than a small
memory watermark and drains it, in order, with nothing lost.
"""

from __future__ import annotations

import struct
import time
from collections import deque
from pathlib import Path

import pika
import pytest

from amqpd.core.message import Message
from amqpd.core.paged import PagedMessages
from amqpd.core.queue import Queue
from amqpd.memory import used_memory
from amqpd.paging import Pager
from amqpd.spill import SpillLog
from amqpd.store import DurableStore, QueueRecord, ReadBackFailed
from amqpd.wire.content import peek_header
from tests.broker_process import BrokerProcess, external_broker
from tests.mgmt_client import Api

HEADER = b"\x00<\x00\x00\x00\x00\x00\x00\x00\x00\x00d\x90\x00\x00\x02"


def header_for(size: int) -> bytes:
    return HEADER[:4] + struct.pack(">Q", size) + HEADER[12:]


def durable_queue(tmp_path: Path, **store_args: object) -> tuple[DurableStore, Queue]:
    store = DurableStore(tmp_path / "log", fsync="never", **store_args)  # type: ignore[arg-type]
    store.recover()
    store.queue_declared(QueueRecord("q", False, {}))
    queue = Queue("q", "/", durable=True, schedule=lambda queue: None)
    queue.store = store
    return store, queue


def publish(store: DurableStore, queue: Queue, message_id: int, body: bytes) -> Message:
    header = header_for(len(body))
    message = Message("", "q", header, peek_header(header), body)
    message.store_id = message_id
    store.message_published(message_id, ["q"], "", "q", header, body)
    queue.enqueue(message)
    return message


def wait_written(store: DurableStore, message_id: int) -> None:
    store.flush()
    deadline = time.monotonic() + 10
    while not store.reader.readable(message_id):
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_entries_past_the_head_become_compact_once_written_and_come_back_in_order(
    tmp_path: Path,
) -> None:
    store, queue = durable_queue(tmp_path)
    pager = Pager(keep=10)
    for i in range(1, 1001):
        publish(store, queue, i, b"body-%05d" % i * 50)
    assert pager.page([queue]) == 0  # nothing written yet: nothing may leave memory
    messages = queue.messages
    assert isinstance(messages, PagedMessages)
    wait_written(store, 1000)
    assert pager.page([queue]) == 990
    assert (len(messages), len(messages.head), messages.paged) == (1000, 10, 990)
    assert pager.page([queue]) == 0  # a second pass looks only at newer entries
    for i in range(1001, 1101):
        publish(store, queue, i, b"more-%05d" % i * 50)
    wait_written(store, 1100)
    assert pager.page([queue]) == 100
    reads_before = store.reader.reads
    got = []
    while queue.messages:
        _seq, message, _redelivered = queue.take()  # type: ignore[misc]
        got.append(message.body)
        assert message.resident and message.exchange == "" and message.routing_key == "q"
        assert message.store_id == len(got)
    assert got == [b"body-%05d" % i * 50 for i in range(1, 1001)] + [
        b"more-%05d" % i * 50 for i in range(1001, 1101)
    ]
    assert store.reader.reads - reads_before < 20  # read ahead: far fewer reads than bodies
    pager.page([queue])
    assert type(queue.messages) is deque  # short again: a plain deque
    store.close()


def test_a_message_another_queue_also_holds_stays_whole_there(tmp_path: Path) -> None:
    store, queue = durable_queue(tmp_path)
    other = Queue("transient", "/", schedule=lambda queue: None)
    message = publish(store, queue, 1, b"shared")
    other.enqueue(message)
    wait_written(store, 1)
    assert Pager(keep=0).page([queue, other]) == 1
    assert message.resident and other.take()[1] is message  # type: ignore[index]
    copy = queue.take()[1]  # type: ignore[index]
    assert copy.body == b"shared" and copy.store_id == 1
    store.close()


def test_transient_bodies_spill_to_a_file_and_come_back(tmp_path: Path) -> None:
    queue = Queue("t", "/", schedule=lambda queue: None)
    for i in range(300):
        body = b"t%04d" % i * 100
        queue.enqueue(
            Message("", "t", header_for(len(body)), peek_header(header_for(len(body))), body)
        )
    spill = SpillLog(tmp_path / "spill", segment_bytes=10_000)
    pager = Pager(keep=50)
    assert pager.page([queue]) == 0  # not near the watermark: transient bodies stay
    assert pager.page([queue], lambda queue: spill) == 250
    assert spill.disk_bytes() == 250 * 500
    got = [queue.take()[1].body for _ in range(300)]  # type: ignore[index]
    assert got == [b"t%04d" % i * 100 for i in range(300)]
    assert spill.disk_bytes() <= 10_000  # files read back in full are deleted
    spill.close()
    assert not (tmp_path / "spill").exists()


def test_spill_files_of_messages_dropped_unread_are_reclaimed(tmp_path: Path) -> None:
    queue = Queue("t", "/", schedule=lambda queue: None)
    for _ in range(100):
        queue.enqueue(
            Message("", "t", header_for(1000), peek_header(header_for(1000)), b"x" * 1000)
        )
    spill = SpillLog(tmp_path / "spill", segment_bytes=10_000)
    Pager(keep=0).page([queue], lambda queue: spill)
    assert spill.disk_bytes() == 100_000
    queue.purge()
    spill.recount([queue])
    assert spill.disk_bytes() == 0
    spill.close()


def test_a_message_survives_compaction_moving_its_record(tmp_path: Path) -> None:
    store, queue = durable_queue(tmp_path, segment_bytes=8 * 1024, compact_ratio=0.9)
    pager = Pager(keep=0)
    publish(store, queue, 1, b"K" * 500)
    store.queue_declared(QueueRecord("c", False, {}))
    for i in range(2, 60):
        store.message_published(i, ["c"], "", "c", header_for(1000), b"c" * 1000)
    wait_written(store, 59)
    pager.page([queue])
    assert queue.messages.paged == 1  # type: ignore[union-attr]
    where = store._index.loc[1]
    for i in range(2, 60):
        store.message_removed("c", i)
    store.flush()
    deadline = time.monotonic() + 10
    while store.stats()["compactions"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store._index.loc[1] >> 64 != where >> 64  # the record moved to a newer segment
    assert queue.take()[1].body == b"K" * 500  # type: ignore[index]
    store.close()


def test_a_damaged_record_is_not_read_back_as_a_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, queue = durable_queue(tmp_path)
    publish(store, queue, 1, b"precious" * 10)
    publish(store, queue, 2, b"survivor" * 10)
    wait_written(store, 2)
    Pager(keep=0).page([queue])
    assert queue.messages.paged == 2  # type: ignore[union-attr]
    [segment] = sorted((tmp_path / "log").glob("segment-*.log"))
    data = bytearray(segment.read_bytes())
    at = data.find(b"precious")
    data[at] ^= 0xFF
    segment.write_bytes(bytes(data))
    store.reader.prune()
    store.reader.close()
    with pytest.raises(ReadBackFailed):
        store.reader.read_message(1)
    assert queue.take()[1].body == b"survivor" * 10  # type: ignore[index]
    assert queue.take() is None
    assert "dropped a message whose body is lost" in caplog.text
    store.close()


@pytest.mark.skipif(external_broker() is not None, reason="starts its own amqpd")
def test_a_queue_deeper_than_the_watermark_is_published_and_drained_in_order(
    tmp_path: Path,
) -> None:
    count, size = 4000, 64 * 1024  # 256 MiB of bodies, three times the watermark
    with BrokerProcess(tmp_path / "data", "--memory-high-watermark", "80MiB") as broker:
        params = pika.ConnectionParameters(broker.host, broker.port, blocked_connection_timeout=60)
        publisher = pika.BlockingConnection(params)
        channel = publisher.channel()
        channel.queue_declare("deep", durable=True)
        channel.confirm_delivery()
        persistent = pika.BasicProperties(delivery_mode=2)
        for i in range(count):
            channel.basic_publish("", "deep", struct.pack(">Q", i) * (size // 8), persistent)
        # Drain on a connection of its own: as in RabbitMQ, an alarm blocks a connection
        # that publishes, acks included.
        connection = pika.BlockingConnection(params)
        channel = connection.channel()
        channel.basic_qos(prefetch_count=200)
        seen = []
        for method, _properties, body in channel.consume("deep", inactivity_timeout=30):
            assert method is not None, f"stalled after {len(seen)}"
            assert len(body) == size
            seen.append(struct.unpack(">Q", body[:8])[0])
            channel.basic_ack(method.delivery_tag)
            if len(seen) == count:
                break
        assert seen == list(range(count))
        connection.close()
        publisher.close()


@pytest.mark.skipif(external_broker() is not None, reason="restarts its own amqpd")
def test_recovery_leaves_bodies_in_the_log(tmp_path: Path) -> None:
    count, size = 2000, 64 * 1024  # 128 MiB of bodies
    data = tmp_path / "data"
    with BrokerProcess(data) as broker:
        params = pika.ConnectionParameters(broker.host, broker.port)
        connection = pika.BlockingConnection(params)
        channel = connection.channel()
        channel.queue_declare("recovered", durable=True)
        channel.confirm_delivery()
        persistent = pika.BasicProperties(delivery_mode=2)
        for i in range(count):
            channel.basic_publish("", "recovered", struct.pack(">Q", i) * (size // 8), persistent)
        connection.close()
    with BrokerProcess(data) as broker:
        assert broker.proc is not None
        used = used_memory(Path(f"/proc/{broker.proc.pid}/status"))
        assert used < 96 * 1024 * 1024, f"{used >> 20} MiB after recovering 128 MiB of bodies"
        connection = pika.BlockingConnection(pika.ConnectionParameters(broker.host, broker.port))
        channel = connection.channel()
        channel.basic_qos(prefetch_count=100)
        seen = []
        for method, _properties, body in channel.consume("recovered", inactivity_timeout=30):
            assert method is not None, f"stalled after {len(seen)}"
            assert body == struct.pack(">Q", len(seen)) * (size // 8)
            seen.append(method.delivery_tag)
            channel.basic_ack(method.delivery_tag)
            if len(seen) == count:
                break
        connection.close()


@pytest.mark.skipif(external_broker() is not None, reason="damages its own amqpd's log")
def test_a_damaged_record_under_a_live_broker_drops_that_message_only(tmp_path: Path) -> None:
    count, size = 1000, 64 * 1024  # 64 MiB of bodies: most past the resident head (16 MiB)
    lost = (900, 980)  # well past the head: read back by basic.get, then by a consumer
    data = tmp_path / "data"
    with BrokerProcess(data) as broker:
        params = pika.ConnectionParameters(broker.host, broker.port)
        connection = pika.BlockingConnection(params)
        channel = connection.channel()
        channel.queue_declare("damaged", durable=True)
        channel.confirm_delivery()
        persistent = pika.BasicProperties(delivery_mode=2)
        for i in range(count):
            channel.basic_publish("", "damaged", struct.pack(">Q", i) * (size // 8), persistent)
        # The pager runs every 100 ms: the bodies past the head (256 of 64 KiB) leave memory.
        api = Api(broker.http_port())
        deadline = time.monotonic() + 30
        while api.get("/api/queues/%2F/damaged")["messages_paged_out"] < count - 256:
            assert time.monotonic() < deadline, api.get("/api/queues/%2F/damaged")
            time.sleep(0.05)
        damaged = 0
        for segment in data.glob("**/segment-*.log"):
            content = segment.read_bytes()
            for number in lost:
                at = content.find(struct.pack(">Q", number) * 16)
                if at >= 0:
                    with segment.open("r+b") as file:  # in place: the broker keeps it open
                        file.seek(at + 100)
                        file.write(b"\xff")
                    damaged += 1
        assert damaged == len(lost)
        seen = []
        while not seen or seen[-1] < 950:
            method, _properties, body = channel.basic_get("damaged")
            assert method is not None, f"empty after {len(seen)}"
            seen.append(struct.unpack(">Q", body[:8])[0])
            channel.basic_ack(method.delivery_tag)
        channel.basic_qos(prefetch_count=100)
        for method, _properties, body in channel.consume("damaged", inactivity_timeout=10):
            if method is None:
                break
            number = struct.unpack(">Q", body[:8])[0]
            assert body == struct.pack(">Q", number) * (size // 8)
            seen.append(number)
            channel.basic_ack(method.delivery_tag)
        assert seen == [i for i in range(count) if i not in lost]
        channel.cancel()
        # the broker keeps serving: the queue is empty, nothing loops or is redelivered
        assert channel.queue_declare("damaged", durable=True).method.message_count == 0
        channel.basic_publish("", "damaged", b"after", persistent)
        method, _properties, body = channel.basic_get("damaged", auto_ack=True)
        assert body == b"after"
        connection.close()
        assert broker.wait_for_log("dropped a message whose body is lost")
        lines = [line for line in broker.log_lines if "lost" in line or "Traceback" in line]
        assert len(lines) == len(lost), lines
