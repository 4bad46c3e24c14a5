"""The memory high watermark: parsing the setting, the alarm's states, and a real pika
publisher blocked (`connection.blocked`, "low on memory") and unblocked by a real broker.

The broker test holds memory with unacked deliveries of large messages to a consumer that
does not ack yet, so the figure the broker watches (RssAnon + RssShmem) really crosses a
watermark set just above its idle use; acking releases it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pika
import pytest

from amqpd.broker import Broker
from amqpd.config import Config, ConfigError, load_config
from amqpd.memory import MemoryAlarm, Watermark, available_memory, parse_watermark, used_memory
from tests.broker_process import BrokerProcess, external_broker

MiB = 1024 * 1024


@pytest.mark.parametrize(
    "text,expected",
    [
        ("0.4", Watermark(fraction=0.4)),
        ("1", Watermark(fraction=1.0)),
        ("512MiB", Watermark(absolute=512 * MiB)),
        ("512 MiB", Watermark(absolute=512 * MiB)),
        ("2GB", Watermark(absolute=2 * 1000**3)),
        ("1g", Watermark(absolute=1024**3)),
        ("1073741824", Watermark(absolute=1024**3)),
    ],
)
def test_watermark_settings(text: str, expected: Watermark) -> None:
    assert parse_watermark(text) == expected


@pytest.mark.parametrize("text", ["0", "1.5", "-1", "12 parsecs", "", "100", "0.5MiB"])
def test_bad_watermark_settings(text: str) -> None:
    with pytest.raises(ValueError):
        parse_watermark(text)


def test_watermark_limit_is_a_share_of_available_memory_or_a_size() -> None:
    assert Watermark(fraction=0.4).limit(1000 * MiB) == 400 * MiB
    assert Watermark(absolute=256 * MiB).limit(1000 * MiB) == 256 * MiB
    assert 0 < available_memory() and 0 < used_memory() < available_memory()


def test_watermark_from_yaml_environment_and_flag(tmp_path: Path) -> None:
    path = tmp_path / "amqpd.yaml"
    path.write_text("memory_high_watermark: 0.3\n")
    assert load_config(["--config", str(path)], {}).memory_high_watermark == "0.3"
    env = {"AMQPD_MEMORY_HIGH_WATERMARK": "300MiB"}
    assert load_config(["--config", str(path)], env).memory_high_watermark == "300MiB"
    flag = ["--memory-high-watermark", "1GiB"]
    assert load_config(flag, env).memory_high_watermark == "1GiB"
    with pytest.raises(ConfigError, match="memory_high_watermark"):
        load_config(["--memory-high-watermark", "lots"], {})


def test_alarm_sets_at_the_limit_and_clears_below_it() -> None:
    alarm = MemoryAlarm(100)
    assert not alarm.update(99) and not alarm.on
    assert alarm.update(100) and alarm.on
    assert not alarm.update(150)
    assert alarm.update(99) and not alarm.on
    assert alarm.update(49) is False and not alarm.paging()
    alarm.update(50)
    assert alarm.paging()


def test_broker_names_its_alarms_as_rabbitmq_and_combines_them() -> None:
    class Loop:
        def call_soon(self, callback: object) -> None: ...

    broker = Broker(Config(memory_high_watermark="64MiB"), Loop())  # type: ignore[arg-type]
    assert broker.alarms() == [] and broker.blocked_reason == ""
    broker.check_memory(65 * MiB)
    assert broker.alarms() == ["memory"] and broker.blocked_reason == "low on memory"
    broker.disk_full = True
    broker._alarms_changed()
    assert broker.alarms() == ["memory", "disk"]
    assert broker.blocked_reason == "low on memory & low on disk"
    broker.check_memory(10 * MiB)
    assert broker.alarms() == ["disk"] and broker.blocked_reason == "low on disk"


def rss_anon(pid: int) -> int:
    return used_memory(Path(f"/proc/{pid}/status"))


@pytest.mark.skipif(external_broker() is not None, reason="starts its own amqpd")
def test_memory_alarm_blocks_and_unblocks_a_pika_publisher(tmp_path: Path) -> None:
    with BrokerProcess(tmp_path / "idle") as probe:
        assert probe.proc is not None
        time.sleep(0.3)
        idle = rss_anon(probe.proc.pid)
    watermark = idle + 48 * MiB
    with BrokerProcess(
        tmp_path / "data", "--memory-high-watermark", f"{watermark // MiB}MiB"
    ) as broker:
        params = pika.ConnectionParameters(broker.host, broker.port)
        publisher = pika.BlockingConnection(params)
        consumer = pika.BlockingConnection(params)
        events: list[str] = []
        publisher.add_on_connection_blocked_callback(
            lambda _c, frame: events.append(frame.method.reason)
        )
        publisher.add_on_connection_unblocked_callback(lambda _c, _f: events.append("unblocked"))
        pub = publisher.channel()
        pub.queue_declare("mem-alarm")
        # A connection that published before the alarm and is idle during it is not blocked
        # (RabbitMQ blocks at the next publish): its client hears nothing.
        idle = pika.BlockingConnection(params)
        idle_events: list[str] = []
        idle.add_on_connection_blocked_callback(lambda _c, _f: idle_events.append("blocked"))
        idle.add_on_connection_unblocked_callback(lambda _c, _f: idle_events.append("unblocked"))
        idle.channel().basic_publish("", "mem-alarm", b"before")
        sub = consumer.channel()
        tags: list[int] = []
        sub.basic_consume("mem-alarm", lambda _ch, method, _p, _b: tags.append(method.delivery_tag))
        body = b"m" * MiB
        deadline = time.monotonic() + 30
        sent = 0
        while not events and time.monotonic() < deadline:
            if sent < 400:
                pub.basic_publish("", "mem-alarm", body)
                sent += 1
            consumer.process_data_events(time_limit=0)
            publisher.process_data_events(time_limit=0.01)
        assert events == ["low on memory"], (events, sent)
        assert broker.wait_for_log("memory alarm set")
        idle.process_data_events(time_limit=0.2)
        assert idle_events == []
        # Consumers and their acks keep flowing while publishers are blocked: acking frees
        # the memory, which clears the alarm.
        while "unblocked" not in events and time.monotonic() < deadline:
            consumer.process_data_events(time_limit=0.05)
            if tags:
                sub.basic_ack(tags[-1], multiple=True)
                tags.clear()
            publisher.process_data_events(time_limit=0.05)
        assert events == ["low on memory", "unblocked"]
        assert broker.wait_for_log("memory alarm cleared")
        idle.process_data_events(time_limit=0.2)
        assert idle_events == []
        idle.close()
        pub.basic_publish("", "mem-alarm", b"after")
        publisher.close()
        consumer.close()
