"""Segment files: naming, creation with fsync of file and directory, writes, recovery scan.

Contract: a segment is ``segment-<number>.log`` (number zero-padded, increasing with age),
a file header (magic, version byte, number, CRC) followed by framed records. ``scan`` walks
the records of a segment's bytes, yields each intact one, skips a damaged run up to the next
intact record (counting it once) and reports where an unrecoverable tail starts; it never
raises on bad data. The write helpers are thin wrappers over ``os`` that raise ``OSError``.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from amqpd.store.records import (
    FILE_HEADER_SIZE,
    MARK,
    MARK_BYTES,
    MAX_PAYLOAD,
    RECORD_HEAD,
    RECORD_HEAD_SIZE,
    decode_file_header,
    encode_file_header,
)

_NAME = re.compile(r"^segment-(\d{12})\.log$")


def segment_path(directory: Path, number: int) -> Path:
    return directory / f"segment-{number:012d}.log"


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """(number, path) of every segment file in the directory, oldest first."""
    found = []
    for entry in os.scandir(directory):
        m = _NAME.match(entry.name)
        if m and entry.is_file():
            found.append((int(m.group(1)), Path(entry.path)))
    found.sort()
    return found


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """One os.write for the whole buffer (more only if the kernel writes it partially)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def create_segment(directory: Path, number: int, initial: bytes, sync: bool) -> int:
    """Create (or recreate) a segment holding the header and ``initial``; return a write fd.

    With ``sync`` the file and its directory entry are fsync'ed before returning. On error
    the partial file is removed and the OSError propagates.
    """
    path = segment_path(directory, number)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        write_all(fd, encode_file_header(number) + initial)
        if sync:
            os.fsync(fd)
            fsync_directory(directory)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
    return fd


def truncate(fd: int, size: int) -> None:
    """Cut a segment back to ``size`` bytes and put the write position there."""
    os.ftruncate(fd, size)
    os.lseek(fd, size, os.SEEK_SET)


@dataclass
class ScanResult:
    """What ``scan`` found besides the records it yielded."""

    corrupt: int = 0  # damaged runs skipped (each counts as one record)
    tail_start: int = -1  # offset where an unrecoverable tail starts, or -1
    end: int = 0  # offset after the last intact record (== len(data) if no tail)


def header_ok(data: bytes) -> tuple[int, int] | None:
    """(version, number) if the segment starts with a well-formed header."""
    return decode_file_header(data[:FILE_HEADER_SIZE])


def _intact_at(data: bytes, view: memoryview, p: int, n: int) -> bool:
    if p + RECORD_HEAD_SIZE > n:
        return False
    mark, crc, length, _ = RECORD_HEAD.unpack_from(data, p)
    end = p + RECORD_HEAD_SIZE + length
    if mark != MARK or length > MAX_PAYLOAD or end > n:
        return False
    return zlib.crc32(view[p + 8 : end]) == crc


def _resync(data: bytes, view: memoryview, p: int, n: int) -> int:
    """Offset of the next intact record at or after p, or -1."""
    while True:
        p = data.find(MARK_BYTES, p)
        if p < 0 or _intact_at(data, view, p, n):
            return p
        p += 1


def scan(
    data: bytes, result: ScanResult, start: int = FILE_HEADER_SIZE
) -> Iterator[tuple[int, int, int, int]]:
    """Yield (type, payload start, payload end, record start) for every intact record.

    A damaged run followed by an intact record is skipped and counted in ``result.corrupt``;
    a damaged run reaching the end of the data sets ``result.tail_start`` (the caller decides
    whether that is a torn tail to truncate or a corrupt record to count).
    """
    n = len(data)
    view = memoryview(data)
    unpack = RECORD_HEAD.unpack_from
    crc32 = zlib.crc32
    head = RECORD_HEAD_SIZE
    p = start
    try:
        while p < n:
            if p + head <= n:
                mark, crc, length, rtype = unpack(data, p)
                end = p + head + length
                if mark == MARK and end <= n and crc32(view[p + 8 : end]) == crc:
                    yield rtype, p + head, end, p
                    p = end
                    continue
            q = _resync(data, view, p + 1, n)
            if q < 0:
                result.tail_start = p
                result.end = p
                return
            result.corrupt += 1
            p = q
        result.end = p
    finally:
        view.release()
