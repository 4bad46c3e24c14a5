"""Queue expiry (`x-expires`): the lease of a queue nobody consumes from.

A `Lease` runs `on_expiry` once `expires` milliseconds after the queue was last used while
it had no consumers. `renew(consumed)` restarts it (consumers, basic.get and declares use a
queue, as in RabbitMQ); a queue with consumers holds no running lease.
"""

from __future__ import annotations

from collections.abc import Callable

from amqpd.core.clock import Clock, Timer


class Lease:
    __slots__ = ("clock", "expires", "_on_expiry", "_timer")

    def __init__(self, clock: Clock, expires: int, on_expiry: Callable[[], None]) -> None:
        self.clock = clock
        self.expires = expires
        self._on_expiry = on_expiry
        self._timer: Timer | None = None

    def renew(self, consumed: bool) -> None:
        """The queue was used; `consumed`: it has consumers, so no lease runs for now."""
        self.cancel()
        if not consumed:
            self._timer = self.clock.call_at(self.clock.now() + self.expires, self._over)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _over(self) -> None:
        self._timer = None
        self._on_expiry()
