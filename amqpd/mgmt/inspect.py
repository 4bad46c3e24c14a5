"""What the management API shows of client connections, channels and consumers.

Connections are read only through `amqpd.described` (plain values: `ConnectionInfo`,
`ChannelInfo`, `ConsumerInfo`); this module turns them into RabbitMQ's JSON. Closing
goes through `described.force_close`. Nothing here changes protocol state.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from amqpd import described
from amqpd.described import ChannelInfo
from amqpd.mgmt.jsonable import to_json

PROTOCOL = "AMQP 0-9-1"


def node_name() -> str:
    return f"amqpd@{socket.gethostname().split('.')[0]}"


def _joined(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ConnectionView:
    """A read-only description of one client connection, taken when the view is made."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self.info = info = described.describe(connection)
        self.peer_host, self.peer_port = info.peer_host, info.peer_port
        self.name = f"{_joined(info.peer_host, info.peer_port)} -> {_joined(info.host, info.port)}"
        self.user = info.user
        self.vhost = info.vhost
        self.open = info.open

    def channels(self) -> list[ChannelInfo]:
        return described.channels(self._connection)

    def json(self, node: str) -> dict[str, Any]:
        info = self.info
        client = to_json(info.client_properties)
        return {
            "name": self.name,
            "node": node,
            "type": "network",
            "protocol": PROTOCOL,
            "state": info.state,
            "user": self.user,
            "user_who_performed_action": self.user,
            "vhost": self.vhost,
            "auth_mechanism": info.mechanism,
            "host": info.host,
            "port": info.port,
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
            "channels": info.channels,
            "recv_oct": info.recv_oct,
            "send_oct": info.send_oct,
            "channel_max": info.channel_max,
            "frame_max": info.frame_max,
            "timeout": info.heartbeat,
            "connected_at": int(info.connected_at * 1000),
            "client_properties": client,
            "user_provided_name": client.get("connection_name"),
        }

    def close(self, text: str) -> None:
        described.force_close(self._connection, text)

    def channel_json(self, channel: ChannelInfo, node: str) -> dict[str, Any]:
        return {
            "name": f"{self.name} ({channel.number})",
            "node": node,
            "number": channel.number,
            "user": self.user,
            "user_who_performed_action": self.user,
            "vhost": self.vhost,
            "connection_details": self.details(),
            "state": "closing" if channel.closing else "running",
            "consumer_count": channel.consumers,
            "messages_unacknowledged": channel.unacked,
            "messages_unconfirmed": channel.unconfirmed,
            "messages_uncommitted": channel.uncommitted,
            "acks_uncommitted": 0,
            "prefetch_count": channel.prefetch,
            "global_prefetch_count": channel.global_prefetch,
            "confirm": channel.confirm,
            "transactional": channel.transactional,
        }

    def details(self) -> dict[str, Any]:
        return {"name": self.name, "peer_host": self.peer_host, "peer_port": self.peer_port}

    def consumers(self, node: str) -> Iterator[tuple[Any, dict[str, Any]]]:
        """(queue, consumer JSON) for every consumer on this connection."""
        channel_details: dict[int, dict[str, Any]] = {}
        for consumer in described.consumers(self._connection):
            number = consumer.channel
            if number not in channel_details:
                channel_details[number] = {
                    "name": f"{self.name} ({number})",
                    "number": number,
                    "connection_name": self.name,
                    "peer_host": self.peer_host,
                    "peer_port": self.peer_port,
                    "node": node,
                    "user": self.user,
                }
            queue = consumer.queue
            yield (
                queue,
                {
                    "consumer_tag": consumer.tag,
                    "queue": {"name": queue.name, "vhost": queue.vhost},
                    "channel_details": channel_details[number],
                    "ack_required": consumer.ack_required,
                    "exclusive": consumer.exclusive,
                    "prefetch_count": consumer.prefetch,
                    "active": True,
                    "activity_status": "up",
                    "arguments": {},
                },
            )

    def unacked_queues(self) -> Iterator[Any]:
        return described.unacked_queues(self._connection)

    def unacked_messages(self, queue: Any) -> list[Any]:
        return described.unacked_messages(self._connection, queue)


def connections(registry: Iterable[Any]) -> list[ConnectionView]:
    return [ConnectionView(connection) for connection in list(registry)]


def unacked_by_queue(views: Iterable[ConnectionView]) -> Counter[Any]:
    """How many deliveries of each queue await an ack, over every channel."""
    counts: Counter[Any] = Counter()
    for view in views:
        counts.update(view.unacked_queues())
    return counts


def unacked_messages(views: Iterable[ConnectionView], queue: Any) -> list[Any]:
    """The messages of `queue` delivered and awaiting an ack, over every channel."""
    return [message for view in views for message in view.unacked_messages(queue)]
