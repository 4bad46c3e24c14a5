"""What operators may know of a client connection and its channels, as plain values.

The management API and the Prometheus exporter read connections only through here:
`describe(connection)` (peer, user, vhost, state, negotiated limits, byte counts),
`channels(connection)` and `consumers(connection)` (one value per channel or consumer),
`unacked_queues` / `unacked_messages` (the deliveries awaiting an ack) and
`force_close`. This module is the one place that knows which attributes of `Connection`,
`Channel` and `Consumer` hold these facts; callers get NamedTuples and never touch the
protocol objects' state. Reading only: nothing here changes a connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from amqpd.connection import Connection
from amqpd.connection_state import CLOSED, CLOSING, OPEN
from amqpd.core.message import Message
from amqpd.core.queue import Queue


class ConnectionInfo(NamedTuple):
    peer_host: str
    peer_port: int
    host: str
    port: int
    user: str  # empty before login
    vhost: str | None
    state: str  # RabbitMQ's: starting, running, blocking, blocked, closing, closed
    open: bool
    mechanism: str | None
    client_properties: dict[str, Any]
    channels: int
    recv_oct: int
    send_oct: int
    channel_max: int
    frame_max: int
    heartbeat: int
    connected_at: float  # wall-clock seconds


class ChannelInfo(NamedTuple):
    number: int
    closing: bool
    consumers: int
    unacked: int
    unconfirmed: int
    uncommitted: int
    prefetch: int
    global_prefetch: int
    confirm: bool
    transactional: bool


class ConsumerInfo(NamedTuple):
    channel: int
    tag: str
    queue: Queue
    ack_required: bool
    exclusive: bool
    prefetch: int


def _address(transport: Any, key: str) -> tuple[str, int]:
    info = transport.get_extra_info(key) if transport is not None else None
    if not info:
        return "?", 0
    return str(info[0]), int(info[1])


def _state(connection: Connection) -> str:
    state = connection.state
    if state is OPEN:
        if connection.flow.blocked:
            return "blocked"
        return "blocking" if connection.broker.blocked_reason else "running"
    if state is CLOSING:
        return "closing"
    if state is CLOSED:
        return "closed"
    return "starting"


def describe(connection: Connection) -> ConnectionInfo:
    peer_host, peer_port = _address(connection.transport, "peername")
    host, port = _address(connection.transport, "sockname")
    negotiated = connection.negotiated
    vhost = connection.vhost
    return ConnectionInfo(
        peer_host,
        peer_port,
        host,
        port,
        connection.user,
        vhost.name if vhost is not None else None,
        _state(connection),
        connection.state is OPEN,
        negotiated.mechanism if negotiated is not None else None,
        dict(negotiated.client_properties) if negotiated is not None else {},
        len(connection.channels),
        connection.recv_oct,
        connection.send_oct,
        connection.channel_max,
        connection.frame_max,
        connection.heartbeat,
        connection.connected_at,
    )


def _open_channels(connection: Connection) -> list[Any]:
    return list(connection.channels.values()) if connection.state is OPEN else []


def channels(connection: Connection) -> list[ChannelInfo]:
    """The channels of an open connection (none once it is closing)."""
    described = []
    for channel in _open_channels(connection):
        deliveries, confirms, tx = channel.deliveries, channel.confirms, channel.tx
        described.append(
            ChannelInfo(
                channel.number,
                bool(channel.closing),
                len(channel.consumers),
                len(deliveries.unacked),
                confirms.seq - confirms.sent if confirms is not None else 0,
                len(tx) if tx.active else 0,
                deliveries.prefetch,
                deliveries.global_prefetch,
                confirms is not None,
                bool(tx.active),
            )
        )
    return described


def consumers(connection: Connection) -> list[ConsumerInfo]:
    return [
        ConsumerInfo(
            channel.number,
            consumer.tag,
            consumer.queue,
            not consumer.no_ack,
            consumer.exclusive,
            consumer.prefetch,
        )
        for channel in _open_channels(connection)
        for consumer in list(channel.consumers.values())
    ]


def unacked_queues(connection: Connection) -> Iterator[Queue]:
    """The queue of each delivery awaiting an ack, one per delivery."""
    for channel in _open_channels(connection):
        for entry in channel.deliveries.unacked.values():
            yield entry[0]


def unacked_messages(connection: Connection, queue: Queue) -> list[Message]:
    """The messages of `queue` delivered on this connection and awaiting an ack."""
    return [
        entry[2]
        for channel in _open_channels(connection)
        for entry in channel.deliveries.unacked.values()
        if entry[0] is queue
    ]


def force_close(connection: Connection, text: str) -> None:
    """Close with 320 CONNECTION_FORCED and `text`, as an operator does."""
    connection.force_close("management", text)
