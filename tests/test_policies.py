"""Policies change behaviour, as in RabbitMQ 3.10: TTLs, dead-lettering, length limits,
queue expiry, delivery limits and alternate exchanges set by policy; RabbitMQ's precedence
against x-arguments; re-application when a policy is set, changed or cleared; priority
between policies; operator policies; a restart.

Real pika and real HTTP against a module's own amqpd, or against the broker named by
AMQPD_TEST_URL with its management API on AMQPD_TEST_MGMT_PORT (default 15673).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika
import pytest

from tests.broker_process import BrokerProcess, external_broker
from tests.mgmt_client import Api, q


@dataclass
class Target:
    host: str
    port: int
    api: Api
    proc: BrokerProcess | None  # None: an outside broker (no restart test)

    def connect(self) -> pika.BlockingConnection:
        credentials = pika.PlainCredentials("guest", "guest")
        return pika.BlockingConnection(
            pika.ConnectionParameters(self.host, self.port, credentials=credentials)
        )


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    outside = external_broker()
    if outside is not None:
        port = int(os.environ.get("AMQPD_TEST_MGMT_PORT", "15673"))
        yield Target(outside[0], outside[1], Api(port), None)
        return
    proc = BrokerProcess(tmp_path_factory.mktemp("amqpd-policy-data")).start()
    try:
        yield Target(proc.host, proc.port, Api(proc.http_port()), proc)
    finally:
        proc.stop()


@pytest.fixture
def channel(target: Target) -> Iterator[Any]:
    """A channel in confirm mode: RabbitMQ answers a passive declare ahead of the publishes
    its queue has not taken yet; a confirmed message is in its queue."""
    connection = target.connect()
    channel = connection.channel()
    channel.confirm_delivery()
    yield channel
    if connection.is_open:
        connection.close()


@pytest.fixture
def prefix() -> str:
    return f"pol-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def policies(target: Target) -> Iterator[Callable[..., None]]:
    """set(name, pattern, definition, priority=0, apply_to="all", operator=False); every
    policy set is cleared after the test."""
    made: list[str] = []

    def put(
        name: str,
        pattern: str,
        definition: dict[str, Any],
        priority: int = 0,
        apply_to: str = "all",
        operator: bool = False,
    ) -> None:
        kind = "operator-policies" if operator else "policies"
        path = f"/api/{kind}/%2F/{q(name)}"
        body = {"pattern": pattern, "definition": definition, "priority": priority}
        body["apply-to"] = apply_to
        status = target.api.request("PUT", path, body)[0]
        assert status in (201, 204)
        made.append(path)
        time.sleep(0.05)  # RabbitMQ applies a policy to its queue processes asynchronously

    yield put
    for path in made:
        target.api.request("DELETE", path)


def restart(target: Target) -> None:
    proc = target.proc
    assert proc is not None
    proc.stop()
    proc.http_ports.clear()
    proc.start()
    target.port = proc.port
    target.api = Api(proc.http_port())


def clear(target: Target, name: str) -> None:
    assert target.api.request("DELETE", f"/api/policies/%2F/{q(name)}")[0] == 204
    time.sleep(0.05)


def count(channel: Any, queue: str) -> int:
    return channel.queue_declare(queue, passive=True).method.message_count


def eventually(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def publish(channel: Any, queue: str, *bodies: bytes, **properties: Any) -> None:
    for body in bodies:
        channel.basic_publish("", queue, body, pika.BasicProperties(**properties))


def bodies(channel: Any, queue: str) -> list[bytes]:
    got = []
    while (item := channel.basic_get(queue, auto_ack=True))[0] is not None:
        got.append(item[2])
    return got


def test_message_ttl_policy_expires_messages(channel, policies, prefix):
    policies(prefix, f"^{prefix}$", {"message-ttl": 300}, apply_to="queues")
    channel.queue_declare(prefix)
    publish(channel, prefix, b"a", b"b")
    assert count(channel, prefix) == 2
    eventually(lambda: count(channel, prefix) == 0)
    channel.queue_delete(prefix)


def test_new_message_ttl_applies_to_later_messages_only(target, channel, policies, prefix):
    """As RabbitMQ: a message's expiry is fixed when it is enqueued."""
    channel.queue_declare(prefix)
    publish(channel, prefix, b"old")
    policies(prefix, f"^{prefix}$", {"message-ttl": 100})
    publish(channel, prefix, b"new")
    time.sleep(0.4)
    assert count(channel, prefix) == 2  # "new" waits behind the head that never expires
    assert channel.basic_get(prefix, auto_ack=True)[2] == b"old"
    eventually(lambda: count(channel, prefix) == 0)  # "new" is past its deadline
    clear(target, prefix)
    channel.queue_delete(prefix)


def test_dead_letter_policy_dead_letters_with_x_death(channel, policies, prefix):
    dead = prefix + ".dead"
    channel.queue_declare(dead)
    policies(
        prefix,
        f"^{prefix}$",
        {"dead-letter-exchange": "", "dead-letter-routing-key": dead},
    )
    channel.queue_declare(prefix)
    publish(channel, prefix, b"m")
    method, _props, _body = channel.basic_get(prefix)
    channel.basic_reject(method.delivery_tag, requeue=False)
    eventually(lambda: count(channel, dead) == 1)
    _method, props, body = channel.basic_get(dead, auto_ack=True)
    assert body == b"m"
    death = props.headers["x-death"][0]
    assert (death["count"], death["reason"], death["queue"], death["exchange"]) == (
        1,
        "rejected",
        prefix,
        "",
    )
    assert death["routing-keys"] == [prefix]
    assert props.headers["x-first-death-reason"] == "rejected"
    channel.queue_delete(prefix)
    channel.queue_delete(dead)


def test_expired_messages_dead_lettered_by_policy(channel, policies, prefix):
    dead = prefix + ".dead"
    channel.queue_declare(dead)
    policies(
        prefix,
        f"^{prefix}$",
        {"message-ttl": 50, "dead-letter-exchange": "", "dead-letter-routing-key": dead},
    )
    channel.queue_declare(prefix)
    publish(channel, prefix, b"m")
    eventually(lambda: count(channel, dead) == 1)
    props = channel.basic_get(dead, auto_ack=True)[1]
    death = props.headers["x-death"][0]
    assert (death["reason"], death["queue"], death["count"]) == ("expired", prefix, 1)
    assert "original-expiration" not in death  # a queue TTL, not the message's own
    channel.queue_delete(prefix)
    channel.queue_delete(dead)


def test_max_length_policy_trims_at_once(target, channel, policies, prefix):
    dead = prefix + ".dead"
    channel.queue_declare(dead)
    channel.queue_declare(
        prefix, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead}
    )
    publish(channel, prefix, b"1", b"2", b"3", b"4", b"5")
    policies(prefix, f"^{prefix}$", {"max-length": 2})
    eventually(lambda: count(channel, prefix) == 2)
    eventually(lambda: count(channel, dead) == 3)
    assert bodies(channel, dead) == [b"1", b"2", b"3"]
    publish(channel, prefix, b"6")
    assert bodies(channel, prefix) == [b"5", b"6"]
    clear(target, prefix)
    publish(channel, prefix, b"7", b"8", b"9")
    assert count(channel, prefix) == 3  # cleared: no limit any more
    channel.queue_delete(prefix)
    channel.queue_delete(dead)


def test_max_length_bytes_policy(channel, policies, prefix):
    channel.queue_declare(prefix)
    publish(channel, prefix, b"aaaa", b"bbbb", b"cccc")
    policies(prefix, f"^{prefix}$", {"max-length-bytes": 8})
    eventually(lambda: count(channel, prefix) == 2)
    publish(channel, prefix, b"dddd")
    assert bodies(channel, prefix) == [b"cccc", b"dddd"]
    channel.queue_delete(prefix)


@pytest.mark.parametrize(
    ("argument", "policy", "kept"),
    [(1, 3, 1), (3, 1, 1)],
    ids=["argument-lower", "policy-lower"],
)
def test_max_length_lower_wins(channel, policies, prefix, argument, policy, kept):
    policies(prefix, f"^{prefix}$", {"max-length": policy})
    channel.queue_declare(prefix, arguments={"x-max-length": argument})
    publish(channel, prefix, b"1", b"2", b"3", b"4")
    assert count(channel, prefix) == kept
    channel.queue_delete(prefix)


@pytest.mark.parametrize(
    ("argument", "policy"), [(60_000, 50), (50, 60_000)], ids=["policy-lower", "argument-lower"]
)
def test_message_ttl_lower_wins(channel, policies, prefix, argument, policy):
    policies(prefix, f"^{prefix}$", {"message-ttl": policy})
    channel.queue_declare(prefix, arguments={"x-message-ttl": argument})
    publish(channel, prefix, b"m")
    eventually(lambda: count(channel, prefix) == 0)
    channel.queue_delete(prefix)


@pytest.mark.parametrize(
    ("argument", "policy"), [(60_000, 200), (200, 60_000)], ids=["policy-lower", "argument-lower"]
)
def test_expires_lower_wins(channel, policies, prefix, argument, policy):
    policies(prefix, f"^{prefix}$", {"expires": policy})
    channel.queue_declare(prefix, arguments={"x-expires": argument})
    time.sleep(0.6)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        channel.queue_declare(prefix, passive=True)
    assert closed.value.reply_code == 404


def test_expires_policy_deletes_an_existing_unused_queue(channel, policies, prefix):
    channel.queue_declare(prefix)
    policies(prefix, f"^{prefix}$", {"expires": 100})
    time.sleep(0.6)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        channel.queue_declare(prefix, passive=True)
    assert closed.value.reply_code == 404


def test_dead_letter_argument_wins(channel, policies, prefix):
    by_argument, by_policy = prefix + ".arg", prefix + ".pol"
    channel.queue_declare(by_argument)
    channel.queue_declare(by_policy)
    policies(
        prefix,
        f"^{prefix}$",
        {"dead-letter-exchange": "", "dead-letter-routing-key": by_policy},
    )
    channel.queue_declare(
        prefix,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": by_argument},
    )
    publish(channel, prefix, b"m")
    method = channel.basic_get(prefix)[0]
    channel.basic_reject(method.delivery_tag, requeue=False)
    eventually(lambda: count(channel, by_argument) == 1)
    assert count(channel, by_policy) == 0
    for name in (prefix, by_argument, by_policy):
        channel.queue_delete(name)


def test_dead_letter_routing_key_by_policy_with_exchange_by_argument(channel, policies, prefix):
    """The two keys resolve independently: an argument DLX with a policy routing key."""
    target_queue = prefix + ".t"
    channel.queue_declare(target_queue)
    policies(prefix, f"^{prefix}$", {"dead-letter-routing-key": target_queue})
    channel.queue_declare(prefix, arguments={"x-dead-letter-exchange": ""})
    publish(channel, prefix, b"m")
    method = channel.basic_get(prefix)[0]
    channel.basic_reject(method.delivery_tag, requeue=False)
    eventually(lambda: count(channel, target_queue) == 1)
    channel.queue_delete(prefix)
    channel.queue_delete(target_queue)


def test_overflow_argument_wins_for_classic_queues(channel, policies, prefix):
    policies(prefix, f"^{prefix}$", {"max-length": 1, "overflow": "drop-head"})
    channel.queue_declare(prefix, arguments={"x-overflow": "reject-publish"})
    publish(channel, prefix, b"1")
    with pytest.raises(pika.exceptions.NackError):
        publish(channel, prefix, b"2")
    assert bodies(channel, prefix) == [b"1"]
    channel.queue_delete(prefix)


def test_overflow_by_policy(channel, policies, prefix):
    policies(prefix, f"^{prefix}$", {"max-length": 1, "overflow": "reject-publish"})
    channel.queue_declare(prefix)
    publish(channel, prefix, b"1")
    with pytest.raises(pika.exceptions.NackError):
        publish(channel, prefix, b"2")
    assert bodies(channel, prefix) == [b"1"]
    channel.queue_delete(prefix)


def test_higher_priority_policy_wins_and_changes_apply(target, channel, policies, prefix):
    low, high = prefix + "-low", prefix + "-high"
    policies(low, f"^{prefix}", {"max-length": 1}, priority=1)
    policies(high, f"^{prefix}\\.q$", {"max-length": 3}, priority=2)
    queue = prefix + ".q"
    channel.queue_declare(queue)
    publish(channel, queue, b"1", b"2", b"3", b"4")
    assert count(channel, queue) == 3
    clear(target, high)  # the lower priority one applies now, and trims
    eventually(lambda: count(channel, queue) == 1)
    channel.queue_delete(queue)


def test_apply_to_exchanges_does_not_touch_queues(channel, policies, prefix):
    policies(prefix, f"^{prefix}$", {"alternate-exchange": "x"}, apply_to="exchanges")
    policies(prefix + "-q", f"^{prefix}$", {"max-length": 1}, apply_to="exchanges")
    channel.queue_declare(prefix)
    publish(channel, prefix, b"1", b"2")
    assert count(channel, prefix) == 2
    channel.queue_delete(prefix)


def test_alternate_exchange_by_policy(channel, policies, prefix):
    exchange, alternate, caught = prefix + ".x", prefix + ".ae", prefix + ".caught"
    channel.exchange_declare(alternate, "fanout")
    channel.queue_declare(caught)
    channel.queue_bind(caught, alternate)
    channel.exchange_declare(exchange, "direct")
    policies(prefix, f"^{prefix}\\.x$", {"alternate-exchange": alternate}, apply_to="exchanges")
    channel.basic_publish(exchange, "nowhere", b"m")
    eventually(lambda: count(channel, caught) == 1)
    channel.exchange_delete(exchange)
    channel.exchange_delete(alternate)
    channel.queue_delete(caught)


def test_alternate_exchange_argument_wins(channel, policies, prefix):
    exchange = prefix + ".x"
    for name in ("a", "p"):
        channel.exchange_declare(f"{prefix}.ae-{name}", "fanout")
        channel.queue_declare(f"{prefix}.{name}")
        channel.queue_bind(f"{prefix}.{name}", f"{prefix}.ae-{name}")
    policies(prefix, f"^{prefix}\\.x$", {"alternate-exchange": f"{prefix}.ae-p"})
    channel.exchange_declare(exchange, "direct", arguments={"alternate-exchange": f"{prefix}.ae-a"})
    channel.basic_publish(exchange, "nowhere", b"m")
    eventually(lambda: count(channel, f"{prefix}.a") == 1)
    assert count(channel, f"{prefix}.p") == 0
    channel.exchange_delete(exchange)
    for name in ("a", "p"):
        channel.exchange_delete(f"{prefix}.ae-{name}")
        channel.queue_delete(f"{prefix}.{name}")


def test_delivery_limit_by_policy(channel, policies, prefix):
    dead = prefix + ".dead"
    channel.queue_declare(dead)
    policies(
        prefix,
        f"^{prefix}$",
        {"delivery-limit": 1, "dead-letter-exchange": "", "dead-letter-routing-key": dead},
    )
    channel.queue_declare(prefix, durable=True, arguments={"x-queue-type": "quorum"})
    publish(channel, prefix, b"m")
    for _ in range(2):
        method = channel.basic_get(prefix)[0]
        channel.basic_nack(method.delivery_tag, requeue=True)
    eventually(lambda: count(channel, dead) == 1)
    headers = channel.basic_get(dead, auto_ack=True)[1].headers
    assert headers["x-death"][0]["reason"] == "delivery_limit"
    channel.queue_delete(prefix)
    channel.queue_delete(dead)


def test_operator_policy_lower_value_wins(channel, policies, prefix):
    policies(prefix, f"^{prefix}$", {"max-length": 5})
    policies(prefix + "-op", f"^{prefix}$", {"max-length": 2}, operator=True)
    channel.queue_declare(prefix)
    publish(channel, prefix, b"1", b"2", b"3", b"4")
    assert count(channel, prefix) == 2
    channel.queue_delete(prefix)


def test_management_shows_the_policies(target, channel, policies, prefix):
    policies(prefix, f"^{prefix}$", {"max-length": 5, "message-ttl": 60_000})
    policies(prefix + "-op", f"^{prefix}$", {"max-length": 2}, operator=True)
    channel.queue_declare(prefix)

    def shown() -> bool:
        body = target.api.request("GET", f"/api/queues/%2F/{q(prefix)}")[1]
        return body.get("policy") == prefix and body.get("operator_policy") == prefix + "-op"

    eventually(shown, timeout=12)  # RabbitMQ's statistics lag
    body = target.api.request("GET", f"/api/queues/%2F/{q(prefix)}")[1]
    assert body["effective_policy_definition"] == {"max-length": 2, "message-ttl": 60_000}
    channel.queue_delete(prefix)


def test_policies_apply_after_a_restart(target, prefix):
    if target.proc is None:
        pytest.skip("restarts only the broker this module started")
    connection = target.connect()
    channel = connection.channel()
    exchange, caught = prefix + ".x", prefix + ".caught"
    channel.queue_declare(prefix, durable=True)
    channel.queue_declare(caught, durable=True)
    channel.exchange_declare(exchange, "direct", durable=True)
    channel.exchange_declare(prefix + ".ae", "fanout", durable=True)
    channel.queue_bind(caught, prefix + ".ae")
    for name, pattern, definition in (
        (prefix, f"^{prefix}$", {"max-length": 2}),
        (prefix + "-x", f"^{prefix}\\.x$", {"alternate-exchange": prefix + ".ae"}),
    ):
        body = {"pattern": pattern, "definition": definition}
        assert target.api.request("PUT", f"/api/policies/%2F/{q(name)}", body)[0] == 201
    publish(channel, prefix, b"1", b"2", b"3", delivery_mode=2)
    connection.close()
    restart(target)
    connection = target.connect()
    channel = connection.channel()
    assert count(channel, prefix) == 2
    publish(channel, prefix, b"4", delivery_mode=2)
    assert bodies(channel, prefix) == [b"3", b"4"]
    channel.basic_publish(exchange, "nowhere", b"m")
    eventually(lambda: count(channel, caught) == 1)
    body = target.api.request("GET", f"/api/queues/%2F/{q(prefix)}")[1]
    assert body["policy"] == prefix
    for name in (prefix, prefix + "-x"):
        target.api.request("DELETE", f"/api/policies/%2F/{q(name)}")
    connection.close()


def test_recovered_messages_take_the_ttl_policy(target, prefix, tmp_path: Path):
    if target.proc is None:
        pytest.skip("restarts only the broker this module started")
    body = {"pattern": f"^{prefix}$", "definition": {"message-ttl": 300}}
    assert target.api.request("PUT", f"/api/policies/%2F/{q(prefix)}", body)[0] == 201
    connection = target.connect()
    channel = connection.channel()
    channel.queue_declare(prefix, durable=True)
    publish(channel, prefix, b"m", delivery_mode=2)
    connection.close()
    restart(target)
    connection = target.connect()
    channel = connection.channel()
    eventually(lambda: count(channel, prefix) == 0)
    target.api.request("DELETE", f"/api/policies/%2F/{q(prefix)}")
    channel.queue_delete(prefix)
    connection.close()
