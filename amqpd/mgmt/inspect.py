"""What the management API may know about client connections, channels and consumers.

This is the one module that reads the broker's connection registry (`broker.connections`).
It uses only the public, descriptive attributes a connection keeps for operators (peer,
user, vhost, client properties, negotiated limits, its channels' numbers, modes, consumers
and unacked deliveries) and returns plain dicts; closing goes through
`Connection.force_close`. Nothing here changes protocol state.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from amqpd.connection_state import CLOSED, CLOSING, OPEN
from amqpd.mgmt.jsonable import to_json

PROTOCOL = "AMQP 0-9-1"


def node_name() -> str:
    return f"amqpd@{socket.gethostname().split('.')[0]}"


def _address(transport: Any, key: str) -> tuple[str, int]:
    info = transport.get_extra_info(key) if transport is not None else None
    if not info:
        return "?", 0
    return str(info[0]), int(info[1])


def _joined(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _state(connection: Any) -> str:
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


class ConnectionView:
    """A read-only description of one client connection."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self.peer_host, self.peer_port = _address(connection.transport, "peername")
        self.host, self.port = _address(connection.transport, "sockname")
        self.name = f"{_joined(self.peer_host, self.peer_port)} -> {_joined(self.host, self.port)}"
        self.user = connection.user
        vhost = connection.vhost
        self.vhost = vhost.name if vhost is not None else None

    @property
    def open(self) -> bool:
        return self._connection.state is OPEN

    def channels(self) -> list[Any]:
        return list(self._connection.channels.values()) if self.open else []

    def json(self, node: str) -> dict[str, Any]:
        connection = self._connection
        negotiated = connection.negotiated
        client = to_json(dict(negotiated.client_properties)) if negotiated is not None else {}
        return {
            "name": self.name,
            "node": node,
            "type": "network",
            "protocol": PROTOCOL,
            "state": _state(connection),
            "user": self.user,
            "user_who_performed_action": self.user,
            "vhost": self.vhost,
            "auth_mechanism": negotiated.mechanism if negotiated is not None else None,
            "host": self.host,
            "port": self.port,
            "peer_host": self.peer_host,
            "peer_port": self.peer_port,
            "ssl": False,
            "ssl_protocol": None,
            "ssl_key_exchange": None,
            "ssl_cipher": None,
            "ssl_hash": None,
            "peer_cert_subject": None,
            "peer_cert_issuer": None,
            "peer_cert_validity": None,
            "channels": len(connection.channels),
            "recv_oct": connection.recv_oct,
            "send_oct": connection.send_oct,
            "channel_max": connection.channel_max,
            "frame_max": connection.frame_max,
            "timeout": connection.heartbeat,
            "connected_at": int(connection.connected_at * 1000),
            "client_properties": client,
            "user_provided_name": client.get("connection_name"),
        }

    def close(self, text: str) -> None:
        self._connection.force_close("management", text)

    def channel_json(self, channel: Any, node: str) -> dict[str, Any]:
        unacked = channel.deliveries.unacked
        confirms = channel.confirms
        return {
            "name": f"{self.name} ({channel.number})",
            "node": node,
            "number": channel.number,
            "user": self.user,
            "user_who_performed_action": self.user,
            "vhost": self.vhost,
            "connection_details": self.details(),
            "state": "closing" if channel.closing else "running",
            "consumer_count": len(channel.consumers),
            "messages_unacknowledged": len(unacked),
            "messages_unconfirmed": confirms.seq - confirms.sent if confirms is not None else 0,
            "messages_uncommitted": len(channel.tx) if channel.tx.active else 0,
            "acks_uncommitted": 0,
            "prefetch_count": channel.deliveries.prefetch,
            "global_prefetch_count": channel.deliveries.global_prefetch,
            "confirm": confirms is not None,
            "transactional": channel.tx.active,
        }

    def details(self) -> dict[str, Any]:
        return {"name": self.name, "peer_host": self.peer_host, "peer_port": self.peer_port}

    def consumers(self, node: str) -> Iterator[tuple[Any, dict[str, Any]]]:
        """(queue, consumer JSON) for every consumer on this connection."""
        for channel in self.channels():
            channel_details = {
                "name": f"{self.name} ({channel.number})",
                "number": channel.number,
                "connection_name": self.name,
                "peer_host": self.peer_host,
                "peer_port": self.peer_port,
                "node": node,
                "user": self.user,
            }
            for consumer in list(channel.consumers.values()):
                queue = consumer.queue
                yield (
                    queue,
                    {
                        "consumer_tag": consumer.tag,
                        "queue": {"name": queue.name, "vhost": queue.vhost},
                        "channel_details": channel_details,
                        "ack_required": not consumer.no_ack,
                        "exclusive": consumer.exclusive,
                        "prefetch_count": consumer.prefetch,
                        "active": True,
                        "activity_status": "up",
                        "arguments": {},
                    },
                )


def connections(registry: Iterable[Any]) -> list[ConnectionView]:
    return [ConnectionView(connection) for connection in list(registry)]


def unacked_by_queue(views: Iterable[ConnectionView]) -> Counter[Any]:
    """How many deliveries of each queue await an ack, over every channel."""
    counts: Counter[Any] = Counter()
    for view in views:
        for channel in view.channels():
            for entry in channel.deliveries.unacked.values():
                counts[entry[0]] += 1
    return counts


def unacked_messages(views: Iterable[ConnectionView], queue: Any) -> list[Any]:
    """The messages of `queue` delivered and awaiting an ack, over every channel."""
    return [
        entry[2]
        for view in views
        for channel in view.channels()
        for entry in channel.deliveries.unacked.values()
        if entry[0] is queue
    ]
