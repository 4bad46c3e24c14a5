"""Latency histograms of the store's disk work, for metrics (Prometheus buckets).

`Histogram.observe(seconds)` adds one timed operation (a batch written, an fdatasync) to
fixed buckets; `cumulative()` returns (upper bound, count) pairs as Prometheus expects.
The writer thread observes, the event loop reads: plain integer updates, no lock (a read
may miss the observation being added). Pure data, no I/O.
"""

from __future__ import annotations

import bisect

BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Histogram:
    __slots__ = ("counts", "count", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BOUNDS) + 1)  # the last one is +Inf
        self.count = 0
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BOUNDS, seconds)] += 1
        self.count += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        running = 0
        pairs = []
        for bound, count in zip((*map(str, BOUNDS), "+Inf"), self.counts, strict=True):
            running += count
            pairs.append((bound, running))
        return pairs
