"""`amqpctl` end to end: the installed console script against a real amqpd's management API."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from tests.broker_process import BrokerProcess
from tests.mgmt_client import start_mgmt_broker

AMQPCTL = str(Path(sys.executable).with_name("amqpctl"))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc, _api = start_mgmt_broker(tmp_path_factory.mktemp("amqpd-ctl"))
    try:
        yield proc
    finally:
        proc.stop()


def ctl(broker: BrokerProcess, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    url = f"http://127.0.0.1:{broker.http_port()}"
    return subprocess.run(
        [AMQPCTL, "--url", url, *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
    )


@pytest.fixture
def name() -> str:
    return f"c-{uuid.uuid4().hex[:10]}"


def _channel(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            "127.0.0.1", broker.port, credentials=pika.PlainCredentials("guest", "guest")
        )
    )


def test_list_queues_like_rabbitmqctl(broker: BrokerProcess, name: str) -> None:
    connection = _channel(broker)
    channel = connection.channel()
    channel.queue_declare(name, durable=True)
    for _ in range(3):
        channel.basic_publish("", name, b"x")
    result = ctl(broker, "list_queues")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Listing queues for vhost / ..."
    assert lines[1] == "name\tmessages"
    assert f"{name}\t3" in lines
    result = ctl(broker, "-q", "list_queues", "name", "durable", "messages_ready", "consumers")
    lines = result.stdout.splitlines()
    assert lines[0] == "name\tdurable\tmessages_ready\tconsumers"
    assert f"{name}\ttrue\t3\t0" in lines
    result = ctl(broker, "--formatter", "json", "list_queues", "name", "messages")
    assert {"name": name, "messages": 3} in json.loads(result.stdout)
    connection.close()


def test_purge_and_delete(broker: BrokerProcess, name: str) -> None:
    connection = _channel(broker)
    channel = connection.channel()
    channel.queue_declare(name)
    channel.basic_publish("", name, b"x")
    assert ctl(broker, "delete_queue", name, "--if-empty").returncode == 65
    assert ctl(broker, "purge_queue", name).returncode == 0
    assert channel.queue_declare(name, passive=True).method.message_count == 0
    assert ctl(broker, "delete_queue", name).returncode == 0
    result = ctl(broker, "delete_queue", name)
    assert result.returncode == 65 and result.stderr.startswith("Error: not found")
    connection.close()


def test_other_lists(broker: BrokerProcess, name: str) -> None:
    connection = _channel(broker)
    channel = connection.channel()
    channel.exchange_declare(name, "fanout")
    channel.queue_declare(name)
    channel.queue_bind(name, name)
    channel.basic_consume(name, lambda *args: None, consumer_tag=f"{name}-tag")
    exchanges = ctl(broker, "-q", "list_exchanges").stdout.splitlines()
    assert f"{name}\tfanout" in exchanges
    bindings = ctl(broker, "-q", "list_bindings").stdout.splitlines()
    assert f"{name}\texchange\t{name}\tqueue\t{name}\t{{}}" in bindings
    consumers = ctl(broker, "-q", "list_consumers", "queue_name", "consumer_tag").stdout
    assert f"{name}\t{name}-tag" in consumers.splitlines()
    connections = ctl(broker, "-q", "list_connections").stdout.splitlines()
    assert connections[0] == "user\tpeer_host\tpeer_port\tstate"
    assert any(line.startswith("guest\t127.0.0.1\t") for line in connections[1:])
    channels = ctl(broker, "-q", "list_channels", "consumer_count").stdout.splitlines()
    assert "1" in channels[1:]
    assert ctl(broker, "-q", "list_vhosts").stdout.splitlines() == ["name", "/", "other"]
    users = ctl(broker, "-q", "list_users").stdout.splitlines()
    assert "guest\t[administrator]" in users
    connection.close()


def test_close_connection(broker: BrokerProcess) -> None:
    connection = _channel(broker)
    connection.channel()
    names = ctl(broker, "-q", "--no-table-headers", "list_connections", "name").stdout
    assert ctl(broker, "close_connection", names.splitlines()[0], "maintenance").returncode == 0
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        for _ in range(100):
            connection.process_data_events(0.05)
    assert (closed.value.reply_code, closed.value.reply_text) == (
        320,
        "CONNECTION_FORCED - maintenance",
    )


def test_definitions_round_trip(broker: BrokerProcess, name: str, tmp_path: Path) -> None:
    connection = _channel(broker)
    channel = connection.channel()
    channel.exchange_declare(name, "topic", durable=True)
    channel.queue_declare(name, durable=True, arguments={"x-max-length": 7})
    channel.queue_bind(name, name, "a.*")
    exported = tmp_path / "defs.json"
    assert ctl(broker, "export_definitions", str(exported)).returncode == 0
    data = json.loads(exported.read_text())
    assert {
        "name": name,
        "vhost": "/",
        "durable": True,
        "auto_delete": False,
        "arguments": {"x-max-length": 7},
    } in data["queues"]
    channel.queue_delete(name)
    channel.exchange_delete(name)
    assert ctl(broker, "import_definitions", str(exported)).returncode == 0
    assert channel.queue_declare(name, passive=True).method.message_count == 0
    channel.basic_publish(name, "a.b", b"routed")
    assert channel.basic_get(name, auto_ack=True)[2] == b"routed"
    connection.close()


def test_status_and_errors(broker: BrokerProcess) -> None:
    result = ctl(broker, "status")
    assert result.returncode == 0
    assert "Queues: " in result.stdout and "Listener: amqp on 127.0.0.1:" in result.stdout
    assert ctl(broker, "await_startup").returncode == 0
    bad_login = ctl(broker, "--password", "wrong", "list_queues")
    assert bad_login.returncode == 77 and bad_login.stderr.startswith("Error: access refused")
    assert ctl(broker, "list_queues", "nonsense").returncode == 64
    assert ctl(broker, "no_such_command").returncode == 64
    unreachable = subprocess.run(
        [AMQPCTL, "--url", "http://127.0.0.1:9", "list_queues"], capture_output=True, text=True
    )
    assert unreachable.returncode == 69
    assert "unable to connect" in unreachable.stderr


def test_move_messages_to_another_broker(broker: BrokerProcess, name: str, tmp_path: Path) -> None:
    with BrokerProcess(tmp_path / "target") as target:
        connection = _channel(broker)
        channel = connection.channel()
        channel.queue_declare(name, durable=True, arguments={"x-max-length": 10_000})
        for index in range(500):
            channel.basic_publish(
                "",
                name,
                f"body-{index}".encode(),
                pika.BasicProperties(
                    headers={"n": index, "tag": "moved"},
                    delivery_mode=2,
                    message_id=f"id-{index}",
                    content_type="text/plain",
                ),
            )
        target_url = f"amqp://guest:guest@127.0.0.1:{target.port}/%2F"
        result = ctl(broker, "move_messages", name, "--to", target_url, "--window", "50")
        assert result.returncode == 0, result.stderr
        assert f"{name}: 500/500 moved" in result.stderr
        assert "at most 50 in-flight messages" in result.stderr
        assert channel.queue_declare(name, passive=True).method.message_count == 0
        moved = pika.BlockingConnection(
            pika.ConnectionParameters(
                "127.0.0.1", target.port, credentials=pika.PlainCredentials("guest", "guest")
            )
        )
        out = moved.channel()
        declared = out.queue_declare(name, passive=True)
        assert declared.method.message_count == 500
        for index in range(500):
            method, properties, body = out.basic_get(name, auto_ack=True)
            assert body == f"body-{index}".encode()
            assert properties.headers == {"n": index, "tag": "moved"}
            assert (properties.message_id, properties.delivery_mode) == (f"id-{index}", 2)
            assert properties.content_type == "text/plain"
        moved.close()
        connection.close()
