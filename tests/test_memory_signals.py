"""Stopping is bounded: a second SIGTERM exits at once, and SIGTERM while the store reclaims
a long log exits promptly with nothing lost.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from urllib.parse import quote

import pika
import pytest

from amqpd.store import DurableStore, QueueRecord
from tests.broker_process import BrokerProcess, external_broker
from tests.rawamqp import connect

pytestmark = pytest.mark.skipif(external_broker() is not None, reason="signals its own amqpd")

HEADER = b"\x00<\x00\x00\x00\x00\x00\x00\x00\x00\x00d\x90\x00\x00\x02"  # persistent, empty


def exit_within(broker: BrokerProcess, seconds: float) -> tuple[int, float]:
    assert broker.proc is not None
    started = time.monotonic()
    code = broker.proc.wait(seconds + 5)
    return code, time.monotonic() - started


def test_a_second_sigterm_exits_at_once(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "data").start()
    assert broker.proc is not None
    client = connect(broker.host, broker.port)  # never answers connection.close: a slow stop
    client.open_channel(1)
    broker.proc.send_signal(signal.SIGTERM)
    assert broker.wait_for_log("shutting down")
    broker.proc.send_signal(signal.SIGTERM)
    code, took = exit_within(broker, 2.0)
    # at once: well inside the 3 s grace the first signal gave the silent client (a loaded
    # box may take a second to schedule the exit); exit code 1 is the second signal's path
    assert code == 1 and took < 2.0
    assert broker.wait_for_log("second stop signal")
    client.close()


def test_sigterm_during_a_long_reclaim_exits_promptly_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Preparing the log in this process: on a loaded machine its writer may need more than the
    # store's usual close bound, and a writer left behind would keep the data directory locked.
    monkeypatch.setattr("amqpd.store.log.CLOSE_TIMEOUT", 120.0)
    data = tmp_path / "data"
    # Thousands of small segments, each with one live message among dead ones: the broker's
    # idle reclaim compacts them one by one after it starts.
    store = DurableStore(data / quote("/", safe=""), fsync="never", segment_bytes=8 * 1024)
    store.recover()
    store.queue_declared(QueueRecord("keep", False, {}))
    store.queue_declared(QueueRecord("churn", False, {}))
    message_id = 0
    kept = 0
    dead = []
    for _ in range(3000):
        message_id += 1
        store.message_published(message_id, ["keep"], "", "keep", HEADER, b"K" * 100)
        kept += 1
        for _ in range(7):
            message_id += 1
            store.message_published(message_id, ["churn"], "", "churn", HEADER, b"c" * 1000)
            dead.append(message_id)
        store.flush()
    for dead_id in dead:
        store.message_removed("churn", dead_id)
    store.flush()
    store.close()

    broker = BrokerProcess(data).start(timeout=60)
    time.sleep(0.5)  # the idle reclaim is under way
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGTERM)
    code, took = exit_within(broker, 8.0)
    assert code == 0 and took < 8.0, broker.log_lines[-5:]

    with BrokerProcess(data) as again:
        connection = pika.BlockingConnection(pika.ConnectionParameters(again.host, again.port))
        channel = connection.channel()
        ok = channel.queue_declare("keep", durable=True, passive=True)
        assert ok.method.message_count == kept
        assert channel.queue_declare("churn", durable=True, passive=True).method.message_count == 0
        connection.close()
