"""Real operator tools against amqpd's management API: Debian's rabbitmqadmin and the call
Flower's Broker tab makes. Skipped where the tool is not installed."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pika
import pytest

from tests.broker_process import BrokerProcess
from tests.mgmt_client import Api, start_mgmt_broker

RABBITMQADMIN = shutil.which("rabbitmqadmin")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BrokerProcess, Api]]:
    proc, api = start_mgmt_broker(tmp_path_factory.mktemp("amqpd-tools"))
    try:
        yield proc, api
    finally:
        proc.stop()


def admin(proc: BrokerProcess, *args: str) -> str:
    assert RABBITMQADMIN is not None
    result = subprocess.run(
        [RABBITMQADMIN, "-H", "127.0.0.1", "-P", str(proc.http_port()), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


@pytest.mark.skipif(RABBITMQADMIN is None, reason="rabbitmqadmin is not installed")
def test_rabbitmqadmin_declare_publish_get_list_delete(broker: tuple[BrokerProcess, Api]) -> None:
    proc, _api = broker
    name = f"ra-{uuid.uuid4().hex[:8]}"
    assert "queue declared" in admin(proc, "declare", "queue", f"name={name}", "durable=false")
    admin(proc, "declare", "exchange", f"name={name}-x", "type=topic")
    admin(proc, "declare", "binding", f"source={name}-x", f"destination={name}", "routing_key=a.#")
    assert "Message published" in admin(
        proc, "publish", f"exchange={name}-x", "routing_key=a.b", "payload=hello"
    )
    queues = json.loads(admin(proc, "-f", "raw_json", "list", "queues"))
    assert {"name": name, "messages": 1}.items() <= next(
        q for q in queues if q["name"] == name
    ).items()
    got = json.loads(
        admin(proc, "-f", "raw_json", "get", f"queue={name}", "ackmode=ack_requeue_false")
    )
    assert [(m["payload"], m["routing_key"], m["exchange"]) for m in got] == [
        ("hello", "a.b", f"{name}-x")
    ]
    bindings = json.loads(admin(proc, "-f", "raw_json", "list", "bindings"))
    assert any(b["source"] == f"{name}-x" and b["destination"] == name for b in bindings)
    for listing in ("exchanges", "connections", "channels", "consumers", "vhosts", "users"):
        json.loads(admin(proc, "-f", "raw_json", "list", listing))
    overview = json.loads(admin(proc, "-f", "raw_json", "show", "overview"))
    assert overview[0]["object_totals"]["queues"] >= 1
    admin(proc, "delete", "queue", f"name={name}")
    admin(proc, "delete", "exchange", f"name={name}-x")
    queues = json.loads(admin(proc, "-f", "raw_json", "list", "queues"))
    assert all(q["name"] != name for q in queues)


def test_flower_broker_call(broker: tuple[BrokerProcess, Api]) -> None:
    """Flower's Broker tab: GET {broker_api}queues/{quoted vhost} and read these fields."""
    proc, api = broker
    name = f"celery-{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(
        pika.ConnectionParameters(
            "127.0.0.1", proc.port, credentials=pika.PlainCredentials("guest", "guest")
        )
    )
    channel = connection.channel()
    channel.queue_declare(name, durable=True)
    for _ in range(4):
        channel.basic_publish("", name, b"task")
    for path in ("/api/queues/%2F", "/api/queues//"):  # broker URLs ending in // and in /
        queues = [q for q in api.get(path) if q["name"] == name]
        assert len(queues) == 1
        queue = queues[0]
        assert (queue["messages"], queue["messages_ready"], queue["messages_unacknowledged"]) == (
            4,
            4,
            0,
        )
        assert queue["consumers"] == 0 and queue["vhost"] == "/"
    connection.close()
