"""Direct reply-to (`amq.rabbitmq.reply-to`): RPC replies without a reply queue.

A channel that consumes from `amq.rabbitmq.reply-to` (no_ack only, one consumer per
channel) gets a private pseudo-queue named `amq.rabbitmq.reply-to.<token>`; its requests'
`reply_to` property is rewritten to that name, and a reply published to the default
exchange with that name as routing key goes straight to the consumer. The pseudo-queues
live here, not among the vhost's queues: they cannot be declared, bound or got from, and
they vanish with their consumer (a reply to a gone requester is unroutable).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable

from amqpd.core.queue import Queue

REPLY_TO = "amq.rabbitmq.reply-to"
REPLY_TO_PREFIX = REPLY_TO + "."


def _token() -> str:
    """16 random bytes in URL-safe base64 without padding (RabbitMQ's names use plain
    base64 with `=`; pamqp refuses `=` in a queue name, clients treat the name as opaque)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()


class ReplyQueues:
    """The live pseudo-queues of one vhost, by name."""

    def __init__(self, vhost: str, schedule: Callable[[Queue], None]) -> None:
        self._vhost = vhost
        self._schedule = schedule
        self.queues: dict[str, Queue] = {}

    def open(self) -> Queue:
        """A new pseudo-queue for one channel's reply consumer."""
        name = f"{REPLY_TO_PREFIX}{_token()}.{_token()}"
        queue = Queue(name, self._vhost, schedule=self._schedule)
        self.queues[name] = queue
        return queue

    def close(self, queue: Queue) -> None:
        """The reply consumer went away: later replies to it are unroutable."""
        if self.queues.pop(queue.name, None) is not None:
            queue.deleted = True
            queue.messages.clear()
            queue.consumers.clear()

    def get(self, name: str) -> Queue | None:
        return self.queues.get(name)


def stand_in(vhost: str) -> Queue:
    """What a declare of `amq.rabbitmq.reply-to` itself reports: RabbitMQ answers
    declare-ok with no messages and one consumer (FastStream's startup checks it)."""
    queue = Queue(REPLY_TO, vhost)
    queue.consumers.append(None)  # type: ignore[arg-type]
    queue.deleted = True  # never dispatched to
    return queue
