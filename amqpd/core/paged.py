"""A deep queue's ready messages: a resident head, a compact paged middle, a resident tail.

Contract: `PagedMessages` stands in for the deque of `(seq, message, redelivered)` entries a
`Queue` keeps (append, popleft, extendleft, [0], [-1], len, bool, clear, iteration) and keeps
their order. New entries go to the tail; `page(readable)` moves entries from the front of the
tail into the middle: a persistent message whose record is readable in the store's log becomes
a compact entry (store id and redelivered flag, plus seq, body size and arrival time only
where they break a chunk's pattern: ~9 bytes in arrays, no `Message` object); any other entry
(transient, not yet written, counted by a quorum queue) stays resident in the middle, in
order. The head is delivered first and refilled from the middle in batches: compact entries
become messages again through the injected `MessageLoader` (the store's records, read in file
order). A record that cannot be read back is handed to `lost` (store id, body size, error)
and skipped. Iteration yields the resident entries only; `paged` and `paged_bytes` count the
compact ones. No I/O here: the loader does it.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

from amqpd.core.message import Message

Entry = tuple[int, Message, bool]
CHUNK = 4096  # compact entries per chunk of arrays
BATCH = 512  # compact entries turned back into messages per refill


class MessageLoader(Protocol):
    """Rebuilds messages from their store ids, in the order asked; an `OSError` in place of
    a message whose record is lost."""

    def load(self, store_ids: Sequence[int]) -> list[Message | OSError]: ...


class _Compact:
    """A run of compact entries in parallel arrays, consumed from `start`. Seqs are kept as
    `first + i` and sizes as one `size` while they allow it (the common case: consecutive
    seqs, bodies of one size), as arrays only once an entry breaks the pattern."""

    __slots__ = ("arrived", "first", "flags", "ids", "seqs", "size", "sizes", "start")

    def __init__(self, first: int, size: int) -> None:
        self.ids = array("Q")
        self.flags = bytearray()
        self.first = first
        self.seqs: array[int] | None = None
        self.size = size
        self.sizes: array[int] | None = None
        self.arrived: array[int] | None = None  # only once an entry may expire
        self.start = 0

    def add(self, seq: int, store_id: int, redelivered: bool, size: int, arrived: int) -> None:
        count = len(self.ids)
        seqs = self.seqs
        if seqs is None and seq != self.first + count:
            seqs = self.seqs = array("Q", range(self.first, self.first + count))
        if seqs is not None:
            seqs.append(seq)
        sizes = self.sizes
        if sizes is None and size != self.size:
            sizes = self.sizes = array("I", [self.size]) * count
        if sizes is not None:
            sizes.append(size)
        times = self.arrived
        if arrived and times is None:
            times = self.arrived = array("q", bytes(8 * count))
        if times is not None:
            times.append(arrived)
        self.ids.append(store_id)
        self.flags.append(redelivered)

    def seq(self, i: int) -> int:
        return self.first + i if self.seqs is None else self.seqs[i]

    def size_at(self, i: int) -> int:
        return self.size if self.sizes is None else self.sizes[i]

    def bytes_between(self, start: int, end: int) -> int:
        return self.size * (end - start) if self.sizes is None else sum(self.sizes[start:end])

    def __len__(self) -> int:
        return len(self.ids) - self.start


class PagedMessages:
    def __init__(
        self,
        loader: MessageLoader,
        lost: Callable[[int, int, OSError], None],
        head: Iterable[Entry] = (),
        tail: Iterable[Entry] = (),
        batch: int = BATCH,
    ) -> None:
        self.head: deque[Entry] = deque(head)
        self.middle: deque[_Compact | deque[Entry]] = deque()
        self.tail: deque[Entry] = deque(tail)
        self.append = self.tail.append  # the per-publish path: no Python frame
        self.in_middle = 0  # entries in the middle, compact or resident
        self.paged = 0  # compact entries
        self.paged_bytes = 0  # their body bytes
        self.since = 0  # arrival time of compact entries that have none of their own
        self._loader = loader
        self._lost = lost
        self._batch = batch

    def __len__(self) -> int:
        return len(self.head) + self.in_middle + len(self.tail)

    def __bool__(self) -> bool:
        return bool(self.head or self.in_middle or self.tail)

    def __iter__(self) -> Iterator[Entry]:
        """The resident entries, in order (compact ones are skipped)."""
        yield from self.head
        for part in self.middle:
            if not isinstance(part, _Compact):
                yield from part
        yield from self.tail

    def resident_middle(self) -> Iterator[Entry]:
        """The resident entries of the middle (past the head, before the tail)."""
        for part in self.middle:
            if not isinstance(part, _Compact):
                yield from part

    def __getitem__(self, index: int) -> Entry:
        if index == 0:
            if not self.head and self.in_middle:
                self._refill()
            if self.head:
                return self.head[0]
            return self.tail[0]
        if index == -1:
            if self.tail:
                return self.tail[-1]
            if self.in_middle:
                part = self.middle[-1]
                if isinstance(part, _Compact):
                    self._refill_all()
                    return self[-1]
                return part[-1]
            return self.head[-1]
        raise IndexError("only the first and the last entries can be looked at")

    def popleft(self) -> Entry:
        head = self.head
        if not head and self.in_middle:
            self._refill()
        if head:
            return head.popleft()
        return self.tail.popleft()

    def extendleft(self, entries: Iterable[Entry]) -> None:
        self.head.extendleft(entries)

    def clear(self) -> None:
        self.head.clear()
        self.middle.clear()
        self.tail.clear()
        self.in_middle = self.paged = self.paged_bytes = 0

    # -- paging ---------------------------------------------------------------------------

    def page(
        self,
        readable: Callable[[int], bool],
        keep: int = 0,
        transient: list[Message] | None = None,
    ) -> int:
        """Move entries from the front of the tail into the middle, up to the first message
        whose record is not yet readable; returns the number made compact. While nothing is
        in the middle, the head is first topped up to `keep` entries from the tail. Transient
        messages moved into the middle are added to `transient` (if given)."""
        tail = self.tail
        middle = self.middle
        if not self.in_middle and len(self.head) < keep:
            head = self.head
            for _ in range(min(keep - len(head), len(tail))):
                head.append(tail.popleft())
        compacted = 0
        moved = 0
        part = middle[-1] if middle else None
        while tail:
            seq, message, redelivered = tail[0]
            store_id = message.store_id
            if store_id:
                if not readable(store_id):
                    break
                if getattr(message, "deliveries", 0):  # a quorum queue's count: keep it
                    store_id = 0
            if store_id:
                size = message.info.body_size
                if not isinstance(part, _Compact) or len(part.ids) >= CHUNK:
                    part = _Compact(seq, size)
                    middle.append(part)
                part.add(seq, store_id, redelivered, size, message.arrived)
                self.paged_bytes += size
                compacted += 1
            else:
                if part is None or isinstance(part, _Compact):
                    part = deque()
                    middle.append(part)
                part.append(tail[0])
                if transient is not None and not message.store_id:
                    transient.append(message)
            tail.popleft()
            moved += 1
        self.in_middle += moved
        self.paged += compacted
        return compacted

    def extend_compact(
        self,
        first_seq: int,
        ids: array[int],
        flags: bytearray,
        sizes: array[int],
        start: int = 0,
    ) -> None:
        """Append compact entries in bulk (recovery): entries `start`.. of these arrays (store
        ids in order, redelivered flags 0/1, body sizes), with consecutive seqs from
        `first_seq`. The arrays are emptied down to `start` as they are taken in, from the
        end, so that the memory moves rather than doubles. Nothing may be in the tail."""
        assert not self.tail
        parts: deque[_Compact] = deque()
        end = len(ids)
        count = end - start
        total = 0
        while end > start:
            begin = max(start, end - CHUNK)
            part = _Compact(first_seq + begin - start, sizes[begin])
            part.ids = ids[begin:end]
            part.flags = flags[begin:end]
            some = sizes[begin:end]
            if some.count(part.size) == len(some):
                total += part.size * len(some)
            else:
                part.sizes = some
                total += sum(some)
            del ids[begin:], flags[begin:], sizes[begin:]
            parts.appendleft(part)
            end = begin
        self.middle.extend(parts)
        self.in_middle += count
        self.paged += count
        self.paged_bytes += total

    def unpaged(self) -> deque[Entry]:
        """All entries as one deque (with nothing compact left)."""
        self._refill_all()
        entries = self.head
        entries.extend(self.tail)
        self.head = deque()
        self.tail = deque()
        self.append = self.tail.append
        return entries

    def _refill_all(self) -> None:
        """Bring every middle entry into the head (for the rare looks at the last entry)."""
        head = self.head
        self.head = deque()
        while self.in_middle:
            self._refill()
            head.extend(self.head)
            self.head.clear()
        self.head = head

    def _refill(self) -> None:
        """Move the next batch of the middle into the (empty) head."""
        middle = self.middle
        head = self.head
        while middle and not head:
            part = middle[0]
            if not isinstance(part, _Compact):
                middle.popleft()
                self.in_middle -= len(part)
                head.extend(part)
                continue
            start = part.start
            end = min(start + self._batch, len(part.ids))
            ids = part.ids[start:end]
            loaded = self._loader.load(ids)
            flags, times = part.flags, part.arrived
            first = part.first if part.seqs is None else -1
            for i, message in enumerate(loaded, start):
                if isinstance(message, OSError):
                    self._lost(ids[i - start], part.size_at(i), message)
                    continue
                if not message.arrived:  # none in its record: the time kept here, if any
                    message.arrived = times[i] if times is not None else self.since
                head.append((first + i if first >= 0 else part.seq(i), message, flags[i] == 1))
            count = end - start
            self.in_middle -= count
            self.paged -= count
            self.paged_bytes -= part.bytes_between(start, end)
            if end == len(part.ids):
                middle.popleft()
            else:
                part.start = end
