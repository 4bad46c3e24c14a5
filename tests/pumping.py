"""Drive pika BlockingConnections from a test without sleeping blindly."""

from __future__ import annotations

import time
from collections.abc import Callable

from pika.adapters.blocking_connection import BlockingConnection

TIMEOUT = 15.0  # a failure path only: generous for a loaded machine


def pump(
    conns: list[BlockingConnection], until: Callable[[], bool], timeout: float = TIMEOUT
) -> None:
    """Process I/O on every connection until `until()` holds; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out waiting for the broker"
        for conn in conns:
            conn.process_data_events(time_limit=0.01)


def settle(conns: list[BlockingConnection], seconds: float = 0.3) -> None:
    """Let in-flight deliveries arrive, so a test can assert that nothing more came."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for conn in conns:
            conn.process_data_events(time_limit=0.02)
