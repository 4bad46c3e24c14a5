"""Test controls (`test_controls: true`): the movable broker clock and fault injection, seen by
real clients over real sockets. amqpd-only: RabbitMQ has no such endpoints."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest

from tests.broker_process import BrokerProcess, external_broker
from tests.mgmt_client import Api, q, start_mgmt_broker

pytestmark = pytest.mark.skipif(external_broker() is not None, reason="amqpd's own controls")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BrokerProcess, Api]]:
    proc, api = start_mgmt_broker(tmp_path_factory.mktemp("controls"), "--test-controls", "on")
    try:
        yield proc, api
    finally:
        proc.stop()


def _connect(proc: BrokerProcess, name: str) -> pika.BlockingConnection:
    params = pika.ConnectionParameters(
        proc.host, proc.port, client_properties={"connection_name": name}
    )
    return pika.BlockingConnection(params)


def _wait_connection(api: Api, name: str) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if any(c.get("user_provided_name") == name for c in api.get("/api/connections")):
            return
        time.sleep(0.02)
    raise AssertionError(f"connection {name} not listed")


def test_off_by_default(tmp_path: Path) -> None:
    proc, api = start_mgmt_broker(tmp_path)
    try:
        status, _body, _ = api.request("GET", "/api/amqpd-test/clock")
        assert status == 404
        status, _body, _ = api.request("POST", "/api/amqpd-test/clock/advance", {"seconds": 1})
        assert status == 404
    finally:
        proc.stop()


def test_advance_expires_an_hour_ttl_at_once(broker: tuple[BrokerProcess, Api]) -> None:
    proc, api = broker
    with _connect(proc, "ttl") as connection:
        channel = connection.channel()
        channel.queue_declare("controls.ttl", arguments={"x-message-ttl": 3_600_000})
        channel.basic_publish("", "controls.ttl", b"soon stale")
        channel.basic_publish(
            "", "controls.ttl", b"fresh", pika.BasicProperties(expiration="7200000")
        )
        assert channel.queue_declare("controls.ttl", passive=True).method.message_count == 2
        before = api.get("/api/amqpd-test/clock")
        started = time.monotonic()
        status, after, _ = api.request("POST", "/api/amqpd-test/clock/advance", {"seconds": 3601})
        assert status == 200
        assert time.monotonic() - started < 1.0
        assert after["offset"] == pytest.approx(before["offset"] + 3601)
        assert after["now"] - before["now"] >= 3_601_000
        # the per-message 2-hour expiration is capped by the queue's 1-hour TTL: both expire
        assert channel.queue_declare("controls.ttl", passive=True).method.message_count == 0
        channel.queue_delete("controls.ttl")


def test_advance_expires_an_unused_queue(broker: tuple[BrokerProcess, Api]) -> None:
    proc, api = broker
    with _connect(proc, "expires") as connection:
        channel = connection.channel()
        channel.queue_declare("controls.expires", arguments={"x-expires": 1_800_000})
        api.request("POST", "/api/amqpd-test/clock/advance", {"seconds": 1700})
        channel.queue_declare("controls.expires", passive=True)  # still there (and used again)
        api.request("POST", "/api/amqpd-test/clock/advance", {"seconds": 1801})
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
            channel.queue_declare("controls.expires", passive=True)
        assert raised.value.reply_code == 404


def test_connections_keep_real_time_unless_asked(broker: tuple[BrokerProcess, Api]) -> None:
    proc, api = broker
    with _connect(proc, "heartbeats") as connection:
        _wait_connection(api, "heartbeats")
        listed = [c for c in api.get("/api/connections") if c["user_provided_name"] == "heartbeats"]
        assert listed[0]["timeout"] == 60  # the negotiated heartbeat
        channel = connection.channel()
        api.request("POST", "/api/amqpd-test/clock/advance", {"seconds": 600})
        connection.process_data_events(time_limit=0.2)
        channel.queue_declare("", exclusive=True)  # still up: heartbeats are real time
        status, _body, _ = api.request(
            "POST", "/api/amqpd-test/clock/advance", {"seconds": 121, "connections": True}
        )
        assert status == 200
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            for _ in range(50):
                connection.process_data_events(time_limit=0.05)
                channel.queue_declare("", exclusive=True)
    assert proc.wait_for_log("missed heartbeats from client")


def test_advance_rejects_going_back(broker: tuple[BrokerProcess, Api]) -> None:
    _proc, api = broker
    for body in ({"seconds": -1}, {"seconds": "1"}, {}, {"seconds": 1, "connections": 1}):
        status, _reply, _ = api.request("POST", "/api/amqpd-test/clock/advance", body)
        assert status == 400, body


def test_reset_drops_the_socket(broker: tuple[BrokerProcess, Api]) -> None:
    proc, api = broker
    connection = _connect(proc, "to-reset")
    channel = connection.channel()
    _wait_connection(api, "to-reset")
    status, _body, _ = api.request("POST", "/api/amqpd-test/connections/to-reset/reset")
    assert status == 204
    with pytest.raises(pika.exceptions.AMQPConnectionError) as raised:
        for _ in range(50):
            channel.queue_declare("", exclusive=True)
            time.sleep(0.02)
    assert not isinstance(raised.value, pika.exceptions.ConnectionClosedByBroker)
    status, _body, _ = api.request("POST", "/api/amqpd-test/connections/nobody/reset")
    assert status == 404


def test_delete_closes_with_320(broker: tuple[BrokerProcess, Api]) -> None:
    proc, api = broker
    connection = _connect(proc, "to-close")
    _wait_connection(api, "to-close")
    name = next(
        c["name"] for c in api.get("/api/connections") if c["user_provided_name"] == "to-close"
    )
    status, _body, _ = api.request("DELETE", f"/api/connections/{q(name)}")
    assert status == 204
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as raised:
        connection.process_data_events(time_limit=2)
        connection.channel()
    assert raised.value.reply_code == 320


def test_blocked_and_unblocked(broker: tuple[BrokerProcess, Api]) -> None:
    proc, api = broker
    events: list[str] = []
    with _connect(proc, "to-block") as connection:
        connection.add_on_connection_blocked_callback(
            lambda _c, frame: events.append("blocked: " + frame.method.reason)
        )
        connection.add_on_connection_unblocked_callback(lambda _c, _f: events.append("unblocked"))
        _wait_connection(api, "to-block")
        path = "/api/amqpd-test/connections/to-block/blocked"
        status, _body, _ = api.request("POST", path, {"reason": "test says so"})
        assert status == 204
        connection.process_data_events(time_limit=0.3)
        assert events == ["blocked: test says so"]
        status, _body, _ = api.request("DELETE", path)
        assert status == 204
        connection.process_data_events(time_limit=0.3)
        assert events == ["blocked: test says so", "unblocked"]


def test_server_side_cancel(broker: tuple[BrokerProcess, Api]) -> None:
    proc, api = broker
    cancelled: list[str] = []
    with _connect(proc, "to-cancel") as connection:
        channel = connection.channel()
        channel.queue_declare("controls.cancel")
        channel.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
        channel.basic_consume("controls.cancel", lambda *_: None, consumer_tag="ctag-1")
        assert api.get(f"/api/queues/{q('/')}/controls.cancel")["consumers"] == 1
        status, _body, _ = api.request("POST", f"/api/amqpd-test/consumers/{q('/')}/ctag-1/cancel")
        assert status == 204
        connection.process_data_events(time_limit=0.3)
        assert cancelled == ["ctag-1"]
        assert api.get(f"/api/queues/{q('/')}/controls.cancel")["consumers"] == 0
        status, _body, _ = api.request("POST", f"/api/amqpd-test/consumers/{q('/')}/ctag-1/cancel")
        assert status == 404
        channel.queue_delete("controls.cancel")


def test_failing_writes_block_publishers_then_recover(broker: tuple[BrokerProcess, Api]) -> None:
    proc, api = broker
    events: list[str] = []
    with _connect(proc, "disk-full") as connection:
        connection.add_on_connection_blocked_callback(lambda _c, _f: events.append("blocked"))
        connection.add_on_connection_unblocked_callback(lambda _c, _f: events.append("unblocked"))
        channel = connection.channel()
        channel.queue_declare("controls.disk", durable=True)
        status, _body, _ = api.request("POST", "/api/amqpd-test/store/fail-writes", {"seconds": 1})
        assert status == 204
        persistent = pika.BasicProperties(delivery_mode=2)
        channel.basic_publish("", "controls.disk", b"x", persistent)
        # The failed write sets the disk alarm; as in RabbitMQ, it blocks this connection at
        # its next publish ("blocking" until then).
        deadline = time.monotonic() + 10
        while _state(api, "disk-full") != "blocking" and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.05)
        assert events == [] and _state(api, "disk-full") == "blocking"
        channel.basic_publish("", "controls.disk", b"y", persistent)
        while events != ["blocked", "unblocked"] and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.1)
        assert events == ["blocked", "unblocked"]
        assert api.get(f"/api/queues/{q('/')}/controls.disk")["messages"] == 2
        channel.queue_delete("controls.disk")


def _state(api: Api, name: str) -> str:
    """The management API's state of the connection named `name`."""
    for connection in api.get("/api/connections"):
        if connection["client_properties"].get("connection_name") == name:
            return str(connection["state"])
    return "gone"
