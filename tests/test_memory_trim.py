"""HeapTrimmer: memory freed by a drain goes back to the system (sans-IO: no sockets, no loop).

The drain is simulated in-process: a million small tuples (a deep queue's entries) freed in
random order, as consumers of many queues free them. CPython's tuple free list keeps the
first 2,000 of them, spread over every arena, and so pins the whole heap until a full
collection empties it: exactly what the trimmer must undo.
"""

from __future__ import annotations

import random
import sys

import pytest

from amqpd.memory import HeapTrimmer, used_memory

MiB = 1024 * 1024

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/self/status"
)


def _fill(count: int) -> list[tuple[object, object, object]]:
    entry = object()
    return [(entry, entry, entry) for _ in range(count)]


def test_a_drain_is_collected_once_and_gives_the_arenas_back() -> None:
    # A drain is a fall below 1/shrink of the peak: make the tuples outnumber whatever else
    # this process holds (a whole test session's objects), so that freeing them is one.
    trimmer = HeapTrimmer(floor=200_000, shrink=2)
    trimmer.maybe_trim()  # its peak so far
    entries = _fill(max(1_000_000, sys.getallocatedblocks() + 200_000))
    assert not trimmer.maybe_trim() or trimmer.collects == 0  # growing: nothing to collect
    assert trimmer.collects == 0
    random.Random(9).shuffle(entries)
    entries.clear()  # freed in random order: the free list pins the arenas
    pinned = used_memory()
    assert trimmer.maybe_trim()
    assert trimmer.collects == 1
    assert pinned - used_memory() > 30 * MiB  # ~64 MiB of tuples, all arenas freed
    trimmer.maybe_trim()
    assert trimmer.collects == 1  # the peak restarted from the drained heap


def test_no_collection_without_a_drain() -> None:
    trimmer = HeapTrimmer(floor=200_000)
    entries = _fill(300_000)
    trimmer.maybe_trim()
    del entries[: len(entries) // 2]  # half gone: not a drain
    trimmer.maybe_trim()
    assert trimmer.collects == 0
    small = HeapTrimmer(floor=10**9)  # a heap that never was big is never collected
    entries.clear()
    small.maybe_trim()
    assert small.collects == 0
