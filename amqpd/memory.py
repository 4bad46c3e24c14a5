"""The memory budget: how much the broker uses, how much it may use, and the alarm between.

`parse_watermark(text)` reads a `memory_high_watermark` setting, RabbitMQ style: a fraction of
the memory available to the process (`0.4`) or an absolute size (`512MiB`, `2GB`, `1073741824`).
`available_memory()` is the machine's memory or the cgroup's limit, whichever is lower.
`used_memory()` is RssAnon + RssShmem of this process from /proc/self/status: pages of mmapped
or cached files are reclaimable by the kernel and do not count. `MemoryAlarm.update(used)` says
whether the alarm changed (set at or above the limit, cleared below it), and `paging(used)`
whether queues should page message bodies out (above `PAGING_RATIO` of the limit).
`HeapTrimmer.maybe_trim()` gives memory back to the system once a deep queue drained: what
glibc malloc holds free (malloc_trim) and the Python arenas that CPython's free lists pin
(a full collection, only after most small objects are gone).
No asyncio, no sockets: the broker polls.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import re
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_WATERMARK = "0.4"
# Queues start paging bodies out of memory above this fraction of the watermark (RabbitMQ's
# vm_memory_high_watermark_paging_ratio).
PAGING_RATIO = 0.5
_UNITS = {
    "": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


@dataclass(frozen=True)
class Watermark:
    """Either a fraction of the available memory or an absolute number of bytes."""

    fraction: float = 0.0
    absolute: int = 0

    def limit(self, available: int) -> int:
        return self.absolute if self.absolute else int(self.fraction * available)

    def describe(self, available: int) -> str:
        limit = format_size(self.limit(available))
        if self.absolute:
            return limit
        return f"{limit} ({self.fraction:g} of {format_size(available)})"


def parse_watermark(text: str) -> Watermark:
    """`0.4` -> a fraction; `512MiB`, `2GB`, `1073741824` -> bytes. Raises ValueError."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError("must be a fraction like 0.4 or a size like 512MiB")
    number, unit = match.group(1), match.group(2).lower()
    if unit not in _UNITS:
        raise ValueError(f"unknown unit {match.group(2)!r} (use KiB, MiB, GiB, KB, MB, GB)")
    if not unit and ("." in number or float(number) <= 1):
        fraction = float(number)
        if not 0 < fraction <= 1:
            raise ValueError("a fraction must be > 0 and <= 1")
        return Watermark(fraction=fraction)
    size = int(float(number) * _UNITS[unit])
    if size < 1024 * 1024:
        raise ValueError("an absolute watermark must be at least 1MiB")
    return Watermark(absolute=size)


def format_size(size: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def used_memory(status: Path = Path("/proc/self/status")) -> int:
    """RssAnon + RssShmem of this process in bytes (0 where /proc is missing)."""
    try:
        text = status.read_text()
    except OSError:
        return 0
    total = 0
    for line in text.splitlines():
        if line.startswith(("RssAnon:", "RssShmem:")):
            total += int(line.split()[1]) * 1024
    return total


def available_memory(
    meminfo: Path = Path("/proc/meminfo"), cgroup_root: Path = Path("/sys/fs/cgroup")
) -> int:
    """The machine's memory, or the cgroup's limit (v2 memory.max, v1 limit) if lower."""
    total = 0
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    for name in ("memory.max", "memory/memory.limit_in_bytes"):
        try:
            raw = (cgroup_root / name).read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) > 0 and (not total or int(raw) < total):
            total = int(raw)
    return total or 1 << 30


class MemoryAlarm:
    """The memory alarm's state against a fixed limit (bytes)."""

    __slots__ = ("limit", "on", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.on = False
        self.used = 0

    def update(self, used: int) -> bool:
        """Record the current use; True when the alarm was just set or cleared."""
        self.used = used
        on = used >= self.limit
        if on == self.on:
            return False
        self.on = on
        return True

    def paging(self) -> bool:
        """Queues should move message bodies out of memory."""
        return self.used >= self.limit * PAGING_RATIO


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


class HeapTrimmer:
    """Gives memory the broker no longer uses back to the system, so RSS comes down after a
    deep queue is drained.

    Two allocators keep freed memory. glibc malloc (bodies, large buffers) keeps free pages:
    mallinfo2 says how many bytes are free and malloc_trim(0) releases every free page of
    every arena. Python's own allocator (small objects: messages, tuples, ints) keeps 1 MiB
    arenas and returns one only once every object in it is gone, and CPython's free lists
    (up to 2,000 tuples of each small size, floats, lists, dicts...) hold objects freed
    during the drain, scattered over many arenas, pinning them. A full `gc.collect()`
    empties those lists; it costs in proportion to the live objects, so it is done only
    once the number of small blocks in use fell below 1/`shrink` of its peak (a drain), and
    the peak restarts from there. Elsewhere (no glibc) only the collection is done.
    """

    def __init__(
        self, threshold: int = 8 * 1024 * 1024, shrink: int = 4, floor: int = 500_000
    ) -> None:
        self.threshold = threshold  # free malloc bytes worth a malloc_trim
        self.shrink = shrink
        self.floor = floor  # a peak of fewer small blocks than this is not a drain
        self.trims = 0
        self.collects = 0
        self._peak_blocks = 0
        self._mallinfo2 = None
        self._malloc_trim = None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallinfo2, malloc_trim = libc.mallinfo2, libc.malloc_trim
        except (OSError, AttributeError):
            return
        mallinfo2.restype = _MallInfo2
        malloc_trim.argtypes = [ctypes.c_size_t]
        malloc_trim.restype = ctypes.c_int
        self._mallinfo2, self._malloc_trim = mallinfo2, malloc_trim

    def free_bytes(self) -> int:
        """Bytes the allocator holds free (0 if unknown)."""
        return self._mallinfo2().fordblks if self._mallinfo2 is not None else 0

    def maybe_trim(self) -> bool:
        """Collect after a drain, then trim if more than `threshold` bytes are free; True if
        it did either. Costs a walk of Python's arenas (well under a millisecond per million
        objects) when there is nothing to do."""
        collected = self._collect_after_drain()
        if self._malloc_trim is None or self.free_bytes() < self.threshold:
            return collected
        self._malloc_trim(0)
        self.trims += 1
        return True

    def _collect_after_drain(self) -> bool:
        blocks = sys.getallocatedblocks()
        peak = self._peak_blocks
        if blocks > peak:
            self._peak_blocks = blocks
            return False
        if peak < self.floor or blocks * self.shrink > peak:
            return False
        gc.collect()
        self._peak_blocks = sys.getallocatedblocks()
        self.collects += 1
        return True
