"""The six classic RabbitMQ tutorials, written as tests with pika.

Each test follows one tutorial (hello world, work queues, publish/subscribe, routing,
topics, RPC) with its entity names prefixed by the `unique` fixture, and asserts what the
tutorial promises a reader will see.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.exceptions import ChannelClosedByBroker

from tests.conftest import BrokerAddress
from tests.pumping import pump, settle

Delivery = tuple[pika.spec.Basic.Deliver, pika.BasicProperties, bytes]


def drop_socket(conn: BlockingConnection) -> None:
    """Kill a client the hard way: shut its TCP socket down without an AMQP close."""
    sock: socket.socket = conn._impl._transport._sock  # type: ignore[attr-defined]
    sock.shutdown(socket.SHUT_RDWR)


def get_all(ch: BlockingChannel, queue: str) -> list[bytes]:
    """Drain a queue with basic.get (auto-ack) and return the bodies in order."""
    bodies = []
    while True:
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return bodies
        bodies.append(body)


@pytest.fixture
def connect(broker: BrokerAddress) -> Iterator[Callable[[], BlockingConnection]]:
    """Open extra pika connections (one per 'process' of a tutorial); closed at teardown."""
    opened: list[BlockingConnection] = []

    def open_one() -> BlockingConnection:
        conn = pika.BlockingConnection(broker.params())
        opened.append(conn)
        return conn

    yield open_one
    for conn in opened:
        try:
            if conn.is_open:
                conn.close()
        except Exception:  # a test may have killed this socket on purpose
            pass


# --- 1. "Hello World!" -------------------------------------------------------------------


def test_hello_world(connect, unique):
    queue = f"{unique}-hello"
    sender = connect().channel()
    sender.queue_declare(queue=queue)
    sender.basic_publish(exchange="", routing_key=queue, body=b"Hello World!")

    receiver_conn = connect()
    receiver = receiver_conn.channel()
    receiver.queue_declare(queue=queue)  # idempotent, as in the tutorial
    received: list[bytes] = []
    receiver.basic_consume(
        queue=queue, on_message_callback=lambda c, m, p, b: received.append(b), auto_ack=True
    )
    pump([receiver_conn], lambda: len(received) == 1)
    assert received == [b"Hello World!"]
    settle([receiver_conn])
    assert received == [b"Hello World!"]
    sender.queue_delete(queue)


# --- 2. Work queues ----------------------------------------------------------------------


def _worker(
    conn: BlockingConnection,
    queue: str,
    sink: list[Delivery],
    *,
    ack: bool,
    prefetch: int | None = None,
) -> BlockingChannel:
    ch = conn.channel()
    ch.queue_declare(queue=queue, durable=True)
    if prefetch is not None:
        ch.basic_qos(prefetch_count=prefetch)

    def on_message(c: BlockingChannel, m, p, b) -> None:  # type: ignore[no-untyped-def]
        sink.append((m, p, b))
        if ack:
            c.basic_ack(delivery_tag=m.delivery_tag)

    ch.basic_consume(queue=queue, on_message_callback=on_message)
    return ch


def test_work_queue_round_robin(connect, unique):
    queue = f"{unique}-task_queue"
    a_conn, b_conn = connect(), connect()
    got_a: list[Delivery] = []
    got_b: list[Delivery] = []
    _worker(a_conn, queue, got_a, ack=True)
    _worker(b_conn, queue, got_b, ack=True)

    producer = connect().channel()
    producer.queue_declare(queue=queue, durable=True)
    tasks = [f"task {i}{'.' * i}".encode() for i in range(1, 7)]
    for body in tasks:
        producer.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))

    pump([a_conn, b_conn], lambda: len(got_a) + len(got_b) == 6)
    bodies_a = [b for _m, _p, b in got_a]
    bodies_b = [b for _m, _p, b in got_b]
    # Each worker gets every other task, in publish order.
    assert sorted([bodies_a, bodies_b]) == sorted([tasks[0::2], tasks[1::2]])
    assert all(p.delivery_mode == 2 for _m, p, _b in got_a + got_b)
    assert all(not m.redelivered for m, _p, _b in got_a + got_b)
    producer.queue_delete(queue)


@pytest.mark.parametrize("how", ["close", "drop"])
def test_work_queue_killed_worker_task_is_redelivered(connect, unique, how):
    queue = f"{unique}-task_queue"
    producer = connect().channel()
    producer.queue_declare(queue=queue, durable=True)

    doomed_conn = connect()
    doomed: list[Delivery] = []
    _worker(doomed_conn, queue, doomed, ack=False)
    producer.basic_publish("", queue, b"long task...", pika.BasicProperties(delivery_mode=2))
    pump([doomed_conn], lambda: len(doomed) == 1)
    assert doomed[0][0].redelivered is False

    # The worker dies mid-task, never acking.
    if how == "close":
        doomed_conn.close()
    else:
        drop_socket(doomed_conn)

    survivor_conn = connect()
    survivor: list[Delivery] = []
    _worker(survivor_conn, queue, survivor, ack=True)
    pump([survivor_conn], lambda: len(survivor) == 1)
    method, props, body = survivor[0]
    assert body == b"long task..."
    assert method.redelivered is True
    assert props.delivery_mode == 2
    settle([survivor_conn])
    assert len(survivor) == 1

    # Acked by the survivor: the queue is now empty.
    assert producer.queue_declare(queue=queue, passive=True).method.message_count == 0
    producer.queue_delete(queue)


def test_work_queue_durability_is_checked_on_redeclare(connect, unique):
    queue = f"{unique}-task_queue"
    ch = connect().channel()
    ok = ch.queue_declare(queue=queue, durable=True)
    assert ok.method.queue == queue
    ch.basic_publish("", queue, b"persist me", pika.BasicProperties(delivery_mode=2))
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.queue_declare(queue=queue, durable=False)
    assert info.value.reply_code == 406
    assert info.value.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'durable' for queue '{queue}' "
        "in vhost '/': received 'false' but current is 'true'"
    )
    ch2 = connect().channel()
    method, props, body = ch2.basic_get(queue, auto_ack=True)
    assert body == b"persist me" and props.delivery_mode == 2
    ch2.queue_delete(queue)


def test_work_queue_fair_dispatch_with_prefetch_one(connect, unique):
    queue = f"{unique}-task_queue"
    slow_conn, fast_conn = connect(), connect()
    slow: list[Delivery] = []
    fast: list[Delivery] = []
    slow_ch = _worker(slow_conn, queue, slow, ack=False, prefetch=1)  # busy forever
    _worker(fast_conn, queue, fast, ack=True, prefetch=1)

    producer = connect().channel()
    tasks = [f"task {i}".encode() for i in range(10)]
    for body in tasks:
        producer.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))

    pump([slow_conn, fast_conn], lambda: len(slow) + len(fast) == 10)
    settle([slow_conn, fast_conn])
    assert len(slow) == 1, "a busy consumer with prefetch_count=1 must get no more work"
    assert len(fast) == 9
    assert sorted(b for _m, _p, b in slow + fast) == sorted(tasks)
    # The fast worker saw its share in publish order.
    fast_bodies = [b for _m, _p, b in fast]
    assert fast_bodies == [t for t in tasks if t != slow[0][2]]

    # When the slow worker finally acks, the queue is drained and nothing is left over.
    slow_ch.basic_ack(slow[0][0].delivery_tag)
    settle([slow_conn, fast_conn])
    assert producer.queue_declare(queue=queue, passive=True).method.message_count == 0
    assert len(slow) == 1
    producer.queue_delete(queue)


# --- 3. Publish/Subscribe ----------------------------------------------------------------


def test_publish_subscribe_fanout(connect, unique):
    exchange = f"{unique}-logs"
    subscribers = []
    for _ in range(2):
        conn = connect()
        ch = conn.channel()
        ch.exchange_declare(exchange=exchange, exchange_type="fanout")
        result = ch.queue_declare(queue="", exclusive=True)
        name = result.method.queue
        assert name.startswith("amq.gen-")
        ch.queue_bind(exchange=exchange, queue=name)
        sink: list[bytes] = []
        ch.basic_consume(
            queue=name, on_message_callback=lambda c, m, p, b, s=sink: s.append(b), auto_ack=True
        )
        subscribers.append((conn, name, sink))
    assert subscribers[0][1] != subscribers[1][1]

    emitter = connect().channel()
    emitter.exchange_declare(exchange=exchange, exchange_type="fanout")
    logs = [b"info: Hello World!", b"warning: disk", b"error: boom"]
    for body in logs:
        # The routing key is ignored by a fanout exchange.
        emitter.basic_publish(exchange=exchange, routing_key=f"ignored-{body[:4]!r}", body=body)

    conns = [s[0] for s in subscribers]
    pump(conns, lambda: all(len(s[2]) == 3 for s in subscribers))
    settle(conns)
    for _conn, _name, sink in subscribers:
        assert sink == logs

    # Exclusive server-named queues vanish with their connection.
    for conn, _name, _sink in subscribers:
        conn.close()
    for _conn, name, _sink in subscribers:
        with pytest.raises(ChannelClosedByBroker) as info:
            connect().channel().queue_declare(queue=name, passive=True)
        assert info.value.reply_code == 404
    emitter.exchange_delete(exchange)


# --- 4. Routing --------------------------------------------------------------------------


def test_routing_direct(connect, unique):
    exchange = f"{unique}-direct_logs"
    ch = connect().channel()
    ch.exchange_declare(exchange=exchange, exchange_type="direct")
    errors_only = ch.queue_declare(queue="", exclusive=True).method.queue
    everything = ch.queue_declare(queue="", exclusive=True).method.queue
    also_errors = ch.queue_declare(queue="", exclusive=True).method.queue
    ch.queue_bind(queue=errors_only, exchange=exchange, routing_key="error")
    for severity in ("info", "warning", "error"):  # several keys on one queue
        ch.queue_bind(queue=everything, exchange=exchange, routing_key=severity)
    ch.queue_bind(queue=also_errors, exchange=exchange, routing_key="error")  # several queues
    ch.queue_bind(queue=also_errors, exchange=exchange, routing_key="error")  # idempotent

    for severity in ("info", "debug", "warning", "error", "Error"):
        ch.basic_publish(exchange=exchange, routing_key=severity, body=severity.encode())

    # A round trip so the publishes have been routed before we look.
    ch.queue_declare(queue=errors_only, passive=True)
    assert get_all(ch, errors_only) == [b"error"]
    assert get_all(ch, everything) == [b"info", b"warning", b"error"]
    assert get_all(ch, also_errors) == [b"error"]

    ch.queue_unbind(queue=everything, exchange=exchange, routing_key="info")
    ch.basic_publish(exchange=exchange, routing_key="info", body=b"info again")
    ch.basic_publish(exchange=exchange, routing_key="warning", body=b"warning again")
    ch.queue_declare(queue=errors_only, passive=True)
    assert get_all(ch, everything) == [b"warning again"]
    ch.exchange_delete(exchange)


# --- 5. Topics ---------------------------------------------------------------------------


def test_topics(connect, unique):
    exchange = f"{unique}-topic_logs"
    ch = connect().channel()
    ch.exchange_declare(exchange=exchange, exchange_type="topic")
    q1 = ch.queue_declare(queue="", exclusive=True).method.queue
    q2 = ch.queue_declare(queue="", exclusive=True).method.queue
    q_all = ch.queue_declare(queue="", exclusive=True).method.queue
    ch.queue_bind(queue=q1, exchange=exchange, routing_key="*.orange.*")
    ch.queue_bind(queue=q2, exchange=exchange, routing_key="*.*.rabbit")
    ch.queue_bind(queue=q2, exchange=exchange, routing_key="lazy.#")
    ch.queue_bind(queue=q_all, exchange=exchange, routing_key="#")

    keys = [
        "quick.orange.rabbit",  # q1 q2
        "lazy.orange.elephant",  # q1 q2
        "quick.orange.fox",  # q1
        "lazy.brown.fox",  # q2
        "lazy.pink.rabbit",  # q2, once although both of its bindings match
        "quick.brown.fox",  # nobody but '#'
        "orange",  # nobody but '#'
        "quick.orange.male.rabbit",  # nobody but '#'
        "lazy.orange.male.rabbit",  # q2
        "lazy",  # q2: '#' matches zero words
        "",  # only '#'
        "quick..rabbit",  # q2: an empty word is still a word for '*'
    ]
    for key in keys:
        ch.basic_publish(exchange=exchange, routing_key=key, body=key.encode())
    ch.queue_declare(queue=q1, passive=True)

    assert get_all(ch, q1) == [b"quick.orange.rabbit", b"lazy.orange.elephant", b"quick.orange.fox"]
    assert get_all(ch, q2) == [
        b"quick.orange.rabbit",
        b"lazy.orange.elephant",
        b"lazy.brown.fox",
        b"lazy.pink.rabbit",
        b"lazy.orange.male.rabbit",
        b"lazy",
        b"quick..rabbit",
    ]
    assert get_all(ch, q_all) == [k.encode() for k in keys]
    ch.exchange_delete(exchange)


# --- 6. RPC ------------------------------------------------------------------------------


def _fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def test_rpc(connect, unique):
    rpc_queue = f"{unique}-rpc_queue"
    server_conn = connect()
    server = server_conn.channel()
    server.queue_declare(queue=rpc_queue)
    server.basic_qos(prefetch_count=1)

    def on_request(ch: BlockingChannel, method, props, body) -> None:  # type: ignore[no-untyped-def]
        response = str(_fib(int(body))).encode()
        ch.basic_publish(
            exchange="",
            routing_key=props.reply_to,
            properties=pika.BasicProperties(correlation_id=props.correlation_id),
            body=response,
        )
        ch.basic_ack(delivery_tag=method.delivery_tag)

    server.basic_consume(queue=rpc_queue, on_message_callback=on_request)

    client_conn = connect()
    client = client_conn.channel()
    callback_queue = client.queue_declare(queue="", exclusive=True).method.queue
    responses: dict[str, bytes] = {}
    client.basic_consume(
        queue=callback_queue,
        on_message_callback=lambda c, m, p, b: responses.__setitem__(p.correlation_id, b),
        auto_ack=True,
    )

    # A stale reply with an unknown correlation id must be ignored by the client logic.
    client.basic_publish(
        "", callback_queue, b"stale", pika.BasicProperties(correlation_id="not-ours")
    )
    requests = {f"{unique}-corr-{n}": n for n in (0, 1, 10, 30)}
    for corr_id, n in requests.items():
        client.basic_publish(
            exchange="",
            routing_key=rpc_queue,
            properties=pika.BasicProperties(reply_to=callback_queue, correlation_id=corr_id),
            body=str(n).encode(),
        )
    pump([client_conn, server_conn], lambda: all(c in responses for c in requests))
    for corr_id, n in requests.items():
        assert int(responses[corr_id]) == _fib(n)
    assert responses["not-ours"] == b"stale"
    assert _fib(30) == 832040
    server.queue_delete(rpc_queue)
