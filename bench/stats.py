"""Latency histograms and loss/duplicate bookkeeping, cheap enough for the hot path.

`bucket_us(ns)` maps a latency to microseconds kept to ~0.1% (exact below 1024 us), so a
histogram is a small dict {bucket_us: count} that pickles fast and merges by addition.
Deliveries seen are kept as runs of consecutive stamp keys; `merge_runs` unites the runs
of every consumer of a queue and counts keys seen more than once (duplicates), also when
they crossed process boundaries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

Histogram = dict[int, int]


def bucket_us(latency_ns: int) -> int:
    """Latency in microseconds, rounded down to 10 significant bits (>= 0)."""
    us = latency_ns // 1000
    if us < 1024:
        return us if us > 0 else 0
    shift = us.bit_length() - 10
    return (us >> shift) << shift


def merge_into(target: Histogram, source: Mapping[int, int]) -> None:
    """Add the counts of source into target."""
    for key, count in source.items():
        target[key] = target.get(key, 0) + count


def percentiles(hist: Mapping[int, int], points: Iterable[float]) -> dict[str, float | None]:
    """{"p50": ms, ...} for each point in percent, plus "max"; None when hist is empty.

    A percentile is the smallest bucket at or below which that share of samples lie.
    """
    points = list(points)
    total = sum(hist.values())
    result: dict[str, float | None] = {}
    if total == 0:
        for p in points:
            result[_name(p)] = None
        result["max"] = None
        return result
    keys = sorted(hist)
    targets = [(p, max(1, -(-total * p // 100))) for p in points]
    seen = 0
    index = 0
    for key in keys:
        seen += hist[key]
        while index < len(targets) and seen >= targets[index][1]:
            result[_name(targets[index][0])] = key / 1000.0
            index += 1
    result["max"] = keys[-1] / 1000.0
    return result


def _name(point: float) -> str:
    return f"p{point:g}".replace(".", "_")


def merge_runs(runs: Iterable[Sequence[int]]) -> tuple[list[tuple[int, int]], int]:
    """Union of flat [start, end, start, end, ...] runs, and how many keys were repeated.

    Returns the union as sorted, disjoint (start, end) pairs and the duplicate count: a
    key present k times across (or within) the inputs contributes k - 1.
    """
    pairs: list[tuple[int, int]] = []
    for flat in runs:
        pairs.extend(zip(flat[0::2], flat[1::2], strict=True))
    pairs.sort()
    union: list[tuple[int, int]] = []
    duplicates = 0
    for start, end in pairs:
        if union and start < union[-1][1]:
            last_start, last_end = union[-1]
            duplicates += min(end, last_end) - start
            if end > last_end:
                union[-1] = (last_start, end)
        elif union and start == union[-1][1]:
            union[-1] = (union[-1][0], end)
        else:
            union.append((start, end))
    return union, duplicates


def count_within(union: Sequence[tuple[int, int]], low: int, high: int) -> int:
    """How many keys of the disjoint union lie in [low, high)."""
    return sum(max(0, min(end, high) - max(start, low)) for start, end in union)


def count_all(union: Sequence[tuple[int, int]]) -> int:
    """How many keys the disjoint union holds."""
    return sum(end - start for start, end in union)
