"""What a channel needs from its connection (`ChannelHost`), as a protocol.

The connection implements it; channels and their parts import this module, never the
connection, so the dependency points one way.
"""

from __future__ import annotations

from typing import Any, Protocol

from amqpd.auth import Access
from amqpd.core.queue import Queue
from amqpd.core.vhost import VHost


class ChannelHost(Protocol):
    """What a channel needs from its connection."""

    vhost: VHost
    access: Access
    frame_max: int
    cancel_notify: bool
    max_message_size: int
    writable: bool
    user: str
    publisher: bool

    def send(self, data: bytes) -> None: ...

    def send_many(self, pieces: list[bytes], size: int | None = None) -> None: ...

    def request_flush(self, channel: Any) -> None:
        """Call `channel.flush_confirms()` before this tick's write."""
        ...

    def became_publisher(self) -> None: ...

    def throttle(self, queues: list[Queue]) -> None: ...
