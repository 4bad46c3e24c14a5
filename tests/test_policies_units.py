"""Unit tests of policy matching and precedence (core/policy.py) and of a queue taking new
settings (Queue.configure, VHost.set_policy): no socket, no event loop, a manual clock."""

from __future__ import annotations

import struct
from typing import Any

from amqpd.core.clock import ManualClock
from amqpd.core.message import Message
from amqpd.core.policy import (
    Policy,
    PolicyRegistry,
    alternate_exchange,
    effective_definition,
    queue_settings,
)
from amqpd.core.vhost import VHost
from amqpd.wire.content import peek_header


def policy(name: str, pattern: str, priority: int = 0, apply_to: str = "all", **keys: Any):
    definition = {key.replace("_", "-"): value for key, value in keys.items()}
    item = {"pattern": pattern, "definition": definition, "priority": priority}
    return Policy.from_json(name, {**item, "apply-to": apply_to})


def test_match_by_pattern_apply_to_and_priority() -> None:
    registry = PolicyRegistry()
    registry.set(policy("low", "^q", max_length=1))
    registry.set(policy("high", r"^q\.x", priority=5, max_length=2))
    registry.set(policy("ex", ".*", priority=9, apply_to="exchanges", alternate_exchange="ae"))
    registry.set(policy("quorum", "^q", priority=7, apply_to="quorum_queues", max_length=3))
    registry.set(policy("classic", "^c", apply_to="classic_queues", max_length=4))
    assert registry.match("queue", "q.x").name == "high"
    assert registry.match("queue", "q.y").name == "low"
    assert registry.match("queue", "q.x", quorum=True).name == "quorum"
    assert registry.match("queue", "c1").name == "classic"
    assert registry.match("queue", "c1", quorum=True) is None
    assert registry.match("exchange", "q.x").name == "ex"
    assert registry.match("queue", "zz") is None
    assert registry.match("queue", "aq.x") is None  # anchored: re.search, not a full match
    assert registry.clear("high") and not registry.clear("high")
    assert registry.match("queue", "q.x").name == "low"


def test_equal_priorities_pick_the_first_name() -> None:
    registry = PolicyRegistry()
    for name in ("b", "c", "a"):
        registry.set(policy(name, ".*", priority=2, max_length=1))
    assert registry.match("queue", "anything").name == "a"


def test_lower_value_wins_for_limits_and_ttls() -> None:
    applied = policy("p", ".*", message_ttl=50, expires=60_000, max_length=9, max_length_bytes=7)
    settings = queue_settings({"x-message-ttl": 100, "x-expires": 1000, "x-max-length": 3}, applied)
    assert (settings.ttl, settings.expires, settings.max_length, settings.max_bytes) == (
        50,
        1000,
        3,
        7,
    )


def test_argument_wins_for_dead_lettering_and_classic_overflow() -> None:
    applied = policy(
        "p",
        ".*",
        dead_letter_exchange="by-policy",
        dead_letter_routing_key="rk-policy",
        overflow="reject-publish",
        max_length=1,
    )
    settings = queue_settings(
        {"x-dead-letter-exchange": b"by-arg", "x-overflow": "drop-head"}, applied
    )
    assert (settings.dlx, settings.dlrk, settings.overflow) == ("by-arg", "rk-policy", "drop-head")
    assert queue_settings({}, applied).overflow == "reject-publish"


def test_quorum_overflow_policy_wins_and_delivery_limit_is_quorum_only() -> None:
    applied = policy("p", ".*", overflow="reject-publish", delivery_limit=2)
    arguments = {"x-overflow": "drop-head", "x-delivery-limit": 5}
    quorum = queue_settings(arguments, applied, quorum=True)
    assert (quorum.overflow, quorum.delivery_limit) == ("reject-publish", 2)
    assert queue_settings(arguments, applied).delivery_limit is None


def test_operator_policy_merges_by_the_lower_value() -> None:
    user = policy("u", ".*", max_length=5, dead_letter_exchange="dlx")
    operator = policy("o", ".*", max_length=2, message_ttl=1000)
    assert effective_definition(user, operator) == {
        "max-length": 2,
        "dead-letter-exchange": "dlx",
        "message-ttl": 1000,
    }
    settings = queue_settings({"x-message-ttl": 300}, user, operator)
    assert (settings.max_length, settings.ttl, settings.dlx) == (2, 300, "dlx")


def test_alternate_exchange_argument_wins() -> None:
    applied = policy("p", ".*", alternate_exchange="by-policy")
    assert alternate_exchange({}, applied) == "by-policy"
    assert alternate_exchange({"alternate-exchange": b"own"}, applied) == "own"
    assert alternate_exchange({}, None) is None


def _message(body: bytes = b"x") -> Message:
    header = struct.pack(">HHQH", 60, 0, len(body), 0)  # a content header, no properties
    return Message("", "q", header, peek_header(header), body)


def test_set_policy_reconfigures_queues_at_once() -> None:
    clock = ManualClock(start=1_000)
    vhost = VHost("/", clock=clock, parse_header=peek_header)
    dead = vhost.declare_queue("dead", owner=None)
    queue = vhost.declare_queue(
        "q",
        owner=None,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"},
    )
    for index in range(5):
        queue.enqueue(_message(b"m%d" % index))
    vhost.set_policy(policy("limit", "^q$", max_length=2))
    assert len(queue) == 2 and len(dead) == 3
    assert queue.policy is not None and queue.policy.name == "limit"
    vhost.set_policy(policy("limit", "^q$", max_length_bytes=4))  # bytes now
    assert len(queue) == 2 and queue.ready_bytes == 4
    vhost.set_policy(policy("limit", "^q$", max_length_bytes=3))
    assert len(queue) == 1 and queue.ready_bytes == 2 and len(dead) == 4
    assert vhost.clear_policy("limit") and queue.policy is None
    assert queue.max_length is None and queue.max_bytes is None and not queue.extended


def test_new_ttl_applies_to_later_messages_only() -> None:
    clock = ManualClock(start=1_000)
    vhost = VHost("/", clock=clock)
    queue = vhost.declare_queue("q", owner=None)
    queue.enqueue(_message(b"old"))
    vhost.set_policy(policy("ttl", "^q$", message_ttl=100))
    assert vhost.ttl_queues == 1
    queue.enqueue(_message(b"new"))
    clock.advance(200)
    assert queue.count() == 2  # the head never expires; "new" waits behind it
    assert queue.take()[1].body == b"old"
    assert queue.count() == 0
    vhost.set_policy(policy("ttl", "^q$", message_ttl=10_000))
    queue.enqueue(_message(b"under 10s"))
    vhost.clear_policy("ttl")
    assert vhost.ttl_queues == 0
    queue.enqueue(_message(b"no ttl"))
    clock.advance(10_001)
    assert queue.count() == 1  # the first kept its 10 s expiry when the policy went
    assert queue.take()[1].body == b"no ttl"


def test_expires_policy_starts_the_lease_and_deletes_the_queue() -> None:
    clock = ManualClock(start=1_000)
    vhost = VHost("/", clock=clock)
    vhost.declare_queue("q", owner=None)
    vhost.set_policy(policy("x", "^q$", expires=500))
    clock.advance(499)
    assert "q" in vhost.queues
    clock.advance(1)
    assert "q" not in vhost.queues


def test_alternate_exchange_by_policy_routes() -> None:
    vhost = VHost("/")
    vhost.declare_exchange("x", "direct")
    vhost.declare_exchange("ae", "fanout")
    caught = vhost.declare_queue("caught", owner=None)
    vhost.bind_queue("caught", "ae", "", {}, owner=None)
    vhost.set_policy(policy("p", "^x$", apply_to="exchanges", alternate_exchange="ae"))
    message = _message()
    message.routing_key = "nowhere"
    assert vhost.route(vhost.exchanges["x"], message) == [caught]
    vhost.clear_policy("p")
    assert vhost.route(vhost.exchanges["x"], message) == []
