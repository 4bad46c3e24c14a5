"""Store integrity under stress, on real files: reclaim that cannot loop, bounded shutdown,
damaged topology that loses no messages, private file modes.

No broker process (the store is sans-socket); the only thing replaced is ``os.fdatasync``, made
slow to hold the writer inside a reclaim.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from amqpd.store import DurableStore, QueueRecord, Recovered
from amqpd.store import records as R
from amqpd.store.reclaim import REWRITE_FACTOR
from amqpd.store.segments import ScanResult, list_segments, scan

HEADER = b"\x00<\x00\x00\x00\x00\x00\x00\x00\x00\x00d\x90\x00\x00\x02"


def wait_durable(store: DurableStore, ticket: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while int(store.stats()["durable_ticket"]) < ticket:
        if time.monotonic() > deadline:
            raise AssertionError(f"writer stuck: {store.stats()}")
        time.sleep(0.001)


def open_store(directory: Path, **kwargs: object) -> tuple[DurableStore, Recovered]:
    store = DurableStore(directory, **kwargs)  # type: ignore[arg-type]
    return store, store.recover()


def ids(recovered: Recovered, queue: str) -> list[int]:
    return [m.message_id for m in recovered.messages.get(queue, [])]


def assert_rewrites_bounded(store: DurableStore) -> None:
    st = store.stats()
    budget = REWRITE_FACTOR * int(st["appended_bytes"]) + int(st["rewrite_allowance"])
    assert int(st["rewritten_bytes"]) <= budget, st


# ----------------------------------------------------------------- reclaim cannot loop


def test_idle_reclaim_with_more_live_data_than_a_segment_terminates(tmp_path: Path) -> None:
    """The wave-1 loop: compacting into the head overflowed it into new segments older than
    the next head, which the same pass then compacted again, forever (close never returned)."""
    d = tmp_path / "data"
    s, _ = open_store(d, fsync="never", segment_bytes=16 * 1024)
    s.queue_declared(QueueRecord("keep", False, {}))
    s.queue_declared(QueueRecord("churn", False, {}))
    for mid in range(1, 41):  # ~40 KB that stays: more than two segments
        s.message_published(mid, ["keep"], "", "", HEADER, b"K" * 1000)
    body = os.urandom(1000)
    for mid in range(41, 141):
        t = s.message_published(mid, ["churn"], "", "", HEADER, body)
    s.flush()
    wait_durable(s, t)
    for mid in range(41, 141):
        s.message_removed("churn", mid)
    s.flush()
    wait_durable(s, s.ticket)
    t = s.message_published(1000, ["churn"], "", "", HEADER, body)
    s.flush()
    wait_durable(s, t)
    time.sleep(0.6)  # idle: the writer reclaims by itself
    settled = s.stats()["compactions"]
    time.sleep(0.6)
    assert s.stats()["compactions"] == settled  # nothing more to do, nothing more done
    assert_rewrites_bounded(s)
    started = time.monotonic()
    s.close()
    assert time.monotonic() - started < 3
    s, rec = open_store(d)
    s.close()
    assert ids(rec, "keep") == list(range(1, 41))
    assert ids(rec, "churn") == [1000]


def test_rewrites_stay_proportional_to_appends_under_churn(tmp_path: Path) -> None:
    """Long-lived messages among churn: each reclaim is paid for by appended bytes."""
    d = tmp_path / "data"
    s, _ = open_store(d, fsync="never", segment_bytes=8 * 1024)
    s.queue_declared(QueueRecord("keep", False, {}))
    s.queue_declared(QueueRecord("churn", False, {}))
    mid = 0
    kept = []
    for round_ in range(200):
        mid += 1
        if round_ % 10 == 0:
            s.message_published(mid, ["keep"], "", "", HEADER, b"K" * 500)
            kept.append(mid)
            mid += 1
        t = s.message_published(mid, ["churn"], "", "", HEADER, b"c" * 700)
        s.flush()
        wait_durable(s, t)
        s.message_removed("churn", mid)
        assert_rewrites_bounded(s)
    s.flush()
    wait_durable(s, s.ticket)
    time.sleep(0.5)
    assert_rewrites_bounded(s)
    assert s.stats()["compactions"] > 0
    s.close()
    s, rec = open_store(d)
    s.close()
    assert ids(rec, "keep") == kept
    assert ids(rec, "churn") == []


# --------------------------------------------------------------------- bounded shutdown


class SlowSync:
    """os.fdatasync that takes ``delay`` seconds (then really syncs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, delay: float) -> None:
        self.delay = delay
        self.calls = 0
        self._real = os.fdatasync
        monkeypatch.setattr(os, "fdatasync", self)

    def __call__(self, fd: int) -> None:
        self.calls += 1
        time.sleep(self.delay)
        self._real(fd)


def test_close_during_a_long_reclaim_returns_promptly_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "data"
    # 30 segments, each with one long-lived message among dead ones; a tiny compact_ratio
    # keeps them from being compacted while the log is built
    s, _ = open_store(d, fsync="never", segment_bytes=8 * 1024, compact_ratio=0.001)
    s.queue_declared(QueueRecord("keep", False, {}))
    s.queue_declared(QueueRecord("churn", False, {}))
    mid = 0
    kept = []
    churn = []
    for _ in range(30):
        mid += 1
        s.message_published(mid, ["keep"], "", "", HEADER, b"K" * 100)
        kept.append(mid)
        for _ in range(7):
            mid += 1
            s.message_published(mid, ["churn"], "", "", HEADER, b"c" * 1000)
            churn.append(mid)
    s.flush()
    wait_durable(s, s.ticket)
    for m in churn:
        s.message_removed("churn", m)
    s.close()
    assert len(list_segments(d)) >= 25

    slow = SlowSync(monkeypatch, 0.2)  # each compaction now takes >= 0.2 s: 30 take >= 6 s
    s, _ = open_store(d, segment_bytes=8 * 1024)
    deadline = time.monotonic() + 10
    while s.stats()["compactions"] < 2:  # the idle reclaim is under way
        assert time.monotonic() < deadline, s.stats()
        time.sleep(0.01)
    started = time.monotonic()
    s.close()
    assert time.monotonic() - started < 2.0, slow.calls
    assert s.stats()["compactions"] < 25  # it was abandoned, not finished
    monkeypatch.undo()
    s, rec = open_store(d)
    s.close()
    assert ids(rec, "keep") == kept
    assert ids(rec, "churn") == []


# --------------------------------------------------------- damaged topology loses nothing


def _queue_log(d: Path, count: int) -> Path:
    """A single-segment log: queue "q" declared, then ``count`` messages."""
    s, _ = open_store(d, fsync="never")
    s.queue_declared(QueueRecord("q", False, {"x-max-priority": 5}))
    for mid in range(1, count + 1):
        s.message_published(mid, ["q"], "", "q", HEADER, b"m%d" % mid)
    s.close()
    [(_, path)] = list_segments(d)
    return path


def _queue_records(data: bytes) -> list[tuple[int, int]]:
    """(record start, payload start) of every queue-declared record."""
    result = ScanResult()
    found = [(start, p) for rtype, p, _end, start in scan(data, result) if rtype == R.QUEUE]
    assert result.corrupt == 0
    return found


@pytest.mark.parametrize("where", ["marker", "length", "payload"])
@pytest.mark.parametrize("copy", [0, 1])
def test_a_flipped_byte_in_the_queue_declaration_loses_no_message(
    tmp_path: Path, where: str, copy: int
) -> None:
    d = tmp_path / "data"
    path = _queue_log(d, 20_000)
    data = bytearray(path.read_bytes())
    records = _queue_records(bytes(data))
    assert len(records) == 2  # the declaration and its twin
    start, payload = records[copy]
    offset = {"marker": start + 1, "length": start + 9, "payload": payload + 3}[where]
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))
    s, rec = open_store(d)
    s.close()
    assert [q.name for q in rec.queues] == ["q"]
    assert rec.queues[0].arguments == {"x-max-priority": 5}
    assert ids(rec, "q") == list(range(1, 20_001))
    assert rec.corrupt_records == 1
    assert not (d / "quarantine").exists()


def test_messages_whose_queue_cannot_be_recovered_are_quarantined_not_deleted(
    tmp_path: Path,
) -> None:
    d = tmp_path / "data"
    path = _queue_log(d, 20_000)
    original = path.read_bytes()
    data = bytearray(original)
    for _start, payload in _queue_records(original):  # both copies damaged
        data[payload + 3] ^= 0x5A
    path.write_bytes(bytes(data))
    s, rec = open_store(d)
    time.sleep(0.6)  # the idle reclaim may delete the segment: its messages are not live
    s.close()
    assert rec.messages == {}
    kept = d / "quarantine" / path.name
    assert kept.read_bytes() == bytes(data)
    assert s.stats()["quarantined_segments"] == 1
    # a second start finds nothing more to quarantine and keeps the copy
    s, rec = open_store(d)
    s.close()
    assert kept.exists()
    assert s.stats()["quarantined_segments"] == 0


# ------------------------------------------------------------------------- file modes


def test_data_directory_is_private(tmp_path: Path) -> None:
    d = tmp_path / "nested" / "data"
    s, _ = open_store(d)
    s.queue_declared(QueueRecord("q", False, {}))
    s.message_published(1, ["q"], "", "q", HEADER, b"secret")
    s.close()
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    files = [p for p in d.iterdir() if p.is_file()]
    assert len(files) >= 2  # LOCK and at least one segment
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name
