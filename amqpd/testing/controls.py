"""Test controls from Python: a broker's clock, fault injection and wait helpers.

`Controls(client, vhost)` speaks to the management API of a broker started with
`test_controls: true` (every `amqpd.testing.Broker` is): `.clock` moves broker time forward
(`advance(seconds)`, `now()`), `.faults` closes, resets and blocks connections, cancels
consumers and fails store writes, `connections()` lists who is connected and
`wait_for_queue()` polls a queue until it has the counts a test expects. Connections are
named by their management name or by the `connection_name` the client gave. Blocking calls
with the standard library only.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from amqpd.testing.management import ManagementClient

CLOSE_REASON = "Closed via management plugin"
NAME_WAIT = 2.0  # seconds a connection that just opened may take to be listed
POLL_INTERVAL = 0.01


def _segment(text: str) -> str:
    return quote(text, safe="")


class Clock:
    """The broker's clock (TTLs, x-expires; heartbeats on request); see amqpd/testclock.py."""

    def __init__(self, client: ManagementClient) -> None:
        self._client = client

    def now(self) -> float:
        """Broker time in seconds since the epoch (the system clock plus every advance)."""
        return float(self._client.call("GET", "/api/amqpd-test/clock")["now"]) / 1000

    def advance(self, seconds: float, connections: bool = False) -> float:
        """Move broker time forward; messages and queues that expire by then go at once.
        With `connections`, the connections' time moves too: heartbeat timeouts fall due
        (clients send heartbeats in real time). Returns the new broker time."""
        body = {"seconds": seconds, "connections": connections}
        reply = self._client.call("POST", "/api/amqpd-test/clock/advance", body)
        return float(reply["now"]) / 1000


class Faults:
    """Fault injection on one broker's connections, consumers and store."""

    def __init__(self, client: ManagementClient, connections: Connections) -> None:
        self._client = client
        self._connections = connections

    def close_connection(self, name: str, reason: str = CLOSE_REASON) -> None:
        """Close with 320 CONNECTION_FORCED (RabbitMQ's DELETE /api/connections/{name})."""
        found = self._connections.find(name)
        self._client.call(
            "DELETE", f"/api/connections/{_segment(found['name'])}", headers={"X-Reason": reason}
        )

    def reset_connection(self, name: str) -> None:
        """Drop the connection's socket with no close handshake (the client sees a reset)."""
        self._on_connection(name, "POST", "reset")

    def block(self, name: str, reason: str = "low on disk") -> None:
        """Send connection.blocked and stop reading from the connection until unblock()."""
        self._on_connection(name, "POST", "blocked", {"reason": reason})

    def unblock(self, name: str) -> None:
        self._on_connection(name, "DELETE", "blocked")

    def cancel_consumer(self, vhost: str, tag: str) -> None:
        """Cancel a consumer from the broker's side (the client gets basic.cancel)."""
        self._client.call(
            "POST", f"/api/amqpd-test/consumers/{_segment(vhost)}/{_segment(tag)}/cancel"
        )

    def disk_full(self, seconds: float) -> None:
        """Make store writes fail with ENOSPC for `seconds`: the broker blocks publishers
        (connection.blocked) once a persistent message cannot be written, then unblocks."""
        self._client.call("POST", "/api/amqpd-test/store/fail-writes", {"seconds": seconds})

    def _on_connection(self, name: str, method: str, action: str, body: Any = None) -> None:
        found = self._connections.find(name)
        path = f"/api/amqpd-test/connections/{_segment(found['name'])}/{action}"
        self._client.call(method, path, body)


class Connections:
    """The broker's client connections as the management API lists them."""

    def __init__(self, client: ManagementClient) -> None:
        self._client = client

    def list(self) -> list[dict[str, Any]]:
        return list(self._client.call("GET", "/api/connections"))

    def find(self, name: str, timeout: float = NAME_WAIT) -> dict[str, Any]:
        """The connection named `name` (management name or client-provided connection_name),
        waiting up to `timeout` for one that is still opening; LookupError if none."""
        deadline = time.monotonic() + timeout
        while True:
            for item in self.list():
                if name in (item.get("name"), item.get("user_provided_name")):
                    return item
            if time.monotonic() >= deadline:
                raise LookupError(f"no connection named {name!r}")
            time.sleep(POLL_INTERVAL * 5)


class Controls:
    """Everything above for one broker; `vhost` is the default of `wait_for_queue`."""

    def __init__(self, client: ManagementClient, vhost: str = "/") -> None:
        self._client = client
        self.base_url = client.base_url
        self.vhost = vhost
        self._connections = Connections(client)
        self.clock = Clock(client)
        self.faults = Faults(client, self._connections)

    def connections(self) -> list[dict[str, Any]]:
        """`GET /api/connections`: each has `name` and `user_provided_name`, among others."""
        return self._connections.list()

    def wait_for_queue(
        self,
        name: str,
        vhost: str | None = None,
        messages: int | None = None,
        consumers: int | None = None,
        timeout: float = 5.0,
    ) -> dict[str, Any]:
        """Poll `GET /api/queues/{vhost}/{name}` until the queue exists and has `messages`
        messages (ready + unacked) and `consumers` consumers, where given; returns its details.
        TimeoutError (saying what was last seen) after `timeout` seconds."""
        path = f"/api/queues/{_segment(self.vhost if vhost is None else vhost)}/{_segment(name)}"
        deadline = time.monotonic() + timeout
        seen: Any = "no such queue"
        while True:
            queue = self._client.call("GET", path, missing_ok=True)
            if queue is not None:
                seen = {"messages": queue.get("messages"), "consumers": queue.get("consumers")}
                if (messages is None or queue.get("messages") == messages) and (
                    consumers is None or queue.get("consumers") == consumers
                ):
                    return dict(queue)
            if time.monotonic() >= deadline:
                wanted = {"messages": messages, "consumers": consumers}
                raise TimeoutError(f"queue {name!r}: wanted {wanted}, last saw {seen}")
            time.sleep(POLL_INTERVAL)
