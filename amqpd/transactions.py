"""The transaction buffer of one channel in tx mode (tx.select).

Publishes and settles (ack, nack, reject) are buffered as actions; `commit` runs them in
the order they arrived, `rollback` drops them: the acks never taken leave their deliveries
unacked. Leaving tx mode is impossible, as in AMQP 0-9-1.
"""

from __future__ import annotations

from collections.abc import Callable

from amqpd.core.errors import PRECONDITION_FAILED, ChannelError


class TxBuffer:
    def __init__(self) -> None:
        self.active = False  # tx.select was received
        self._actions: list[Callable[[], None]] = []

    def select(self) -> None:
        self.active = True

    def add(self, action: Callable[[], None]) -> None:
        self._actions.append(action)

    def __len__(self) -> int:
        return len(self._actions)

    def commit(self) -> None:
        self._require_tx()
        actions, self._actions = self._actions, []
        for action in actions:
            action()

    def rollback(self) -> None:
        self._require_tx()
        self._actions = []

    def clear(self) -> None:
        """The channel closed: uncommitted work is dropped."""
        self._actions = []

    def _require_tx(self) -> None:
        if not self.active:
            raise ChannelError(PRECONDITION_FAILED, "channel is not transactional")
