"""`/api/amqpd-test/...`: test controls (clock, fault injection), only with `test_controls` on.

Not part of RabbitMQ's API: with the setting off (the default) every path here is 404, as
on RabbitMQ. All of them need the administrator tag.

- `GET  /api/amqpd-test/clock` -> `{"now": ms, "offset": s}`: the broker's (shifted) time.
- `POST /api/amqpd-test/clock/advance {"seconds": S}`: move broker time forward; TTLs and
  `x-expires` that fall due are applied at once. With `"connections": true` the connections'
  clock moves too: heartbeat and handshake timeouts that fall due close those connections.
- `POST /api/amqpd-test/connections/{name}/reset`: drop the socket without a close (TCP RST).
- `POST|DELETE /api/amqpd-test/connections/{name}/blocked {"reason": R}`: send
  connection.blocked / connection.unblocked and stop / resume reading from it.
- `POST /api/amqpd-test/consumers/{vhost}/{tag}/cancel`: a server-side basic.cancel.
- `POST /api/amqpd-test/store/fail-writes {"seconds": S}`: every store's writes fail with
  ENOSPC for S seconds (the disk-full alarm blocks publishers as for a real full disk).

`{name}` is the connection's management name (`"127.0.0.1:50000 -> 127.0.0.1:5672"`) or the
client-provided `connection_name`. Closing with 320 is RabbitMQ's own
`DELETE /api/connections/{name}`.
"""

from __future__ import annotations

import math
from typing import Any

from amqpd.mgmt.context import Call
from amqpd.mgmt.errors import bad_request, not_found
from amqpd.mgmt.inspect import ConnectionView
from amqpd.mgmt.router import NO_CONTENT, Router
from amqpd.testclock import ShiftedClock

DEFAULT_BLOCK_REASON = "low on disk"


def _enabled(call: Call) -> None:
    if not call.mgmt.config.test_controls:
        raise not_found()
    call.requester.require_admin()


def _clock(call: Call) -> ShiftedClock:
    _enabled(call)
    clock = call.mgmt.broker.test_clock
    if clock is None:
        raise not_found()
    return clock


def _seconds(call: Call) -> float:
    value = call.json().get("seconds")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad_request("seconds must be a number")
    if not math.isfinite(value) or value < 0:
        raise bad_request("seconds must be a finite number >= 0")
    return float(value)


def _connection(call: Call) -> Any:
    _enabled(call)
    name = call.params["name"]
    for connection in list(call.mgmt.broker.connections):
        view = ConnectionView(connection)
        if view.name == name:
            return connection
        negotiated = connection.negotiated
        if negotiated is not None:
            given = negotiated.client_properties.get("connection_name")
            if isinstance(given, bytes):
                given = given.decode(errors="replace")
            if given == name:
                return connection
    raise not_found()


def show_clock(call: Call) -> Any:
    clock = _clock(call)
    return {"now": clock.now(), "offset": clock.offset}


def advance_clock(call: Call) -> Any:
    clock = _clock(call)
    seconds = _seconds(call)
    connections = call.json().get("connections", False)
    if not isinstance(connections, bool):
        raise bad_request("connections must be true or false")
    ran = clock.advance(seconds)
    connection_clock = call.mgmt.broker.connection_clock
    if connections and connection_clock is not None:
        ran += connection_clock.advance(seconds)
    return {"now": clock.now(), "offset": clock.offset, "timers_run": ran}


def reset_connection(call: Call) -> Any:
    _connection(call).abort()
    return NO_CONTENT


def block_connection(call: Call) -> Any:
    connection = _connection(call)
    reason = call.json().get("reason", DEFAULT_BLOCK_REASON)
    if not isinstance(reason, str):
        raise bad_request("reason must be a string")
    connection.set_blocked(True, reason)
    return NO_CONTENT


def unblock_connection(call: Call) -> Any:
    _connection(call).set_blocked(False)
    return NO_CONTENT


def cancel_consumer(call: Call) -> Any:
    _enabled(call)
    vhost, tag = call.params["vhost"], call.params["tag"]
    for connection in list(call.mgmt.broker.connections):
        if connection.vhost is None or connection.vhost.name != vhost:
            continue
        for channel in list(connection.channels.values()):
            if tag in channel.consumers and channel.server_cancel(tag):
                return NO_CONTENT
    raise not_found()


def fail_writes(call: Call) -> Any:
    _enabled(call)
    seconds = _seconds(call)
    for store in call.mgmt.broker.stores:
        store.fail_writes(seconds)
    return NO_CONTENT


def register(router: Router) -> None:
    router.add("GET", "/api/amqpd-test/clock", show_clock)
    router.add("POST", "/api/amqpd-test/clock/advance", advance_clock)
    router.add("POST", "/api/amqpd-test/connections/{name}/reset", reset_connection)
    router.add("POST", "/api/amqpd-test/connections/{name}/blocked", block_connection)
    router.add("DELETE", "/api/amqpd-test/connections/{name}/blocked", unblock_connection)
    router.add("POST", "/api/amqpd-test/consumers/{vhost}/{tag}/cancel", cancel_consumer)
    router.add("POST", "/api/amqpd-test/store/fail-writes", fail_writes)
