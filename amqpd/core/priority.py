"""Ready messages of a priority queue (`x-max-priority`): one FIFO per level.

`PriorityMessages` stands in for the deque a plain queue keeps: `append` files an entry at
its message's priority (no priority is 0, above the maximum is the maximum), `popleft`
takes the oldest entry of the highest non-empty level, and `requeue` puts returned entries
back at their own level, ahead of newer ones, in their original order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

Entry = tuple[int, Any, bool]  # (seq, message, redelivered), as in queue.py


class PriorityMessages:
    __slots__ = ("levels", "max_priority", "_count", "_top")

    def __init__(self, max_priority: int) -> None:
        self.max_priority = max_priority
        self.levels: list[deque[Entry]] = [deque() for _ in range(max_priority + 1)]
        self._count = 0
        self._top = 0  # no level above this one holds anything

    def level_of(self, message: Any) -> int:
        priority = message.info.priority
        if priority is None:
            return 0
        return priority if priority < self.max_priority else self.max_priority

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __iter__(self) -> Iterator[Entry]:
        """Entries in delivery order."""
        for level in reversed(self.levels):
            yield from level

    def __getitem__(self, index: int) -> Entry:
        if index != 0:
            raise IndexError("only the head of a priority queue can be looked at")
        for level in reversed(self.levels):
            if level:
                return level[0]
        raise IndexError("empty")

    def append(self, entry: Entry) -> None:
        priority = entry[1].info.priority
        if priority is None:
            number = 0
        elif priority < self.max_priority:
            number = priority
        else:
            number = self.max_priority
        self.levels[number].append(entry)
        self._count += 1
        if number > self._top:
            self._top = number

    def popleft(self) -> Entry:
        levels = self.levels
        top = self._top
        while top > 0 and not levels[top]:
            top -= 1
        self._top = top
        self._count -= 1
        try:
            return levels[top].popleft()
        except IndexError:
            self._count += 1
            raise IndexError("pop from an empty priority queue") from None

    def clear(self) -> None:
        for level in self.levels:
            level.clear()
        self._count = 0

    def requeue(self, entries: Iterable[Entry]) -> None:
        """Put entries back at their levels, merged by seq with what each level holds."""
        by_level: dict[int, list[Entry]] = {}
        for entry in entries:
            by_level.setdefault(self.level_of(entry[1]), []).append(entry)
            self._count += 1
        for number, back in by_level.items():
            if number > self._top:
                self._top = number
            level = self.levels[number]
            back.sort(key=lambda entry: entry[0])
            newest = back[-1][0]
            older: list[Entry] = []
            while level and level[0][0] < newest:
                older.append(level.popleft())
            if older:
                back = sorted(back + older, key=lambda entry: entry[0])
            level.extendleft(reversed(back))
