"""The management HTTP API against a real amqpd: RabbitMQ's paths, fields and status codes.

Every test talks HTTP to the broker's management listener and AMQP (pika) to the same
broker, and checks that what one side did is exactly and immediately visible on the other.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pika
import pytest

from tests.mgmt_client import Api, q, start_mgmt_broker


@pytest.fixture(scope="module")
def mgmt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, int]]:
    proc, api = start_mgmt_broker(tmp_path_factory.mktemp("amqpd-mgmt"))
    try:
        yield api, proc.port
    finally:
        proc.stop()


@pytest.fixture
def api(mgmt: tuple[Api, int]) -> Api:
    return mgmt[0]


@pytest.fixture
def amqp(mgmt: tuple[Api, int]) -> Iterator[pika.BlockingConnection]:
    params = pika.ConnectionParameters(
        "127.0.0.1",
        mgmt[1],
        credentials=pika.PlainCredentials("guest", "guest"),
        client_properties={"connection_name": f"mgmt-test-{uuid.uuid4().hex[:6]}"},
    )
    connection = pika.BlockingConnection(params)
    yield connection
    if connection.is_open:
        connection.close()


@pytest.fixture
def name() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


# -- auth ------------------------------------------------------------------------------


def test_login_rules(api: Api) -> None:
    status, body, headers = api.request("GET", "/api/overview", user=None)
    assert status == 401 and body["error"] == "not_authorised"
    assert "Basic" in headers["WWW-Authenticate"]
    status, body, _ = api.request("GET", "/api/overview", user=("guest", "nope"))
    assert (status, body["reason"]) == (401, "Login failed")
    status, body, _ = api.request("GET", "/api/overview", user=("plain", "p"))
    assert (status, body["reason"]) == (401, "Not management user")
    assert api.get("/api/whoami", user=("app", "a")) == {"name": "app", "tags": ["management"]}


def test_tags_decide_what_is_visible(api: Api) -> None:
    admin = [v["name"] for v in api.get("/api/vhosts")]
    assert admin == ["/", "other"]
    # monitoring sees every vhost; management only those it has permissions on
    assert [v["name"] for v in api.get("/api/vhosts", user=("watcher", "w"))] == ["/", "other"]
    assert [v["name"] for v in api.get("/api/vhosts", user=("app", "a"))] == ["/"]
    status, body, _ = api.request("GET", "/api/queues/other", user=("app", "a"))
    assert status == 401
    status, body, _ = api.request("GET", "/api/users", user=("app", "a"))
    assert (status, body["reason"]) == (401, "Not administrator user")
    users = {u["name"]: u for u in api.get("/api/users")}
    assert users["guest"]["tags"] == ["administrator"]
    assert users["guest"]["hashing_algorithm"] == "rabbit_password_hashing_sha256"


def test_permission_patterns_apply(api: Api, name: str) -> None:
    status, body, _ = api.request("PUT", f"/api/queues/%2F/{name}", {}, user=("app", "a"))
    assert (status, body["reason"]) == (401, "Access refused.")
    status, _, _ = api.request("PUT", f"/api/queues/%2F/app.{name}", {}, user=("app", "a"))
    assert status == 201
    assert api.request("DELETE", f"/api/queues/%2F/app.{name}", user=("app", "a"))[0] == 204


def test_permissions_and_vhost(api: Api) -> None:
    found = api.get("/api/permissions/%2F/app")
    assert found == {
        "user": "app",
        "vhost": "/",
        "configure": "^app\\.",
        "write": ".*",
        "read": ".*",
    }
    assert api.request("GET", "/api/permissions/other/app")[0] == 404
    vhost = api.get("/api/vhosts/%2F")
    assert vhost["name"] == "/" and "messages" in vhost and "message_stats" in vhost
    assert api.request("GET", "/api/vhosts/nope")[0] == 404


# -- queues ----------------------------------------------------------------------------


def test_queue_counts_are_exact_and_current(
    api: Api, amqp: pika.BlockingConnection, name: str
) -> None:
    channel = amqp.channel()
    channel.queue_declare(name)
    for index in range(5):
        channel.basic_publish("", name, f"m{index}".encode())
    consumer = amqp.channel()
    consumer.basic_qos(prefetch_count=2)
    consumer.basic_consume(name, lambda *args: None, consumer_tag="ctag-1")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        amqp.process_data_events(0.05)
        queue = api.get(f"/api/queues/%2F/{name}")
        if queue["messages_unacknowledged"] == 2:
            break
    assert queue["messages"] == 5
    assert queue["messages_ready"] == 3
    assert queue["messages_unacknowledged"] == 2
    assert queue["consumers"] == 1
    assert queue["durable"] is False and queue["exclusive"] is False
    assert queue["state"] == "running" and queue["vhost"] == "/"
    assert queue["message_stats"]["publish"] == 5
    assert queue["message_stats"]["deliver_get"] == 2
    assert (queue["message_bytes"], queue["message_bytes_unacknowledged"]) == (10, 4)
    details = queue["consumer_details"]
    assert [(c["consumer_tag"], c["prefetch_count"], c["ack_required"]) for c in details] == [
        ("ctag-1", 2, True)
    ]
    listed = {item["name"]: item for item in api.get("/api/queues/%2F")}
    assert listed[name]["messages"] == 5


def test_declare_delete_purge_queue(api: Api, name: str) -> None:
    path = f"/api/queues/%2F/{name}"
    assert api.request("PUT", path, {"durable": True, "arguments": {"x-max-length": 10}})[0] == 201
    assert api.request("PUT", path, {"durable": True, "arguments": {"x-max-length": 10}})[0] == 204
    status, body, _ = api.request("PUT", path, {"durable": False})
    assert status == 400
    assert body["reason"] == (
        f"inequivalent arg 'durable' for queue '{name}' in vhost '/': "
        "received 'false' but current is 'true'"
    )
    queue = api.get(path)
    assert queue["durable"] is True and queue["arguments"] == {"x-max-length": 10}
    status, body, _ = api.request("PUT", "/api/queues/%2F/amq.nope", {})
    assert status == 401
    for index in range(3):
        status, body, _ = api.request(
            "POST",
            "/api/exchanges/%2F/amq.default/publish",
            {
                "routing_key": name,
                "payload": f"p{index}",
                "payload_encoding": "string",
                "properties": {},
            },
        )
        assert (status, body) == (200, {"routed": True})
    assert api.get(path)["messages"] == 3
    assert api.request("DELETE", f"{path}/contents")[0] == 204
    assert api.get(path)["messages"] == 0
    status, body, _ = api.request("DELETE", path)
    assert status == 204
    assert api.request("GET", path)[0] == 404
    status, body, _ = api.request("DELETE", path)
    assert (status, body) == (404, {"error": "Object Not Found", "reason": "Not Found"})


def test_delete_if_empty(api: Api, name: str) -> None:
    path = f"/api/queues/%2F/{name}"
    api.request("PUT", path, {"durable": False})
    api.request(
        "POST",
        "/api/exchanges/%2F/amq.default/publish",
        {"routing_key": name, "payload": "x", "payload_encoding": "string", "properties": {}},
    )
    status, _body, _ = api.request("DELETE", f"{path}?if-empty=true")
    assert status == 400
    assert api.request("DELETE", path)[0] == 204


def test_get_messages(api: Api, amqp: pika.BlockingConnection, name: str) -> None:
    channel = amqp.channel()
    channel.queue_declare(name)
    properties = pika.BasicProperties(
        content_type="text/plain", headers={"h": "v", "n": 7}, delivery_mode=2, message_id="id-1"
    )
    channel.basic_publish("", name, b"first", properties)
    channel.basic_publish("", name, b"\xff\xfe binary", pika.BasicProperties())
    path = f"/api/queues/%2F/{name}/get"
    status, got, _ = api.request(
        "POST", path, {"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto"}
    )
    assert status == 200 and len(got) == 2
    first, second = got
    assert first["payload"] == "first" and first["payload_encoding"] == "string"
    assert first["properties"] == {
        "content_type": "text/plain",
        "headers": {"h": "v", "n": 7},
        "delivery_mode": 2,
        "message_id": "id-1",
    }
    assert first["redelivered"] is False and first["routing_key"] == name
    assert first["message_count"] == 1 and second["message_count"] == 0
    assert second["payload_encoding"] == "base64"
    # requeued, redelivered, in order
    status, got, _ = api.request(
        "POST",
        path,
        {"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto", "truncate": 3},
    )
    assert got[0]["payload"] == "fir" and got[0]["redelivered"] is True
    assert got[0]["payload_bytes"] == 5
    method, _props, body = channel.basic_get(name, auto_ack=True)
    assert body == b"\xff\xfe binary" and method.redelivered
    assert channel.basic_get(name, auto_ack=True) == (None, None, None)
    status, body, _ = api.request("POST", path, {"count": 1, "ackmode": "bogus"})
    assert status == 400


# -- exchanges and bindings ------------------------------------------------------------


def test_exchanges_and_publish(api: Api, name: str) -> None:
    path = f"/api/exchanges/%2F/{name}"
    assert api.request("PUT", path, {"type": "topic", "durable": False})[0] == 201
    shown = api.get(path)
    assert (shown["type"], shown["durable"], shown["internal"]) == ("topic", False, False)
    status, body, _ = api.request(
        "POST",
        f"{path}/publish",
        {"routing_key": "a.b", "payload": "x", "payload_encoding": "string", "properties": {}},
    )
    assert (status, body) == (200, {"routed": False})
    status, body, _ = api.request("PUT", path, {"type": "direct", "durable": False})
    assert status == 400 and "inequivalent arg 'type'" in body["reason"]
    names = [e["name"] for e in api.get("/api/exchanges/%2F")]
    assert "" in names and "amq.topic" in names and name in names
    assert api.request("DELETE", "/api/exchanges/%2F/amq.direct")[0] == 401
    assert api.request("DELETE", path)[0] == 204
    assert api.request("GET", path)[0] == 404


def test_bindings(api: Api, name: str) -> None:
    exchange, queue = f"{name}-x", f"{name}-q"
    api.request("PUT", f"/api/exchanges/%2F/{exchange}", {"type": "direct", "durable": False})
    api.request("PUT", f"/api/queues/%2F/{queue}", {"durable": False})
    between = f"/api/bindings/%2F/e/{exchange}/q/{queue}"
    status, body, headers = api.request("POST", between, {"routing_key": "rk", "arguments": {}})
    assert status == 201 and headers["Location"] == "rk"
    api.request("POST", between, {"routing_key": "rk2", "arguments": {"a": 1}})
    found = api.get(between)
    assert sorted(b["routing_key"] for b in found) == ["rk", "rk2"]
    assert all(b["destination_type"] == "queue" and b["vhost"] == "/" for b in found)
    one = api.get(f"{between}/rk")
    assert one["arguments"] == {} and one["source"] == exchange
    status, body, _ = api.request(
        "POST",
        f"/api/exchanges/%2F/{exchange}/publish",
        {"routing_key": "rk", "payload": "x", "payload_encoding": "string", "properties": {}},
    )
    assert body == {"routed": True}
    source = api.get(f"/api/exchanges/%2F/{exchange}/bindings/source")
    assert len(source) == 2
    queue_bindings = api.get(f"/api/queues/%2F/{queue}/bindings")
    assert [b["source"] for b in queue_bindings] == ["", exchange, exchange]
    everything = api.get("/api/bindings/%2F")
    assert {"source": "", "destination": queue, "routing_key": queue}.items() <= next(
        b for b in everything if b["source"] == "" and b["destination"] == queue
    ).items()
    with_args = next(b for b in found if b["routing_key"] == "rk2")
    key = with_args["properties_key"]
    assert api.request("DELETE", f"{between}/{q(key)}")[0] == 204
    assert api.request("DELETE", f"{between}/rk")[0] == 204
    assert api.get(between) == []
    assert api.request("GET", f"/api/bindings/%2F/e/{exchange}/q/nope")[0] == 404


# -- connections, channels, consumers ----------------------------------------------------


def _find_connection(api: Api, connection_name: str) -> dict:
    for _ in range(50):
        found = [
            c
            for c in api.get("/api/connections")
            if c["client_properties"].get("connection_name") == connection_name
        ]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"connection {connection_name} not listed")


def test_connections_channels_consumers(api: Api, amqp: pika.BlockingConnection, name: str) -> None:
    channel = amqp.channel()
    channel.confirm_delivery()
    channel.queue_declare(name)
    channel.basic_consume(name, lambda *args: None, consumer_tag="tag-x", auto_ack=True)
    connection_name = amqp._impl.params.client_properties["connection_name"]
    shown = _find_connection(api, connection_name)
    assert shown["user"] == "guest" and shown["vhost"] == "/"
    assert shown["state"] == "running" and shown["channels"] == 1
    assert shown["protocol"] == "AMQP 0-9-1" and shown["auth_mechanism"] == "PLAIN"
    assert shown["user_provided_name"] == connection_name
    assert shown["recv_oct"] > 100 and shown["send_oct"] > 100
    assert (
        shown["name"] == f"{shown['peer_host']}:{shown['peer_port']} -> 127.0.0.1:{shown['port']}"
    )
    assert api.get(f"/api/connections/{q(shown['name'])}")["name"] == shown["name"]
    channels = api.get(f"/api/connections/{q(shown['name'])}/channels")
    assert [(c["number"], c["confirm"], c["consumer_count"]) for c in channels] == [(1, True, 1)]
    assert channels[0]["name"] == f"{shown['name']} (1)"
    consumers = [c for c in api.get("/api/consumers/%2F") if c["queue"]["name"] == name]
    assert [(c["consumer_tag"], c["ack_required"]) for c in consumers] == [("tag-x", False)]
    assert consumers[0]["channel_details"]["connection_name"] == shown["name"]
    # the monitoring user sees it, a management user only their own
    assert any(
        c["name"] == shown["name"] for c in api.get("/api/connections", user=("watcher", "w"))
    )
    assert not any(
        c["name"] == shown["name"] for c in api.get("/api/connections", user=("app", "a"))
    )


def test_close_connection(api: Api, amqp: pika.BlockingConnection) -> None:
    amqp.channel()
    connection_name = amqp._impl.params.client_properties["connection_name"]
    shown = _find_connection(api, connection_name)
    status, _body, _ = api.request(
        "DELETE", f"/api/connections/{q(shown['name'])}", headers={"X-Reason": "go away"}
    )
    assert status == 204
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        for _ in range(100):
            amqp.process_data_events(0.05)
    assert closed.value.reply_code == 320
    assert closed.value.reply_text == "CONNECTION_FORCED - go away"
    assert api.request("GET", f"/api/connections/{q(shown['name'])}")[0] == 404


# -- overview, health, lists -----------------------------------------------------------------


def test_overview(api: Api, amqp: pika.BlockingConnection, name: str) -> None:
    before = api.get("/api/overview")
    channel = amqp.channel()
    channel.queue_declare(name)
    channel.basic_publish("", name, b"x")
    channel.basic_publish("", "no-such-queue-anywhere", b"x")
    channel.basic_get(name, auto_ack=True)
    channel.basic_publish("", name, b"y")
    method, _props, _body = channel.basic_get(name)
    channel.basic_ack(method.delivery_tag)
    after = api.get("/api/overview")
    assert after["object_totals"]["queues"] == before["object_totals"]["queues"] + 1
    assert after["object_totals"]["connections"] >= 1
    assert after["object_totals"]["channels"] >= 1
    stats, old = after["message_stats"], before["message_stats"]
    assert stats["publish"] - old["publish"] == 3
    assert stats["drop_unroutable"] - old["drop_unroutable"] == 1
    assert stats["get_no_ack"] - old["get_no_ack"] == 1
    assert stats["get"] - old["get"] == 1
    assert stats["deliver_get"] - old["deliver_get"] == 2
    assert stats["ack"] - old["ack"] == 1
    assert "rate" in stats["publish_details"]
    assert after["management_version"] and after["node"].startswith("amqpd@")
    assert {listener["protocol"] for listener in after["listeners"]} >= {"amqp", "http"}


def test_health_and_aliveness(api: Api) -> None:
    assert api.get("/api/health/checks/alarms") == {"status": "ok"}
    assert api.get("/api/health/checks/local-alarms") == {"status": "ok"}
    assert api.get("/api/aliveness-test/%2F") == {"status": "ok"}
    assert api.get("/api/aliveness-test/%2F") == {"status": "ok"}
    assert api.request("GET", "/api/aliveness-test/nope")[0] == 404


def test_pagination_and_columns(api: Api, name: str) -> None:
    for index in range(5):
        api.request("PUT", f"/api/queues/%2F/{name}-{index}", {"durable": False})
    page = api.get(f"/api/queues/%2F?page=2&page_size=2&name={name}&pagination=true")
    assert page["filtered_count"] == 5 and page["item_count"] == 2
    assert page["page"] == 2 and page["page_count"] == 3 and page["page_size"] == 2
    assert [item["name"] for item in page["items"]] == [f"{name}-2", f"{name}-3"]
    narrow = api.get(f"/api/queues?columns=name,messages,message_stats.publish&name={name}-4")
    assert narrow == [{"name": f"{name}-4", "messages": 0, "message_stats": {"publish": 0}}]
    regex = api.get(f"/api/queues?name=^{name}-[13]$&use_regex=true&columns=name")
    assert regex == [{"name": f"{name}-1"}, {"name": f"{name}-3"}]
    assert api.request("GET", "/api/queues?page=0")[0] == 400


def test_unknown_paths_and_methods(api: Api) -> None:
    assert api.request("GET", "/api/nothing-here")[0] == 404
    assert api.request("PATCH", "/api/overview")[0] == 405


def test_long_listing_is_one_valid_list(api: Api, amqp: pika.BlockingConnection, name: str) -> None:
    """A long list is written a slice at a time: it still arrives as one JSON list, sorted
    by name, each queue once; an empty vhost lists as []."""
    channel = amqp.channel()
    names = [f"{name}-{index:04d}" for index in range(1500)]
    for queue in reversed(names):
        channel.queue_declare(queue)
    listed = [item["name"] for item in api.get("/api/queues/%2F") if item["name"].startswith(name)]
    assert listed == names
    narrow = [item for item in api.get("/api/queues?columns=name,messages") if name in item["name"]]
    assert narrow == [{"name": queue, "messages": 0} for queue in names]
    assert api.get("/api/queues/other") == []
    for queue in names[::2]:
        channel.queue_delete(queue)
    listed = [item["name"] for item in api.get("/api/queues") if item["name"].startswith(name)]
    assert listed == names[1::2]
    for queue in names[1::2]:
        channel.queue_delete(queue)
