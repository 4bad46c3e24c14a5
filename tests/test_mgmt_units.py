"""Unit tests of the management API's sans-IO parts: routing, listing, rates, policies,
password hashes, message properties. No socket, no event loop."""

from __future__ import annotations

import base64
import hashlib
import json
from types import SimpleNamespace

import pytest

from amqpd import policy_file
from amqpd.core.queue import Queue
from amqpd.core.vhost import VHost
from amqpd.mgmt.errors import ApiError
from amqpd.mgmt.listing import render
from amqpd.mgmt.messages import build_header, payload_json, properties_json
from amqpd.mgmt.policies import Policies, PolicyError, validate
from amqpd.mgmt.rates import Rates
from amqpd.mgmt.router import Router
from amqpd.mgmt.rows import QueueText, queue_dict, queue_key, queue_values
from amqpd.mgmt.shapes import properties_key
from amqpd.passwords import hash_password as password_hash


def test_router_decodes_segments_after_splitting() -> None:
    router = Router()
    router.add("GET", "/api/queues/{vhost}/{queue}", lambda call: "queue")
    router.add("DELETE", "/api/queues/{vhost}/{queue}", lambda call: "delete")
    handler, params = router.match("GET", "/api/queues/%2F/a%2Fb?x=1")
    assert handler(None) == "queue" and params == {"vhost": "/", "queue": "a/b"}
    with pytest.raises(ApiError) as missing:
        router.match("GET", "/api/queues/%2F")
    assert missing.value.status == 404
    with pytest.raises(ApiError) as wrong:
        router.match("POST", "/api/queues/%2F/q")
    assert wrong.value.status == 405


def test_listing_filters_sorts_projects_and_pages() -> None:
    items = [{"name": f"q{i}", "stats": {"n": 10 - i}} for i in range(5)]
    assert [i["name"] for i in render(items, {"sort": "stats.n"})] == ["q4", "q3", "q2", "q1", "q0"]
    assert render(items, {"name": "q3", "columns": "stats.n"}) == [{"stats": {"n": 7}}]
    page = render(items, {"page": "2", "page_size": "2"})
    assert page["items"] == items[2:4] and page["page_count"] == 3
    assert page["total_count"] == page["filtered_count"] == 5
    with pytest.raises(ApiError):
        render(items, {"page": "4", "page_size": "2"})


def test_rates_between_the_last_two_samples() -> None:
    rates = Rates()
    assert rates.details("k", "publish") == {"rate": 0.0}
    rates.sample("k", {"publish": 10}, 100.0)
    rates.sample("k", {"publish": 30}, 102.0)
    assert rates.details("k", "publish") == {"rate": 10.0}
    assert rates.with_details("k", {"publish": 35}) == {
        "publish": 35,
        "publish_details": {"rate": 10.0},
    }
    rates.forget_older_than(103.0)
    assert rates.rate("k", "publish") == 0.0


def test_password_hash_is_rabbitmqs_sha256() -> None:
    hashed = password_hash("s3cret", salt=b"\x01\x02\x03\x04")
    raw = base64.b64decode(hashed)
    assert raw[:4] == b"\x01\x02\x03\x04"
    assert raw[4:] == hashlib.sha256(b"\x01\x02\x03\x04s3cret").digest()
    assert password_hash("x") != password_hash("x")  # salted


def test_policy_validation_and_choice(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert validate({"pattern": "^a", "definition": {"max-length": 3}})["apply-to"] == "all"
    with pytest.raises(PolicyError, match="not a valid overflow behaviour"):
        validate({"pattern": ".*", "definition": {"overflow": "explode"}})
    with pytest.raises(PolicyError, match="not a valid regex"):
        validate({"pattern": "(", "definition": {"max-length": 1}})
    path = tmp_path / "policies.json"
    policies = Policies({"/": VHost("/"), "other": VHost("other")}, path)
    policies.put("/", "low", {"pattern": "^q", "definition": {"max-length": 1}})
    policies.put("/", "high", {"pattern": "^q\\.x", "definition": {"max-length": 2}, "priority": 5})
    policies.put(
        "/",
        "ex",
        {
            "pattern": ".*",
            "definition": {"alternate-exchange": "ae"},
            "apply-to": "exchanges",
            "priority": 9,
        },
    )
    assert policies.effective("/", "queue", "q.x")["name"] == "high"
    assert policies.effective("/", "queue", "q.y")["name"] == "low"
    assert policies.effective("/", "exchange", "q.x")["name"] == "ex"
    assert policies.effective("other", "queue", "q.x") is None
    vhost = VHost("/")
    policy_file.install(vhost.policies, policy_file.load(path)["/"])
    reloaded = Policies({"/": vhost}, path)
    assert [p["name"] for p in reloaded.list("/")] == ["ex", "high", "low"]


def test_message_properties_round_trip() -> None:
    properties = {
        "content_type": "application/json",
        "headers": {"a": "b", "n": 5, "nested": {"x": [1, 2]}},
        "delivery_mode": 2,
        "priority": 3,
        "correlation_id": "c",
        "type": "kind",
        "timestamp": 1700000000,
    }
    header = build_header(properties, 7)
    assert properties_json(header) == properties
    assert payload_json(b"\xffbin", "auto", None)["payload_encoding"] == "base64"
    assert payload_json(b"hello", "auto", 2) == {"payload": "he", "payload_encoding": "string"}


def test_properties_key() -> None:
    assert properties_key("", {}) == "~"
    assert properties_key("a.#", {}) == "a.%23"
    keyed = properties_key("rk", {"x": 1})
    assert keyed.startswith("rk~") and keyed == properties_key("rk", {"x": 1})
    assert keyed != properties_key("rk", {"x": 2})


def test_deep_tables_are_cut() -> None:
    from amqpd.mgmt.jsonable import MAX_DEPTH, to_json

    deep: list = []
    value: list = deep
    for _ in range(5000):
        inner: list = []
        value.append(inner)
        value = inner
    shown = to_json({"x-deep": deep, "b": b"\xff", "n": 1})
    level = shown["x-deep"]
    for _ in range(MAX_DEPTH - 1):
        level = level[0]
    assert level == "..."
    assert shown["b"] == "\ufffd" and shown["n"] == 1


def test_store_latency_histogram_buckets() -> None:
    from amqpd.store.latency import Histogram

    histogram = Histogram()
    for seconds in (0.00005, 0.0003, 0.0003, 0.2, 5.0):
        histogram.observe(seconds)
    pairs = dict(histogram.cumulative())
    assert pairs["0.0001"] == 1 and pairs["0.0005"] == 3 and pairs["0.25"] == 4
    assert pairs["+Inf"] == histogram.count == 5
    assert abs(histogram.total - 5.20065) < 1e-9


def test_queue_text_is_the_json_of_queue_dict() -> None:
    """The text written straight from counters parses to the dict the filtered path builds,
    with rates, a policy and consumers, and again after the counters change."""
    queue = Queue("q\u00e9\"x", "/", durable=True, arguments={"x-max-length": 5})
    policy = {"name": "p", "definition": {"max-length": 3}, "priority": 0}
    text = QueueText("amqpd@here")
    rates = Rates()

    def same() -> None:
        pair = rates.pair(queue_key(queue))
        shown = json.loads(text.render(queue, 2, pair, policy))
        assert shown == queue_dict(queue, 2, pair, "amqpd@here", policy)

    same()
    rates.sample(queue_key(queue), queue_values(queue, 2), 10.0)
    queue.delivered_count = 30
    queue.stats.redeliver = 4
    rates.sample(queue_key(queue), queue_values(queue, 2), 12.0)
    same()
    assert json.loads(text.render(queue, 2, rates.pair(queue_key(queue)), policy))[
        "message_stats"
    ]["redeliver_details"] == {"rate": 2.0}
    queue.consumers.append(SimpleNamespace(tag="ctag", exclusive=True))  # type: ignore[arg-type]
    same()
    policy = {"name": "p2", "definition": {}, "priority": 1}
    same()
