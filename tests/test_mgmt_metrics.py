"""Prometheus metrics: rabbitmq_prometheus names on their own listener, live values."""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator

import pika
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.broker_process import BrokerProcess


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with BrokerProcess(tmp_path_factory.mktemp("amqpd-metrics")) as proc:
        yield proc


def scrape(proc: BrokerProcess, path: str = "/metrics") -> dict[tuple[str, tuple], float]:
    port = proc.http_port("Prometheus metrics")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_totals_follow_the_broker(broker: BrokerProcess) -> None:
    name = f"p-{uuid.uuid4().hex[:8]}"
    before = scrape(broker)
    connection = pika.BlockingConnection(
        pika.ConnectionParameters(
            "127.0.0.1", broker.port, credentials=pika.PlainCredentials("guest", "guest")
        )
    )
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(name)
    for _ in range(3):
        channel.basic_publish("", name, b"x")
    method, _props, _body = channel.basic_get(name)
    channel.basic_nack(method.delivery_tag, requeue=True)
    method, _props, _body = channel.basic_get(name)  # the same message, redelivered
    channel.basic_ack(method.delivery_tag)
    channel.basic_get(name)  # left unacked
    connection.process_data_events(0.1)
    after = scrape(broker)
    proto = (("protocol", "amqp091"),)
    assert after[("rabbitmq_connections", ())] == 1
    assert after[("rabbitmq_channels", ())] == 1
    assert after[("rabbitmq_queues", ())] == before[("rabbitmq_queues", ())] + 1
    assert after[("rabbitmq_queue_messages_ready", ())] == 1
    assert after[("rabbitmq_queue_messages_unacked", ())] == 1
    assert after[("rabbitmq_queue_messages", ())] == 2

    def grew(metric: str) -> float:
        key = (metric, proto)
        return after[key] - before[key]

    assert grew("rabbitmq_global_messages_received_total") == 3
    assert grew("rabbitmq_global_messages_routed_total") == 3
    assert grew("rabbitmq_global_messages_confirmed_total") == 3
    assert grew("rabbitmq_global_messages_delivered_total") == 3
    assert grew("rabbitmq_global_messages_acknowledged_total") == 1
    assert grew("rabbitmq_global_messages_delivered_get_manual_ack_total") == 3
    assert grew("rabbitmq_global_messages_redelivered_total") == 1
    assert grew("rabbitmq_global_messages_delivered_get_auto_ack_total") == 0
    assert after[("rabbitmq_process_resident_memory_bytes", ())] > 1_000_000
    assert (("amqpd_recovery_seconds", (("vhost", "/"),))) in after
    assert after[("amqpd_store_batches_total", (("vhost", "/"),))] >= 0
    assert (("amqpd_store_disk_bytes", (("vhost", "/"),))) in after
    per_object = scrape(broker, "/metrics/per-object")
    labels = (("queue", name), ("vhost", "/"))
    assert per_object[("rabbitmq_queue_messages_ready", labels)] == 1
    assert per_object[("rabbitmq_queue_messages_unacked", labels)] == 1
    assert per_object[("rabbitmq_queue_messages_published_total", labels)] == 3
    odd = f'{name} "odd" \\ name'
    channel.queue_declare(odd)
    channel.basic_publish("", odd, b"x")
    per_object = scrape(broker, "/metrics/per-object")
    odd_labels = (("queue", odd), ("vhost", "/"))
    assert per_object[("rabbitmq_queue_messages", odd_labels)] == 1
    assert per_object[("rabbitmq_queue_consumers", odd_labels)] == 0
    channel.queue_delete(odd)
    connection.close()


def test_store_latency_histograms(broker: BrokerProcess) -> None:
    vhost = (("vhost", "/"),)
    before = scrape(broker)
    connection = pika.BlockingConnection(
        pika.ConnectionParameters(
            "127.0.0.1", broker.port, credentials=pika.PlainCredentials("guest", "guest")
        )
    )
    channel = connection.channel()
    channel.confirm_delivery()
    name = f"p-durable-{uuid.uuid4().hex[:8]}"
    channel.queue_declare(name, durable=True)
    for _ in range(5):  # each confirmed only after its batch was written and fdatasynced
        channel.basic_publish("", name, b"x", pika.BasicProperties(delivery_mode=2))
    connection.close()
    after = scrape(broker)
    for series in ("amqpd_store_write_seconds", "amqpd_store_fsync_seconds"):
        grown = after[(f"{series}_count", vhost)] - before.get((f"{series}_count", vhost), 0)
        assert grown >= 1, series
        inf = after[(f"{series}_bucket", (("le", "+Inf"), ("vhost", "/")))]
        assert inf == after[(f"{series}_count", vhost)]
        assert after[(f"{series}_sum", vhost)] > 0
