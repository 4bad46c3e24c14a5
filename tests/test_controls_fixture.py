"""Test controls through the Python API: `amqpd.testing.Broker` (.clock, .faults,
.connections(), .wait_for_queue()) used directly with aio-pika and pika, and from the pytest
plugin's `amqpd` fixture in a throwaway project. amqpd-only: RabbitMQ has no such controls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import aio_pika
import aio_pika.exceptions
import aiormq.exceptions
import pika
import pytest

from amqpd.testing import Broker
from tests.broker_process import external_broker

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.skipif(external_broker() is not None, reason="amqpd's own controls")


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    with Broker() as started:
        yield started


def test_plugin_clock_advance_expires_an_hour_ttl(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time
        import pika
        import pytest

        def test_ttl(amqpd):
            conn = pika.BlockingConnection(pika.URLParameters(amqpd.url))
            ch = conn.channel()
            ch.queue_declare("ttl-q", arguments={"x-message-ttl": 3_600_000})
            ch.basic_publish("", "ttl-q", b"stale in an hour")
            amqpd.wait_for_queue("ttl-q", messages=1)
            before = amqpd.clock.now()
            started = time.monotonic()
            amqpd.clock.advance(3600)
            assert time.monotonic() - started < 1
            assert amqpd.clock.now() - before >= 3600
            assert ch.queue_declare("ttl-q", passive=True).method.message_count == 0
            conn.close()

        def test_faults(amqpd):
            params = pika.URLParameters(amqpd.url)
            params.client_properties = {"connection_name": "victim"}
            conn = pika.BlockingConnection(params)
            assert "victim" in [c["user_provided_name"] for c in amqpd.connections()]
            amqpd.faults.reset_connection("victim")
            with pytest.raises(pika.exceptions.AMQPConnectionError) as lost:
                conn.process_data_events(time_limit=2)
                conn.channel()
            assert not isinstance(lost.value, pika.exceptions.ConnectionClosedByBroker)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:asyncio")
    result.assert_outcomes(passed=2)


def test_controls_off_when_settings_say_so() -> None:
    with Broker(test_controls=False) as plain:
        with pytest.raises(Exception, match="HTTP 404"):
            plain.clock.advance(1)


def test_wait_for_queue(broker: Broker) -> None:
    with pytest.raises(TimeoutError, match="no such queue"):
        broker.wait_for_queue("fixture.wait", timeout=0.1)
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    channel = connection.channel()
    channel.queue_declare("fixture.wait")
    for _ in range(3):
        channel.basic_publish("", "fixture.wait", b"m")
    assert broker.wait_for_queue("fixture.wait", messages=3)["messages"] == 3
    with pytest.raises(TimeoutError, match="'consumers': 0"):
        broker.wait_for_queue("fixture.wait", consumers=1, timeout=0.2)
    channel.basic_consume("fixture.wait", lambda *_: None)
    assert broker.wait_for_queue("fixture.wait", consumers=1, messages=3)["consumers"] == 1
    connection.close()


async def _aio_connect(broker: Broker, name: str) -> aio_pika.abc.AbstractRobustConnection:
    return await aio_pika.connect(broker.url, client_properties={"connection_name": name})


def test_aio_pika_sees_a_reset(broker: Broker) -> None:
    async def scenario() -> None:
        connection = await _aio_connect(broker, "aio-reset")
        lost = asyncio.get_running_loop().create_future()
        connection.close_callbacks.add(lambda _conn, exc: lost.set_result(exc))
        await asyncio.to_thread(broker.faults.reset_connection, "aio-reset")
        error = await asyncio.wait_for(lost, 5)
        assert error is not None
        assert not isinstance(error, aiormq.exceptions.ConnectionClosed) or error.code != 320

    asyncio.run(scenario())


def test_aio_pika_sees_320(broker: Broker) -> None:
    async def scenario() -> None:
        connection = await _aio_connect(broker, "aio-320")
        lost = asyncio.get_running_loop().create_future()
        connection.close_callbacks.add(lambda _conn, exc: lost.set_result(exc))
        await asyncio.to_thread(broker.faults.close_connection, "aio-320", "test over")
        error = await asyncio.wait_for(lost, 5)
        assert isinstance(error, aiormq.exceptions.ConnectionClosed)
        assert error.args[0] == 320
        assert "test over" in error.args[1]

    asyncio.run(scenario())


def test_aio_pika_consumer_cancelled_by_broker(broker: Broker) -> None:
    async def scenario() -> None:
        async with await _aio_connect(broker, "aio-cancel") as connection:
            channel = await connection.channel()
            queue = await channel.declare_queue("fixture.cancel")

            async def ignore(_message: aio_pika.abc.AbstractIncomingMessage) -> None:
                pass

            tag = await queue.consume(ignore, consumer_tag="fixture-ctag")
            consumers = (await channel.get_underlay_channel()).consumers
            assert tag in consumers
            await asyncio.to_thread(broker.wait_for_queue, "fixture.cancel", consumers=1)
            await asyncio.to_thread(broker.faults.cancel_consumer, "/", "fixture-ctag")
            for _ in range(100):  # aiormq drops the consumer when basic.cancel arrives
                if tag not in consumers:
                    break
                await asyncio.sleep(0.01)
            assert tag not in consumers
            details = await asyncio.to_thread(broker.wait_for_queue, "fixture.cancel", consumers=0)
            assert details["consumers"] == 0
            await queue.delete()

    asyncio.run(scenario())


def test_pika_blocked_callbacks_and_disk_full(broker: Broker) -> None:
    params = pika.URLParameters(broker.url)
    params.client_properties = {"connection_name": "pika-blocked"}
    events: list[str] = []
    with pika.BlockingConnection(params) as connection:
        connection.add_on_connection_blocked_callback(
            lambda _c, frame: events.append(frame.method.reason)
        )
        connection.add_on_connection_unblocked_callback(lambda _c, _f: events.append("unblocked"))
        broker.faults.block("pika-blocked", "low on memory")
        connection.process_data_events(time_limit=0.3)
        broker.faults.unblock("pika-blocked")
        connection.process_data_events(time_limit=0.3)
        assert events == ["low on memory", "unblocked"]

        channel = connection.channel()
        channel.queue_declare("fixture.disk", durable=True)
        broker.faults.disk_full(2.0)
        # The first write that fails sets the disk alarm; as in RabbitMQ, the connection is
        # blocked at its next publish after that.
        published = 0
        deadline = time.monotonic() + 10
        while len(events) < 3 and time.monotonic() < deadline:
            channel.basic_publish("", "fixture.disk", b"x", pika.BasicProperties(delivery_mode=2))
            published += 1
            connection.process_data_events(time_limit=0.1)
        while len(events) < 4 and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.1)
        assert events[2:] == ["low on disk", "unblocked"]
        assert published >= 2
        broker.wait_for_queue("fixture.disk", messages=published)
        channel.queue_delete("fixture.disk")
