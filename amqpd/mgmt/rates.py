"""Rates for the management API: per-second changes between the last two samples.

`Rates.sample(key, values, now)` records the counters of one object (a vhost, a queue) at
time `now`, as a name -> count mapping or, for queues and exchanges, a tuple in a fixed
field order (see `rows.rates_of`); `details(key, name)` is RabbitMQ's `{"rate": r}` computed
over the two most recent mapping samples. The server samples on a timer; counts
themselves are always read live. Keys of objects not sampled for a while are dropped by
`forget_older_than`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

Values = Mapping[str, float] | tuple[float, ...]
_Pair = tuple[float, Any, float, Any]


class Rates:
    def __init__(self) -> None:
        # key -> (previous time, previous values, latest time, latest values)
        self._samples: dict[Hashable, _Pair] = {}

    def sample(self, key: Hashable, values: Values, now: float) -> None:
        old = self._samples.get(key)
        if old is None:
            self._samples[key] = (now, values, now, values)
        else:
            self._samples[key] = (old[2], old[3], now, values)

    def rate(self, key: Hashable, name: str) -> float:
        found = self._samples.get(key)
        if found is None:
            return 0.0
        then, before, now, after = found
        if now <= then:
            return 0.0
        return round((after.get(name, 0) - before.get(name, 0)) / (now - then), 1)

    def details(self, key: Hashable, name: str) -> dict[str, float]:
        return {"rate": self.rate(key, name)}

    def pair(self, key: Hashable) -> _Pair | None:
        """The two latest samples of `key` (an immutable tuple, safe to hand to a thread)."""
        return self._samples.get(key)

    def with_details(self, key: Hashable, values: Mapping[str, int]) -> dict[str, Any]:
        return with_details(self._samples.get(key), values)

    def forget_older_than(self, cutoff: float) -> None:
        for key in [key for key, found in self._samples.items() if found[2] < cutoff]:
            del self._samples[key]


def with_details(pair: _Pair | None, values: Mapping[str, int]) -> dict[str, Any]:
    """`values` plus RabbitMQ's `<name>_details: {"rate": r}` for each, from a sample pair."""
    shown: dict[str, Any] = {}
    if pair is None or pair[2] <= pair[0]:
        for name, value in values.items():
            shown[name] = value
            shown[name + "_details"] = {"rate": 0.0}
        return shown
    then, before, now, after = pair
    elapsed = now - then
    for name, value in values.items():
        shown[name] = value
        change = after.get(name, 0) - before.get(name, 0)
        shown[name + "_details"] = {"rate": round(change / elapsed, 1)}
    return shown
