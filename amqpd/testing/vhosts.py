"""Hand out vhosts that no test has used yet: the per-test isolation of the pytest plugin.

amqpd's vhosts exist from startup only (config file), so isolation is a pool: a broker is
started with a batch of spare vhosts (as many as the collected tests that want one) and each
is given out exactly once. Handing out never blocks or reuses; when the pool is empty,
`take()` returns None and the caller adds another broker's batch. No I/O here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from amqpd.testing.endpoint import Endpoint

NAME_PREFIX = "amqpd-test-"


class VhostPool:
    """Unused vhosts, each with the endpoint of the broker that has it."""

    def __init__(self, batch: int = 16) -> None:
        self.batch = batch
        self._free: deque[Endpoint] = deque()
        self._named = 0
        self.handed_out = 0

    def names(self, count: int) -> list[str]:
        """`count` new vhost names, never returned before by this pool."""
        start = self._named
        self._named += count
        return [f"{NAME_PREFIX}{number}" for number in range(start, start + count)]

    def add(self, broker: Endpoint, names: Sequence[str]) -> None:
        self._free.extend(broker.with_vhost(name) for name in names)

    def take(self) -> Endpoint | None:
        if not self._free:
            return None
        self.handed_out += 1
        return self._free.popleft()

    def __len__(self) -> int:
        return len(self._free)
