"""Latency histograms and loss/duplicate bookkeeping, cheap enough for the hot path.

`bucket_us(ns)` maps a latency to microseconds kept to ~0.1% (exact below 1024 us), so a
histogram is a small dict {bucket_us: count} that pickles fast and merges by addition.
`SeqTracker` keeps one bitmap per producer id; merging bitmaps from several consumers of
the same queue finds duplicates that crossed process boundaries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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


class SeqTracker:
    """Which sequence numbers of each producer were seen; counts duplicates on the way."""

    def __init__(self) -> None:
        self.bitmaps: dict[int, bytearray] = {}
        self.duplicates = 0

    def see(self, producer: int, seq: int) -> None:
        """Record one delivery (the hot-path version is inlined in the consumer)."""
        bitmap = self.bitmaps.get(producer)
        if bitmap is None:
            bitmap = self.bitmaps[producer] = bytearray(1 << 16)
        index = seq >> 3
        if index >= len(bitmap):
            bitmap.extend(bytes(max(index + 1 - len(bitmap), len(bitmap))))
        bit = 1 << (seq & 7)
        if bitmap[index] & bit:
            self.duplicates += 1
        else:
            bitmap[index] |= bit

    def export(self) -> dict[int, bytes]:
        """The bitmaps as bytes, for sending to the parent process."""
        return {p: bytes(b) for p, b in self.bitmaps.items()}


def merge_bitmaps(bitmaps: Iterable[bytes]) -> tuple[int, int]:
    """(union as an int bitset, duplicates between the inputs) of several bitmaps."""
    union = 0
    duplicates = 0
    for raw in bitmaps:
        value = int.from_bytes(raw, "little")
        duplicates += (union & value).bit_count()
        union |= value
    return union, duplicates


def count_seen(union: int, sent: int) -> tuple[int, int]:
    """(sequence numbers 0..sent-1 seen, numbers >= sent seen) in a union bitset."""
    low = union & ((1 << sent) - 1)
    return low.bit_count(), (union >> sent).bit_count()
