"""Compact maps keyed by message id, for an index of millions of live messages.

Contract: ``LocationMap`` (message id -> packed location, an int below 2**96) and ``FlagMap``
(message id -> delivered flag) behave as the dicts they replace for the operations the store
uses (``get``, ``[]``, ``[]=``, ``pop``, ``del``, ``in``, ``len``, iteration, ``items``), and
hold their entries in blocks of ``BLOCK`` consecutive ids. Message ids are handed out in
increasing order, so live ids cluster: a block with few entries is a small dict; once it holds
``DENSE_AT`` entries it becomes flat arrays indexed by ``id % BLOCK`` (12 bytes per id for a
location, 1 byte for a flag, instead of ~100 bytes of dict entry and int objects), and
back to a dict when it thins out below ``SPARSE_AT``. A block that empties is freed, so a
drained queue gives its memory back. Iteration order is by block, not by insertion. Not
thread-safe by itself: the index's owner serialises access (the store's writer thread writes;
the event loop's single lookups are atomic under the GIL).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from typing import Any

BITS = 10
BLOCK = 1 << BITS
LOW = BLOCK - 1
DENSE_AT = 96  # a sparse block this full becomes dense
SPARSE_AT = 24  # a dense block this empty becomes sparse again
_U64 = (1 << 64) - 1
_RAISE: Any = object()


class LocationMap:
    """Message id -> ``segment << 64 | offset << 32 | size``.

    A dense block is ``[segments, lows, count]``: ``array('I')`` of segment number + 1
    (0: no entry) and ``array('Q')`` of ``offset << 32 | size``.
    """

    __slots__ = ("_blocks", "_len")

    def __init__(self) -> None:
        self._blocks: dict[int, Any] = {}
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __contains__(self, mid: int) -> bool:
        return self.get(mid) is not None

    def get(self, mid: int, default: Any = None) -> Any:
        block = self._blocks.get(mid >> BITS)
        if block is None:
            return default
        if type(block) is dict:
            return block.get(mid, default)
        i = mid & LOW
        high = block[0][i]
        if not high:
            return default
        return ((high - 1) << 64) | block[1][i]

    def __getitem__(self, mid: int) -> int:
        packed = self.get(mid)
        if packed is None:
            raise KeyError(mid)
        return packed

    def __setitem__(self, mid: int, packed: int) -> None:
        key = mid >> BITS
        blocks = self._blocks
        block = blocks.get(key)
        if block is None:
            block = blocks[key] = {}
        if type(block) is dict:
            if mid not in block:
                self._len += 1
                if len(block) + 1 >= DENSE_AT:
                    block[mid] = packed
                    blocks[key] = _dense_locations(block)
                    return
            block[mid] = packed
            return
        i = mid & LOW
        highs = block[0]
        if not highs[i]:
            block[2] += 1
            self._len += 1
        highs[i] = (packed >> 64) + 1
        block[1][i] = packed & _U64

    def pop(self, mid: int, default: Any = _RAISE) -> Any:
        key = mid >> BITS
        blocks = self._blocks
        block = blocks.get(key)
        if block is not None:
            if type(block) is dict:
                packed = block.pop(mid, None)
                if packed is not None:
                    self._len -= 1
                    if not block:
                        del blocks[key]
                    return packed
            else:
                i = mid & LOW
                highs = block[0]
                high = highs[i]
                if high:
                    highs[i] = 0
                    self._len -= 1
                    count = block[2] = block[2] - 1
                    if not count:
                        del blocks[key]
                    elif count < SPARSE_AT:
                        blocks[key] = _sparse_locations(key, block)
                    return ((high - 1) << 64) | block[1][i]
        if default is _RAISE:
            raise KeyError(mid)
        return default

    def __delitem__(self, mid: int) -> None:
        self.pop(mid)

    def items(self) -> Iterator[tuple[int, int]]:
        for key, block in list(self._blocks.items()):
            if type(block) is dict:
                yield from list(block.items())
                continue
            base = key << BITS
            highs, lows = block[0], block[1]
            for i, high in enumerate(highs):
                if high:
                    yield base + i, ((high - 1) << 64) | lows[i]

    def __iter__(self) -> Iterator[int]:
        for mid, _packed in self.items():
            yield mid


def _dense_locations(block: dict[int, int]) -> list[Any]:
    highs = array("I", bytes(4 * BLOCK))
    lows = array("Q", bytes(8 * BLOCK))
    for mid, packed in block.items():
        i = mid & LOW
        highs[i] = (packed >> 64) + 1
        lows[i] = packed & _U64
    return [highs, lows, len(block)]


def _sparse_locations(key: int, block: list[Any]) -> dict[int, int]:
    base = key << BITS
    highs, lows = block[0], block[1]
    return {base + i: ((high - 1) << 64) | lows[i] for i, high in enumerate(highs) if high}


class FlagMap:
    """Message id -> delivered flag (bool). A dense block is ``[flags, count]``: a bytearray
    of 0 (no entry), 1 (not delivered) or 2 (delivered)."""

    __slots__ = ("_blocks", "_len")

    def __init__(self) -> None:
        self._blocks: dict[int, Any] = {}
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __contains__(self, mid: int) -> bool:
        return self.get(mid) is not None

    def get(self, mid: int, default: Any = None) -> Any:
        block = self._blocks.get(mid >> BITS)
        if block is None:
            return default
        if type(block) is dict:
            return block.get(mid, default)
        flag = block[0][mid & LOW]
        return default if not flag else flag == 2

    def __getitem__(self, mid: int) -> bool:
        flag = self.get(mid)
        if flag is None:
            raise KeyError(mid)
        return flag

    def __setitem__(self, mid: int, delivered: bool) -> None:
        key = mid >> BITS
        blocks = self._blocks
        block = blocks.get(key)
        if block is None:
            block = blocks[key] = {}
        if type(block) is dict:
            if mid not in block:
                self._len += 1
                if len(block) + 1 >= DENSE_AT:
                    block[mid] = delivered
                    blocks[key] = _dense_flags(block)
                    return
            block[mid] = delivered
            return
        flags = block[0]
        i = mid & LOW
        if not flags[i]:
            block[1] += 1
            self._len += 1
        flags[i] = 2 if delivered else 1

    def pop(self, mid: int, default: Any = _RAISE) -> Any:
        key = mid >> BITS
        blocks = self._blocks
        block = blocks.get(key)
        if block is not None:
            if type(block) is dict:
                flag = block.pop(mid, None)
                if flag is not None:
                    self._len -= 1
                    if not block:
                        del blocks[key]
                    return flag
            else:
                flags = block[0]
                i = mid & LOW
                flag = flags[i]
                if flag:
                    flags[i] = 0
                    self._len -= 1
                    count = block[1] = block[1] - 1
                    if not count:
                        del blocks[key]
                    elif count < SPARSE_AT:
                        blocks[key] = _sparse_flags(key, flags)
                    return flag == 2
        if default is _RAISE:
            raise KeyError(mid)
        return default

    def __delitem__(self, mid: int) -> None:
        self.pop(mid)

    def clear(self) -> None:
        self._blocks = {}
        self._len = 0

    def items(self) -> Iterator[tuple[int, bool]]:
        for key, block in list(self._blocks.items()):
            if type(block) is dict:
                yield from list(block.items())
                continue
            base = key << BITS
            for i, flag in enumerate(block[0]):
                if flag:
                    yield base + i, flag == 2

    def __iter__(self) -> Iterator[int]:
        for mid, _flag in self.items():
            yield mid


def _dense_flags(block: dict[int, bool]) -> list[Any]:
    flags = bytearray(BLOCK)
    for mid, delivered in block.items():
        flags[mid & LOW] = 2 if delivered else 1
    return [flags, len(block)]


def _sparse_flags(key: int, flags: bytearray) -> dict[int, bool]:
    base = key << BITS
    return {base + i: flag == 2 for i, flag in enumerate(flags) if flag}
