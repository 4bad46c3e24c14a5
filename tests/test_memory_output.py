"""Bounded output: a client that publishes but never reads stops being read.

One raw client floods `mandatory` unroutable 64 KiB messages (each one comes back as a
basic.return of the same size) and reads nothing. The broker must stop reading from it once
its unread output passes a limit, so the client's sending stalls and the broker's memory
(RssAnon + RssShmem) stays bounded; once the client reads, everything comes back and the
connection carries on.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from pamqp import body, commands, frame, header

from amqpd.memory import used_memory
from tests.broker_process import BrokerProcess, external_broker
from tests.rawamqp import connect

MiB = 1024 * 1024
BODY = 64 * 1024
CAP = 256 * MiB  # a broker that reads everything would take all of it


def publish_bytes(routing_key: str) -> bytes:
    return (
        frame.marshal(commands.Basic.Publish(routing_key=routing_key, mandatory=True), 1)
        + frame.marshal(header.ContentHeader(0, BODY, commands.Basic.Properties()), 1)
        + frame.marshal(body.ContentBody(b"r" * BODY), 1)
    )


@pytest.mark.skipif(external_broker() is not None, reason="measures its own amqpd")
def test_an_unread_mandatory_flood_stays_bounded(tmp_path: Path) -> None:
    with BrokerProcess(tmp_path / "data") as broker:
        assert broker.proc is not None
        status = Path(f"/proc/{broker.proc.pid}/status")
        client = connect(broker.host, broker.port)
        client.open_channel(1)
        before = used_memory(status)
        unit = publish_bytes("nowhere-at-all")
        block = memoryview(unit * 16)
        sock = client.sock
        sock.setblocking(False)
        sent = 0
        last_progress = time.monotonic()
        while sent < CAP and time.monotonic() - last_progress < 2.0:
            try:
                sent += sock.send(block[sent % len(unit) :])
                last_progress = time.monotonic()
            except BlockingIOError:
                time.sleep(0.01)
        grown = used_memory(status) - before
        assert sent < 96 * MiB, f"the broker kept reading: {sent // MiB} MiB taken"
        assert grown < 96 * MiB, f"broker memory grew by {grown // MiB} MiB"

        # The client reads now: every publish comes back, and the connection still works.
        publishes = -(-sent // len(unit))
        returned: list[int] = []

        def read_returns() -> None:
            while len(returned) < publishes:
                _, value = client.recv_frame()
                if isinstance(value, commands.Basic.Return):
                    returned.append(value.reply_code)
            client.recv_frame()  # the last return's content header
            client.recv_frame()  # and body

        sock.settimeout(30)
        reader = threading.Thread(target=read_returns)
        reader.start()
        rest = len(unit) - sent % len(unit)
        if rest != len(unit):
            sock.sendall(block[sent % len(unit) : sent % len(unit) + rest])
        reader.join(60)
        assert len(returned) == publishes and set(returned) == {312}
        client.send(1, commands.Basic.Qos(prefetch_count=1))
        client.expect(commands.Basic.QosOk)
        client.close()
        print(f"taken {sent // MiB} MiB, broker grew {grown // MiB} MiB")
