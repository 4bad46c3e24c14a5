"""The RabbitMQ extensions across a restart and a `kill -9` of a private amqpd: queue
arguments, priorities and `x-death` headers survive like the rest of a persistent message;
a declare logs a warning for each accepted but unenforced argument."""

from __future__ import annotations

import time
from pathlib import Path

import pika
import pytest

from tests.broker_process import BrokerProcess, external_broker

pytestmark = pytest.mark.skipif(
    external_broker() is not None, reason="restarts a private amqpd; AMQPD_TEST_URL is set"
)


def _connect(proc: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            proc.host, proc.port, credentials=pika.PlainCredentials("guest", "guest")
        )
    )


def _get_all(channel, queue: str) -> list[tuple[bytes, pika.BasicProperties]]:  # type: ignore[no-untyped-def]
    got = []
    while True:
        method, props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return got
        got.append((body, props))


def _restart(proc: BrokerProcess, data_dir: Path, how: str) -> BrokerProcess:
    if how == "kill":
        proc.kill()
    else:
        proc.stop()
    return BrokerProcess(data_dir).start()


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_priorities_arguments_and_x_death_survive(tmp_path: Path, how: str) -> None:
    proc = BrokerProcess(tmp_path).start()
    try:
        conn = _connect(proc)
        channel = conn.channel()
        channel.confirm_delivery()
        channel.queue_declare("prio", durable=True, arguments={"x-max-priority": 5})
        channel.queue_declare("dead", durable=True)
        channel.queue_declare(
            "limited",
            durable=True,
            arguments={
                "x-max-length": 2,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": "dead",
            },
        )
        for body, priority in [(b"low", 1), (b"high", 5), (b"mid", 3)]:
            props = pika.BasicProperties(delivery_mode=2, priority=priority)
            channel.basic_publish("", "prio", body, props)
        for i in range(3):
            props = pika.BasicProperties(delivery_mode=2, headers={"n": i})
            channel.basic_publish("", "limited", b"%d" % i, props)
        # the maxlen dead-letter is written in the same batch as its cause: before the barrier
        deadline = time.monotonic() + 10
        while channel.queue_declare("dead", durable=True, passive=True).method.message_count < 1:
            assert time.monotonic() < deadline, "nothing was dead-lettered"
            time.sleep(0.02)
        channel.basic_publish("", "dead", b"barrier", pika.BasicProperties(delivery_mode=2))
        conn.close()
        proc = _restart(proc, tmp_path, how)
        conn = _connect(proc)
        channel = conn.channel()
        assert [body for body, _ in _get_all(channel, "prio")] == [b"high", b"mid", b"low"]
        dead = _get_all(channel, "dead")
        assert [body for body, _ in dead] == [b"0", b"barrier"]
        death = dead[0][1].headers["x-death"][0]
        assert (death["reason"], death["queue"], dead[0][1].headers["n"]) == (
            "maxlen",
            "limited",
            0,
        )
        for i in range(3, 5):
            props = pika.BasicProperties(delivery_mode=2)
            channel.basic_publish("", "limited", b"%d" % i, props)
        assert [body for body, _ in _get_all(channel, "limited")] == [b"3", b"4"]
        assert [body for body, _ in _get_all(channel, "dead")] == [b"1", b"2"]
        conn.close()
    finally:
        proc.stop()


def test_unenforced_argument_logs_a_warning(tmp_path: Path) -> None:
    with BrokerProcess(tmp_path) as proc:
        conn = _connect(proc)
        conn.channel().queue_declare("lazy", arguments={"x-queue-mode": "lazy"})
        conn.close()
        assert proc.wait_for_log(
            "queue 'lazy' in vhost '/': argument x-queue-mode is accepted but not enforced"
        )


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_expiry_deadlines_are_absolute_across_a_restart(tmp_path: Path, how: str) -> None:
    proc = BrokerProcess(tmp_path).start()
    try:
        conn = _connect(proc)
        channel = conn.channel()
        channel.confirm_delivery()
        channel.queue_declare("dead", durable=True)
        dead_letter = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"}
        channel.queue_declare("ttl", durable=True, arguments={"x-message-ttl": 1500, **dead_letter})
        channel.queue_declare("plain", durable=True, arguments=dead_letter)
        persistent = pika.BasicProperties(delivery_mode=2)
        channel.basic_publish("", "ttl", b"queue ttl", persistent)
        short = pika.BasicProperties(delivery_mode=2, expiration="1500")
        channel.basic_publish("", "plain", b"own ttl", short)
        long_lived = pika.BasicProperties(delivery_mode=2, expiration="60000")
        channel.basic_publish("", "plain", b"long", long_lived)
        published = time.monotonic()
        conn.close()
        if how == "kill":
            proc.kill()
        else:
            proc.stop()
        time.sleep(max(0.0, 1.8 - (time.monotonic() - published)))  # both ran out while down
        proc = BrokerProcess(tmp_path).start()
        conn = _connect(proc)
        channel = conn.channel()
        assert channel.queue_declare("ttl", passive=True).method.message_count == 0
        dead = _get_all(channel, "dead")
        assert sorted(body for body, _ in dead) == [b"own ttl", b"queue ttl"]
        assert {props.headers["x-death"][0]["reason"] for _, props in dead} == {"expired"}
        assert [body for body, _ in _get_all(channel, "plain")] == [b"long"]
        conn.close()
    finally:
        proc.stop()


RESTART_TTL = 6.0  # longer than a restart takes on a loaded box (up to 4.6 s seen)


def _expiry_across_a_restart(data_dir: Path) -> tuple[float, float, float]:
    """Publish a persistent message with a RESTART_TTL queue TTL (dead-lettered to "dead"),
    stop amqpd for a second, start it again and wait for the message to expire. Returns the
    seconds from publish to the restart's launch, to the first look into "dead" (a basic.get
    on the restarted broker), and to the expiry."""
    proc = BrokerProcess(data_dir).start()
    try:
        conn = _connect(proc)
        channel = conn.channel()
        channel.confirm_delivery()
        channel.queue_declare("dead", durable=True)
        dead_letter = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"}
        ttl = {"x-message-ttl": int(RESTART_TTL * 1000)}
        channel.queue_declare("ttl", durable=True, arguments={**ttl, **dead_letter})
        before_publish = time.monotonic()
        channel.basic_publish("", "ttl", b"m", pika.BasicProperties(delivery_mode=2))
        conn.close()
        proc.stop()
        time.sleep(1.0)  # down for a second at least
        launched = time.monotonic()
        proc = BrokerProcess(data_dir).start()
        conn = _connect(proc)
        channel = conn.channel()
        deadline = time.monotonic() + RESTART_TTL + 15
        first_look = None
        while (got := channel.basic_get("dead", auto_ack=True))[0] is None:
            first_look = first_look or time.monotonic()
            assert time.monotonic() < deadline, "the message never expired"
            time.sleep(0.02)
        expired = time.monotonic()
        first_look = first_look or expired
        assert got[1].headers["x-death"][0]["reason"] == "expired"  # kept, then expired
        conn.close()
        return launched - before_publish, first_look - before_publish, expired - before_publish
    finally:
        proc.stop()


def test_expiry_deadline_counts_from_publish_not_from_restart(tmp_path: Path) -> None:
    for attempt in range(3):
        launched, first_look, expired = _expiry_across_a_restart(tmp_path / str(attempt))
        if first_look - launched < RESTART_TTL - 0.3:
            break  # else the restart outlasted the TTL: either way it expires once looked at
    else:
        pytest.fail(f"amqpd took {first_look - launched:.1f} s to restart and answer, thrice")
    assert expired > RESTART_TTL - 0.05, expired  # not before its time (ms clock, rounding)
    # Its first deadline, not RESTART_TTL after the restart: that would be after this.
    assert expired < launched + RESTART_TTL, (launched, first_look, expired)
