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


class _BlockMap:
    """What both maps share: the blocks, the count of entries, sparse blocks and the
    sparse <-> dense switches. A dense block is a list whose last item is its entry count;
    a subclass says how a value is kept in the rest (``_put``, ``_take``, ``_dense``,
    ``_dense_items``) and reads it back in its own ``get`` (kept whole in each subclass:
    it is the per-message lookup of the read path, one call rather than two)."""

    __slots__ = ("_blocks", "_len")

    def __init__(self) -> None:
        self._blocks: dict[int, Any] = {}
        self._len = 0

    def get(self, mid: int, default: Any = None) -> Any:
        raise NotImplementedError

    def _put(self, block: list[Any], i: int, value: Any) -> bool:
        """Store a value in a dense block; True if the slot was empty."""
        raise NotImplementedError

    def _take(self, block: list[Any], i: int) -> Any:
        """Empty a slot of a dense block; its value, or None if it was empty."""
        raise NotImplementedError

    def _dense(self, block: dict[int, Any]) -> list[Any]:
        raise NotImplementedError

    def _sparse(self, key: int, block: list[Any]) -> dict[int, Any]:
        return dict(self._dense_items(key << BITS, block))

    def _dense_items(self, base: int, block: list[Any]) -> Iterator[tuple[int, Any]]:
        raise NotImplementedError

    def __len__(self) -> int:
        return self._len

    def __contains__(self, mid: int) -> bool:
        return self.get(mid) is not None

    def __getitem__(self, mid: int) -> Any:
        value = self.get(mid)
        if value is None:
            raise KeyError(mid)
        return value

    def __setitem__(self, mid: int, value: Any) -> None:
        key = mid >> BITS
        blocks = self._blocks
        block: Any = blocks.get(key)
        if block is None:
            block = blocks[key] = {}
        if type(block) is dict:
            if mid not in block:
                self._len += 1
                if len(block) + 1 >= DENSE_AT:
                    block[mid] = value
                    blocks[key] = self._dense(block)
                    return
            block[mid] = value
            return
        if self._put(block, mid & LOW, value):
            block[-1] += 1
            self._len += 1

    def pop(self, mid: int, default: Any = _RAISE) -> Any:
        key = mid >> BITS
        blocks = self._blocks
        block = blocks.get(key)
        if block is not None:
            if type(block) is dict:
                value = block.pop(mid, None)
                if value is not None:
                    self._len -= 1
                    if not block:
                        del blocks[key]
                    return value
            else:
                value = self._take(block, mid & LOW)
                if value is not None:
                    self._len -= 1
                    count = block[-1] = block[-1] - 1
                    if not count:
                        del blocks[key]
                    elif count < SPARSE_AT:
                        blocks[key] = self._sparse(key, block)
                    return value
        if default is _RAISE:
            raise KeyError(mid)
        return default

    def __delitem__(self, mid: int) -> None:
        self.pop(mid)

    def clear(self) -> None:
        self._blocks = {}
        self._len = 0

    def items(self) -> Iterator[tuple[int, Any]]:
        for key, block in list(self._blocks.items()):
            if type(block) is dict:
                yield from list(block.items())
            else:
                yield from self._dense_items(key << BITS, block)

    def __iter__(self) -> Iterator[int]:
        for mid, _value in self.items():
            yield mid


class LocationMap(_BlockMap):
    """Message id -> ``segment << 64 | offset << 32 | size``.

    A dense block is ``[segments, lows, count]``: ``array('I')`` of segment number + 1
    (0: no entry) and ``array('Q')`` of ``offset << 32 | size``.
    """

    __slots__ = ()

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

    def set_run(self, mids: list[int], values: list[int]) -> None:
        """``self[mids[i]] = values[i]`` for every i, in order, in one call (the batch path
        of the store's writer: no call per id while the ids fill dense blocks)."""
        blocks = self._blocks
        count = self._len
        key = -1
        block: Any = None
        highs: Any = None
        lows: Any = None
        for n, mid in enumerate(mids):
            k = mid >> BITS
            if k != key:
                key = k
                block = blocks.get(k)
                if block is None:
                    block = blocks[k] = {}
                highs = None if type(block) is dict else block[0]
                lows = None if highs is None else block[1]
            value = values[n]
            if highs is not None:
                i = mid & LOW
                if not highs[i]:
                    block[2] += 1
                    count += 1
                highs[i] = (value >> 64) + 1
                lows[i] = value & _U64
            else:
                if mid not in block:
                    count += 1
                block[mid] = value
                if len(block) >= DENSE_AT:
                    block = blocks[k] = self._dense(block)
                    highs, lows = block[0], block[1]
        self._len = count

    def pop_run(self, mids: list[int]) -> list[int | None]:
        """``[self.pop(mid, None) for mid in mids]``, in order, in one call."""
        blocks = self._blocks
        out: list[int | None] = []
        append = out.append
        count = self._len
        key = -1
        block: Any = None
        for mid in mids:
            k = mid >> BITS
            if k != key:
                key = k
                block = blocks.get(k)
            if block is None:
                append(None)
                continue
            if type(block) is dict:
                value = block.pop(mid, None)
                if value is not None:
                    count -= 1
                    if not block:
                        del blocks[k]
                        block = None
                append(value)
                continue
            i = mid & LOW
            highs = block[0]
            high = highs[i]
            if not high:
                append(None)
                continue
            highs[i] = 0
            append(((high - 1) << 64) | block[1][i])
            count -= 1
            left = block[2] = block[2] - 1
            if not left:
                del blocks[k]
                block = None
            elif left < SPARSE_AT:
                block = blocks[k] = self._sparse(k, block)
        self._len = count
        return out

    def _put(self, block: list[Any], i: int, value: Any) -> bool:
        highs = block[0]
        empty = not highs[i]
        highs[i] = (value >> 64) + 1
        block[1][i] = value & _U64
        return empty

    def _take(self, block: list[Any], i: int) -> Any:
        highs = block[0]
        high = highs[i]
        if not high:
            return None
        highs[i] = 0
        return ((high - 1) << 64) | block[1][i]

    def _dense(self, block: dict[int, Any]) -> list[Any]:
        highs = array("I", bytes(4 * BLOCK))
        lows = array("Q", bytes(8 * BLOCK))
        for mid, packed in block.items():
            i = mid & LOW
            highs[i] = (packed >> 64) + 1
            lows[i] = packed & _U64
        return [highs, lows, len(block)]

    def _dense_items(self, base: int, block: list[Any]) -> Iterator[tuple[int, Any]]:
        highs, lows = block[0], block[1]
        for i, high in enumerate(highs):
            if high:
                yield base + i, ((high - 1) << 64) | lows[i]


class FlagMap(_BlockMap):
    """Message id -> delivered flag (bool). A dense block is ``[flags, count]``: a bytearray
    of 0 (no entry), 1 (not delivered) or 2 (delivered)."""

    __slots__ = ()

    def get(self, mid: int, default: Any = None) -> Any:
        block = self._blocks.get(mid >> BITS)
        if block is None:
            return default
        if type(block) is dict:
            return block.get(mid, default)
        flag = block[0][mid & LOW]
        return default if not flag else flag == 2

    def set_all(self, mids: list[int], value: bool) -> None:
        """``self[mid] = value`` for every id, in order, in one call."""
        blocks = self._blocks
        count = self._len
        flag = 2 if value else 1
        key = -1
        block: Any = None
        flags: Any = None
        for mid in mids:
            k = mid >> BITS
            if k != key:
                key = k
                block = blocks.get(k)
                if block is None:
                    block = blocks[k] = {}
                flags = None if type(block) is dict else block[0]
            if flags is not None:
                i = mid & LOW
                if not flags[i]:
                    block[1] += 1
                    count += 1
                flags[i] = flag
            else:
                if mid not in block:
                    count += 1
                block[mid] = value
                if len(block) >= DENSE_AT:
                    block = blocks[k] = self._dense(block)
                    flags = block[0]
        self._len = count

    def pop_run(self, mids: list[int]) -> list[bool | None]:
        """``[self.pop(mid, None) for mid in mids]``, in order, in one call."""
        blocks = self._blocks
        out: list[bool | None] = []
        append = out.append
        count = self._len
        key = -1
        block: Any = None
        for mid in mids:
            k = mid >> BITS
            if k != key:
                key = k
                block = blocks.get(k)
            if block is None:
                append(None)
                continue
            if type(block) is dict:
                value = block.pop(mid, None)
                if value is not None:
                    count -= 1
                    if not block:
                        del blocks[k]
                        block = None
                append(value)
                continue
            flags = block[0]
            i = mid & LOW
            flag = flags[i]
            if not flag:
                append(None)
                continue
            flags[i] = 0
            append(flag == 2)
            count -= 1
            left = block[1] = block[1] - 1
            if not left:
                del blocks[k]
                block = None
            elif left < SPARSE_AT:
                block = blocks[k] = self._sparse(k, block)
        self._len = count
        return out

    def _put(self, block: list[Any], i: int, value: Any) -> bool:
        flags = block[0]
        empty = not flags[i]
        flags[i] = 2 if value else 1
        return empty

    def _take(self, block: list[Any], i: int) -> Any:
        flags = block[0]
        flag = flags[i]
        if not flag:
            return None
        flags[i] = 0
        return flag == 2

    def _dense(self, block: dict[int, Any]) -> list[Any]:
        flags = bytearray(BLOCK)
        for mid, delivered in block.items():
            flags[mid & LOW] = 2 if delivered else 1
        return [flags, len(block)]

    def _dense_items(self, base: int, block: list[Any]) -> Iterator[tuple[int, Any]]:
        for i, flag in enumerate(block[0]):
            if flag:
                yield base + i, flag == 2
