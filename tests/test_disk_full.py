"""A full disk blocks publishers (connection.blocked) instead of corrupting the log.

The data directory is a tiny tmpfs, so the store runs out of space for real; growing the
tmpfs with a remount gives the space back. Needs root (mount); skipped otherwise.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from tests.broker_process import BrokerProcess, external_broker

pytestmark = pytest.mark.skipif(
    external_broker() is not None or os.geteuid() != 0, reason="needs root and a private amqpd"
)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {result.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_full_disk_blocks_publishers_then_unblocks(tiny_disk: Path) -> None:
    with BrokerProcess(tiny_disk / "data") as broker:
        params = pika.ConnectionParameters(broker.host, broker.port, blocked_connection_timeout=30)
        connection = pika.SelectConnection(params)
        events: list[str] = []
        confirmed: list[int] = []
        state: dict[str, object] = {"sent": 0}
        body = b"x" * 16384

        def on_blocked(_connection: object, _frame: object) -> None:
            events.append("blocked")
            subprocess.run(
                ["mount", "-o", "remount,size=64m", str(tiny_disk)], check=True
            )

        def on_unblocked(_connection: object, _frame: object) -> None:
            events.append("unblocked")
            connection.ioloop.call_later(0.2, connection.ioloop.stop)

        def on_ack(frame: pika.frame.Method) -> None:
            confirmed.append(frame.method.delivery_tag)

        def publish_more(channel: pika.channel.Channel) -> None:
            if events:
                return
            for _ in range(20):
                channel.basic_publish(
                    "", "durable-q", body, pika.BasicProperties(delivery_mode=2)
                )
                state["sent"] = int(state["sent"]) + 1  # type: ignore[call-overload]
            connection.ioloop.call_later(0.01, lambda: publish_more(channel))

        def on_channel(channel: pika.channel.Channel) -> None:
            channel.confirm_delivery(on_ack)
            channel.queue_declare(
                "durable-q", durable=True, callback=lambda _frame: publish_more(channel)
            )

        def on_open(_connection: object) -> None:
            connection.add_on_connection_blocked_callback(on_blocked)
            connection.add_on_connection_unblocked_callback(on_unblocked)
            connection.channel(on_open_callback=on_channel)

        connection.add_on_open_callback(on_open)
        connection.ioloop.call_later(30, connection.ioloop.stop)
        connection.ioloop.start()
        assert events == ["blocked", "unblocked"]
        deadline = time.monotonic() + 10
        while len(confirmed) < 1 and time.monotonic() < deadline:
            connection.ioloop.call_later(0.1, connection.ioloop.stop)
            connection.ioloop.start()
        assert confirmed, "no publish was confirmed after the disk had room again"
        if connection.is_open:
            connection.close()
        assert broker.proc is not None and broker.proc.poll() is None
    assert broker.wait_for_log("disk full: blocking publishers", timeout=2)
    assert not any("Traceback" in line for line in broker.log_lines)
