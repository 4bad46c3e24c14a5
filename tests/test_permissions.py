"""Users, vhosts and RabbitMQ-style permissions: which check each method makes, and the replies.

User `perm-test-u` may configure `^perm-c-`, write `^perm-w-` and read `^perm-r-` names on
vhost `perm-test-a`, and configure only names containing `mid` on `perm-test-b`; user
`perm-test-empty` has "" (nothing) everywhere on `perm-test-a`; `perm-test-none` has no
permissions at all. Without AMQPD_TEST_URL an amqpd with that YAML config is started; with it
the same users are created on the reference RabbitMQ with rabbitmqctl (node from
AMQPD_TEST_RABBITMQ_NODE, default ref@localhost), or the module is skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika
import pytest
from pamqp import commands
from pika.exceptions import ChannelClosedByBroker

from tests import rawamqp
from tests.broker_process import BrokerProcess, external_broker

VHOST = "perm-test-a"
OTHER_VHOST = "perm-test-b"
USER = "perm-test-u"
EMPTY = "perm-test-empty"
NONE = "perm-test-none"
PASSWORD = "perm-test-pw"

CONFIG = f"""
vhosts: [/, {VHOST}, {OTHER_VHOST}]
users:
  - name: guest
    password: guest
    permissions:
      /: {{}}
      {VHOST}: {{}}
  - name: {USER}
    password: {PASSWORD}
    permissions:
      {VHOST}: {{configure: "^perm-c-.*", write: "^perm-w-.*", read: "^perm-r-.*"}}
      {OTHER_VHOST}: {{configure: "mid", write: ".*", read: ".*"}}
  - name: {EMPTY}
    password: {PASSWORD}
    permissions:
      {VHOST}: {{configure: "", write: "", read: ""}}
  - name: {NONE}
    password: {PASSWORD}
"""

RABBITMQCTL_SETUP = [
    ["add_vhost", VHOST],
    ["add_vhost", OTHER_VHOST],
    ["add_user", USER, PASSWORD],
    ["add_user", EMPTY, PASSWORD],
    ["add_user", NONE, PASSWORD],
    ["set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*"],
    ["set_permissions", "-p", VHOST, USER, "^perm-c-.*", "^perm-w-.*", "^perm-r-.*"],
    ["set_permissions", "-p", OTHER_VHOST, USER, "mid", ".*", ".*"],
    ["set_permissions", "-p", VHOST, EMPTY, "", "", ""],
]


@dataclass(frozen=True)
class Broker:
    host: str
    port: int

    def connect(
        self, user: str = USER, vhost: str = VHOST, password: str = PASSWORD
    ) -> pika.BlockingConnection:
        credentials = pika.PlainCredentials(user, password)
        return pika.BlockingConnection(
            pika.ConnectionParameters(self.host, self.port, vhost, credentials)
        )


def _setup_rabbitmq() -> None:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.skip("AMQPD_TEST_URL is set but rabbitmqctl is not available to create users")
    node = os.environ.get("AMQPD_TEST_RABBITMQ_NODE", "ref@localhost")
    for args in RABBITMQCTL_SETUP:
        # add_vhost/add_user fail harmlessly when the entity already exists.
        subprocess.run([ctl, "-n", node, "-q", *args], capture_output=True, timeout=60)
    # Leftovers from an earlier run must not change the picture.
    for args in [["change_password", user, PASSWORD] for user in (USER, EMPTY, NONE)] + [
        ["clear_permissions", "-p", VHOST, NONE]
    ]:
        subprocess.run([ctl, "-n", node, "-q", *args], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def perm_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    outside = external_broker()
    if outside is not None:
        _setup_rabbitmq()
        yield Broker(*outside)
        return
    tmp: Path = tmp_path_factory.mktemp("perm")
    config = tmp / "amqpd.yaml"
    config.write_text(CONFIG)
    with BrokerProcess(tmp / "data", "--config", str(config)) as proc:
        yield Broker(proc.host, proc.port)


@pytest.fixture
def names(perm_broker: Broker) -> Iterator[dict[str, str]]:
    """Queues and fanout exchanges perm-{c,r,w,x}-{q,x}-<id>, made by guest, removed after."""
    suffix = uuid.uuid4().hex[:8]
    result = {f"{p}{k}": f"perm-{p}-{k}-{suffix}" for p in "crwx" for k in "qx"}
    result["id"] = suffix
    admin = perm_broker.connect("guest", VHOST, "guest")
    channel = admin.channel()
    for p in "crwx":
        channel.queue_declare(result[f"{p}q"])
        channel.exchange_declare(result[f"{p}x"], "fanout")
    yield result
    channel = admin.channel() if not channel.is_open else channel
    for p in "crwx":
        channel.queue_delete(result[f"{p}q"])
        channel.exchange_delete(result[f"{p}x"])
    channel.queue_delete("perm-c-new-" + suffix)
    channel.exchange_delete("perm-c-newx-" + suffix)
    admin.close()


@pytest.fixture
def admin(perm_broker: Broker) -> Iterator[Any]:
    conn = perm_broker.connect("guest", VHOST, "guest")
    yield conn.channel()
    conn.close()


@pytest.fixture
def user_conn(perm_broker: Broker) -> Iterator[pika.BlockingConnection]:
    conn = perm_broker.connect()
    yield conn
    if conn.is_open:
        conn.close()


def refused(kind: str, name: str, user: str = USER, vhost: str = VHOST) -> str:
    return (
        f"ACCESS_REFUSED - access to {kind} '{name}' in vhost '{vhost}' refused for user '{user}'"
    )


def assert_channel_closed(
    conn: pika.BlockingConnection, action: Callable[[Any], object], code: int, text: str
) -> None:
    """`action` on a new channel closes that channel with (code, text); the connection lives."""
    channel = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as err:
        action(channel)
    assert (err.value.reply_code, err.value.reply_text) == (code, text)
    assert conn.is_open
    conn.channel().close()  # the connection still answers


def publish(exchange: str, routing_key: str = "k") -> Callable[[Any], object]:
    def action(channel: Any) -> object:
        channel.basic_publish(exchange, routing_key, b"m")
        return channel.exchange_declare("amq.direct", passive=True)  # a round trip

    return action


# --- what is allowed ------------------------------------------------------------------------


def test_configure_allows_declare_and_delete(user_conn, names, admin) -> None:
    channel = user_conn.channel()
    new = "perm-c-new-" + names["id"]
    assert channel.queue_declare(new).method.queue == new
    admin.queue_declare(new, passive=True)
    assert channel.queue_delete(new).method.message_count == 0
    assert channel.queue_delete(names["cq"]).method.message_count == 0
    channel.exchange_declare("perm-c-newx-" + names["id"], "direct")
    channel.exchange_delete("perm-c-newx-" + names["id"])
    channel.exchange_delete(names["cx"])
    with pytest.raises(ChannelClosedByBroker) as err:
        admin.queue_declare(names["cq"], passive=True)
    assert err.value.reply_code == 404


def test_passive_declare_needs_no_permission(perm_broker, names) -> None:
    for user in (USER, EMPTY):
        conn = perm_broker.connect(user)
        channel = conn.channel()
        assert channel.queue_declare(names["xq"], passive=True).method.queue == names["xq"]
        channel.exchange_declare(names["xx"], passive=True)
        channel.exchange_declare("amq.direct", passive=True)
        conn.close()


def test_bind_needs_write_on_queue_and_read_on_exchange(user_conn, names, admin) -> None:
    channel = user_conn.channel()
    channel.queue_bind(names["wq"], names["rx"], "k")
    admin.basic_publish(names["rx"], "k", b"routed")
    assert admin.basic_get(names["wq"], auto_ack=True)[2] == b"routed"
    channel.queue_unbind(names["wq"], names["rx"], "k")
    admin.basic_publish(names["rx"], "k", b"dropped")
    assert admin.basic_get(names["wq"], auto_ack=True)[0] is None


def test_exchange_bind_needs_write_on_destination_and_read_on_source(
    user_conn, names, admin
) -> None:
    admin.queue_bind(names["xq"], names["wx"])
    channel = user_conn.channel()
    channel.exchange_bind(names["wx"], names["rx"], "k")
    admin.basic_publish(names["rx"], "k", b"routed")
    assert admin.basic_get(names["xq"], auto_ack=True)[2] == b"routed"
    channel.exchange_unbind(names["wx"], names["rx"], "k")
    admin.basic_publish(names["rx"], "k", b"dropped")
    assert admin.basic_get(names["xq"], auto_ack=True)[0] is None


def test_publish_needs_write_on_exchange(user_conn, names, admin) -> None:
    admin.queue_bind(names["xq"], names["wx"])
    channel = user_conn.channel()
    channel.confirm_delivery()
    channel.basic_publish(names["wx"], "k", b"hello")
    assert admin.basic_get(names["xq"], auto_ack=True)[2] == b"hello"


def test_get_consume_and_purge_need_read_on_queue(user_conn, names, admin) -> None:
    for body in (b"one", b"two", b"three"):
        admin.basic_publish("", names["rq"], body)
    channel = user_conn.channel()
    assert channel.basic_get(names["rq"], auto_ack=True)[2] == b"one"
    seen: list[bytes] = []
    tag = channel.basic_consume(names["rq"], lambda ch, m, p, body: seen.append(body), True)
    user_conn.process_data_events(time_limit=0)
    while len(seen) < 2:
        user_conn.process_data_events(time_limit=1)
    assert seen == [b"two", b"three"]
    channel.basic_cancel(tag)
    admin.basic_publish("", names["rq"], b"four")
    admin.queue_declare(names["rq"], passive=True)
    assert channel.queue_purge(names["rq"]).method.message_count == 1


def test_missing_resources_are_not_found_once_permitted(user_conn, names) -> None:
    missing = "perm-{}-missing-" + names["id"]
    not_found = "NOT_FOUND - no {} '{}' in vhost '" + VHOST + "'"
    cases: list[tuple[Callable[[Any], object], str]] = [
        (lambda ch: ch.queue_declare(missing.format("x"), passive=True), "queue"),
        (lambda ch: ch.exchange_declare(missing.format("x"), passive=True), "exchange"),
        (lambda ch: ch.basic_get(missing.format("r")), "queue"),
        (lambda ch: ch.basic_consume(missing.format("r"), print), "queue"),
        (lambda ch: ch.queue_purge(missing.format("r")), "queue"),
        (lambda ch: ch.queue_bind(missing.format("w"), names["rx"]), "queue"),
        (lambda ch: ch.exchange_bind(names["wx"], missing.format("r")), "exchange"),
        (publish(missing.format("w")), "exchange"),
    ]
    for action, kind in cases:
        channel = user_conn.channel()
        with pytest.raises(ChannelClosedByBroker) as err:
            action(channel)
        assert err.value.reply_code == 404
        assert re.fullmatch(
            not_found.format(kind, r"perm-[xrw]-missing-" + names["id"]), err.value.reply_text
        ), err.value.reply_text


def test_delete_of_missing_queue_with_configure_is_ok(user_conn, names) -> None:
    channel = user_conn.channel()
    assert channel.queue_delete("perm-c-missing-" + names["id"]).method.message_count == 0


# --- what is refused: 403 on the channel, the connection stays open --------------------------

# (id, action(channel, names), kind, name key or literal) -> refused(kind, name)
DENIED: list[tuple[str, Callable[[Any, dict[str, str]], object], str, str]] = [
    (
        "declare-read-name",
        lambda ch, n: ch.queue_declare("perm-r-new-" + n["id"]),
        "queue",
        "perm-r-new-{id}",
    ),
    ("declare-existing-unconfigurable", lambda ch, n: ch.queue_declare(n["xq"]), "queue", "{xq}"),
    ("declare-exclusive", lambda ch, n: ch.queue_declare(n["wq"], exclusive=True), "queue", "{wq}"),
    ("delete-queue", lambda ch, n: ch.queue_delete(n["rq"]), "queue", "{rq}"),
    (
        "delete-missing-queue",
        lambda ch, n: ch.queue_delete("perm-x-gone-" + n["id"]),
        "queue",
        "perm-x-gone-{id}",
    ),
    (
        "declare-exchange",
        lambda ch, n: ch.exchange_declare("perm-w-newx-" + n["id"]),
        "exchange",
        "perm-w-newx-{id}",
    ),
    (
        "declare-existing-amq-exchange",
        lambda ch, n: ch.exchange_declare("amq.direct", "direct"),
        "exchange",
        "amq.direct",
    ),
    ("delete-exchange", lambda ch, n: ch.exchange_delete(n["rx"]), "exchange", "{rx}"),
    (
        "delete-missing-exchange",
        lambda ch, n: ch.exchange_delete("perm-x-gone-" + n["id"]),
        "exchange",
        "perm-x-gone-{id}",
    ),
    ("bind-queue-not-writable", lambda ch, n: ch.queue_bind(n["rq"], n["rx"]), "queue", "{rq}"),
    (
        "bind-exchange-not-readable",
        lambda ch, n: ch.queue_bind(n["wq"], n["wx"]),
        "exchange",
        "{wx}",
    ),
    ("bind-queue-checked-first", lambda ch, n: ch.queue_bind(n["xq"], n["xx"]), "queue", "{xq}"),
    (
        "bind-missing-exchange",
        lambda ch, n: ch.queue_bind(n["wq"], "perm-x-gone-" + n["id"]),
        "exchange",
        "perm-x-gone-{id}",
    ),
    (
        "bind-missing-queue",
        lambda ch, n: ch.queue_bind("perm-x-gone-" + n["id"], n["rx"]),
        "queue",
        "perm-x-gone-{id}",
    ),
    ("unbind-queue-not-writable", lambda ch, n: ch.queue_unbind(n["rq"], n["rx"]), "queue", "{rq}"),
    (
        "unbind-exchange-not-readable",
        lambda ch, n: ch.queue_unbind(n["wq"], n["wx"]),
        "exchange",
        "{wx}",
    ),
    (
        "xbind-destination-not-writable",
        lambda ch, n: ch.exchange_bind(n["rx"], n["rx"]),
        "exchange",
        "{rx}",
    ),
    (
        "xbind-source-not-readable",
        lambda ch, n: ch.exchange_bind(n["wx"], n["wx"]),
        "exchange",
        "{wx}",
    ),
    (
        "xbind-destination-checked-first",
        lambda ch, n: ch.exchange_bind(n["rx"], n["wx"]),
        "exchange",
        "{rx}",
    ),
    (
        "xunbind-destination-not-writable",
        lambda ch, n: ch.exchange_unbind(n["rx"], n["rx"]),
        "exchange",
        "{rx}",
    ),
    (
        "xunbind-source-not-readable",
        lambda ch, n: ch.exchange_unbind(n["wx"], n["wx"]),
        "exchange",
        "{wx}",
    ),
    ("publish-exchange", lambda ch, n: publish(n["rx"])(ch), "exchange", "{rx}"),
    ("publish-default-exchange", lambda ch, n: publish("", n["wq"])(ch), "exchange", "amq.default"),
    (
        "publish-amq-direct",
        lambda ch, n: publish("amq.direct", n["wq"])(ch),
        "exchange",
        "amq.direct",
    ),
    ("get", lambda ch, n: ch.basic_get(n["wq"]), "queue", "{wq}"),
    (
        "get-missing",
        lambda ch, n: ch.basic_get("perm-x-gone-" + n["id"]),
        "queue",
        "perm-x-gone-{id}",
    ),
    ("consume", lambda ch, n: ch.basic_consume(n["wq"], print), "queue", "{wq}"),
    (
        "consume-missing",
        lambda ch, n: ch.basic_consume("perm-x-gone-" + n["id"], print),
        "queue",
        "perm-x-gone-{id}",
    ),
    ("purge-needs-read", lambda ch, n: ch.queue_purge(n["wq"]), "queue", "{wq}"),
    ("purge-configure-is-not-enough", lambda ch, n: ch.queue_purge(n["cq"]), "queue", "{cq}"),
]


@pytest.mark.parametrize(
    ("action", "kind", "name"), [c[1:] for c in DENIED], ids=[c[0] for c in DENIED]
)
def test_refused(user_conn, names, action, kind: str, name: str) -> None:
    expected = refused(kind, name.format(**names))
    assert_channel_closed(user_conn, lambda ch: action(ch, names), 403, expected)


def test_publish_to_missing_exchange_without_write_is_refused_not_missing(user_conn, names) -> None:
    gone = "perm-x-gone-" + names["id"]
    assert_channel_closed(user_conn, publish(gone), 403, refused("exchange", gone))


@pytest.mark.parametrize("exclusive", [False, True], ids=["shared", "exclusive"])
def test_server_named_queue_needs_configure_on_the_generated_name(
    user_conn, exclusive: bool
) -> None:
    channel = user_conn.channel()
    with pytest.raises(ChannelClosedByBroker) as err:
        channel.queue_declare("", exclusive=exclusive)
    assert err.value.reply_code == 403
    pattern = re.escape(refused("queue", "@")).replace("@", r"amq\.gen-[A-Za-z0-9_-]{22}")
    assert re.fullmatch(pattern, err.value.reply_text), err.value.reply_text
    assert user_conn.is_open


def test_reserved_queue_prefix_is_reported_before_permissions(user_conn, names) -> None:
    name = "amq.gen-" + names["id"]
    text = f"ACCESS_REFUSED - queue name '{name}' contains reserved prefix 'amq.*'"
    assert_channel_closed(user_conn, lambda ch: ch.queue_declare(name), 403, text)


def test_default_exchange_bind_is_reported_before_permissions(user_conn, names) -> None:
    text = "ACCESS_REFUSED - operation not permitted on the default exchange"
    assert_channel_closed(user_conn, lambda ch: ch.queue_bind(names["wq"], ""), 403, text)


def test_system_exchange_delete_is_reported_before_permissions(user_conn) -> None:
    text = (
        f"ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '{VHOST}' not allowed"
    )
    assert_channel_closed(user_conn, lambda ch: ch.exchange_delete("amq.direct"), 403, text)


# --- empty permissions and per-vhost permissions ---------------------------------------------


def test_empty_permissions_grant_nothing_but_the_vhost(perm_broker, names) -> None:
    conn = perm_broker.connect(EMPTY)
    assert conn.channel().queue_declare(names["rq"], passive=True).method.queue == names["rq"]
    cases: list[tuple[Callable[[Any], object], str, str]] = [
        (
            lambda ch: ch.queue_declare("perm-c-new-" + names["id"]),
            "queue",
            "perm-c-new-" + names["id"],
        ),
        (lambda ch: ch.basic_get(names["rq"]), "queue", names["rq"]),
        (lambda ch: ch.queue_bind(names["wq"], names["rx"]), "queue", names["wq"]),
        (publish("", names["wq"]), "exchange", "amq.default"),
    ]
    for action, kind, name in cases:
        assert_channel_closed(conn, action, 403, refused(kind, name, EMPTY))
    conn.close()


def test_empty_permissions_refuse_server_named_queue(perm_broker) -> None:
    conn = perm_broker.connect(EMPTY)
    with pytest.raises(ChannelClosedByBroker) as err:
        conn.channel().queue_declare("")
    assert err.value.reply_code == 403
    assert err.value.reply_text.startswith("ACCESS_REFUSED - access to queue 'amq.gen-")
    conn.close()


def test_permissions_are_per_vhost_and_unanchored(perm_broker) -> None:
    conn = perm_broker.connect(USER, OTHER_VHOST)
    suffix = uuid.uuid4().hex[:8]
    channel = conn.channel()
    name = f"a-mid-{suffix}"
    assert channel.queue_declare(name, exclusive=True).method.queue == name
    other = f"perm-c-{suffix}"
    assert_channel_closed(
        conn,
        lambda ch: ch.queue_declare(other, exclusive=True),
        403,
        refused("queue", other, USER, OTHER_VHOST),
    )
    conn.close()


# --- connection.open ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "vhost", "text"),
    [
        (USER, "/", f"NOT_ALLOWED - access to vhost '/' refused for user '{USER}'"),
        (NONE, VHOST, f"NOT_ALLOWED - access to vhost '{VHOST}' refused for user '{NONE}'"),
        (NONE, "perm-test-nosuch", "NOT_ALLOWED - vhost perm-test-nosuch not found"),
    ],
    ids=["no-permission-on-default-vhost", "no-permission-anywhere", "missing-vhost"],
)
def test_vhost_access_refused_closes_the_connection(
    perm_broker, user: str, vhost: str, text: str
) -> None:
    with rawamqp.RawConnection(perm_broker.host, perm_broker.port) as conn:
        conn.start(user, PASSWORD)
        conn.tune()
        conn.send(0, commands.Connection.Open(virtual_host=vhost))
        closed = conn.wait_close()
        assert (closed.level, closed.channel) == ("connection", 0)
        assert (closed.reply_code, closed.reply_text) == (530, text)
        assert (closed.class_id, closed.method_id) == (10, 40)
        conn.close_ok_then_eof()


def test_vhost_access_refused_with_pika(perm_broker) -> None:
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as err:
        perm_broker.connect(NONE, VHOST)
    assert "(530)" in str(err.value)
    assert f"NOT_ALLOWED - access to vhost '{VHOST}' refused for user '{NONE}'" in str(err.value)
