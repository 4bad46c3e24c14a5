"""Unit tests of amqpd.store on real files: recovery, damage, group commit, reclaim, disk full.

No broker process: the store is sans-socket. The only things replaced are OS calls
(os.write / os.fdatasync) to simulate a full disk, an I/O error or a slow disk; the store
itself is never mocked.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from amqpd.store import (
    BindingRecord,
    DurableStore,
    ExchangeRecord,
    MemoryStore,
    QueueRecord,
    Recovered,
    StoreFailed,
    reclaim,
)
from amqpd.store import records as R
from amqpd.store.segments import ScanResult, list_segments, scan

HEADER = b"\x00<\x00\x00\x00\x00\x00\x00\x00\x00\x00d\x90\x00\x00\x02"


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for the writer thread to get somewhere (a liveness bound, not a speed check)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.0002)


def wait_durable(store: DurableStore, ticket: int) -> None:
    wait_for(lambda: int(store.stats()["durable_ticket"]) >= ticket)


def reopen(directory: Path, **kwargs: object) -> tuple[DurableStore, Recovered]:
    store = DurableStore(directory, **kwargs)  # type: ignore[arg-type]
    return store, store.recover()


def recover_once(directory: Path) -> Recovered:
    store, recovered = reopen(directory)
    store.close()
    return recovered


def ids(recovered: Recovered, queue: str) -> list[int]:
    return [m.message_id for m in recovered.messages.get(queue, [])]


def dir_bytes(directory: Path) -> int:
    """Bytes in the log's segments; safe while the writer thread deletes segments."""
    total = 0
    for _, p in list_segments(directory):
        try:
            total += p.stat().st_size
        except FileNotFoundError:  # reclaimed between the listing and the stat
            pass
    return total


def all_log_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for _, p in list_segments(directory))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DurableStore]:
    s = DurableStore(tmp_path / "data")
    s.recover()
    yield s
    s.close()


# ------------------------------------------------------------------ round trips


def test_topology_and_messages_survive_close_and_reopen(tmp_path: Path) -> None:
    d = tmp_path / "data"
    s, first = reopen(d)
    assert (first.exchanges, first.queues, first.bindings, first.messages) == ([], [], [], {})
    x = ExchangeRecord("logs", "topic", False, False, {"alternate-exchange": "ae"})
    x2 = ExchangeRecord("ae", "fanout", True, True, {})
    q = QueueRecord("q1", False, {"x-max-length": 10, "x-dead-letter-exchange": "dlx"})
    q2 = QueueRecord("q2", True, {})
    b1 = BindingRecord("logs", "queue", "q1", "a.*", {})
    b2 = BindingRecord("logs", "exchange", "ae", "#", {"x-match": "all", "n": 1})
    for op, rec in [
        (s.exchange_declared, x),
        (s.exchange_declared, x2),
        (s.queue_declared, q),
        (s.queue_declared, q2),
    ]:
        op(rec)  # type: ignore[operator]
    s.binding_added(b1)
    s.binding_added(b2)
    for i in range(1, 6):
        s.message_published(i, ["q1"], "logs", "a.b", HEADER, b"body-%d" % i)
    s.message_published(6, ["q1", "q2"], "logs", "a.c", HEADER, b"")
    s.close()
    s.close()  # safe twice

    s, rec = reopen(d)
    s.close()
    assert rec.exchanges == [x, x2]
    assert rec.queues == [q, q2]
    assert sorted(rec.bindings, key=repr) == sorted([b1, b2], key=repr)
    assert ids(rec, "q1") == [1, 2, 3, 4, 5, 6]
    assert ids(rec, "q2") == [6]
    m = rec.messages["q1"][1]
    assert (m.exchange, m.routing_key, m.header, m.body, m.delivered) == (
        "logs",
        "a.b",
        HEADER,
        b"body-2",
        False,
    )
    assert rec.messages["q2"][0].body == b""
    assert rec.next_message_id == 7
    assert (rec.corrupt_records, rec.truncated_bytes) == (0, 0)

    # and again: the snapshot at the head of the new segment carries the topology
    rec2 = recover_once(d)
    assert (rec2.exchanges, rec2.queues) == (rec.exchanges, rec.queues)
    assert ids(rec2, "q1") == [1, 2, 3, 4, 5, 6]


def test_deletions_of_topology_survive(tmp_path: Path) -> None:
    d = tmp_path / "data"
    s, _ = reopen(d)
    s.exchange_declared(ExchangeRecord("x", "direct", False, False, {}))
    s.exchange_declared(ExchangeRecord("y", "fanout", False, False, {}))
    s.queue_declared(QueueRecord("q", False, {}))
    s.binding_added(BindingRecord("x", "queue", "q", "k", {}))
    s.binding_added(BindingRecord("y", "queue", "q", "k", {}))
    s.binding_added(BindingRecord("y", "exchange", "x", "k", {}))
    s.binding_removed(BindingRecord("y", "queue", "q", "k", {}))
    s.exchange_deleted("x")  # also drops bindings from and to it
    s.close()
    rec = recover_once(d)
    assert [e.name for e in rec.exchanges] == ["y"]
    assert rec.bindings == []


def test_delivered_flag_comes_back_per_queue(tmp_path: Path) -> None:
    d = tmp_path / "data"
    s, _ = reopen(d)
    s.queue_declared(QueueRecord("a", False, {}))
    s.queue_declared(QueueRecord("b", False, {}))
    s.message_published(1, ["a", "b"], "", "", HEADER, b"one")
    s.message_published(2, ["a"], "", "", HEADER, b"two")
    s.message_delivered("a", 2)  # before it was handed to the writer
    s.flush()
    s.message_delivered("a", 1)  # after
    s.close()
    rec = recover_once(d)
    assert [(m.message_id, m.delivered) for m in rec.messages["a"]] == [(1, True), (2, True)]
    assert [(m.message_id, m.delivered) for m in rec.messages["b"]] == [(1, False)]


def delivered_flags(recovered: Recovered, queue: str) -> list[tuple[int, bool]]:
    return [(m.message_id, m.delivered) for m in recovered.messages.get(queue, [])]


def test_deliveries_are_one_watermark_record_per_queue_and_flush(tmp_path: Path) -> None:
    d = tmp_path / "data"
    s, _ = reopen(d)
    s.queue_declared(QueueRecord("a", False, {}))
    s.queue_declared(QueueRecord("b", False, {}))
    for i in range(1, 11):
        t = s.message_published(i, ["a", "b"], "", "", HEADER, b"m%d" % i)
    s.flush()
    wait_durable(s, t)
    for i in range(1, 7):  # a queue delivers its lowest id first
        s.message_delivered("a", i)
    s.message_delivered("b", 1)
    s.message_delivered("b", 2)
    s.flush()
    s.message_published(11, ["a"], "", "", HEADER, b"m11")  # newer: not delivered
    s.close()
    marks = []
    for _, path in list_segments(d):
        data = path.read_bytes()
        for rtype, p, end, _ in scan(data, ScanResult()):
            if rtype == R.DELIVERED:
                marks.append(R.decode_message_ref(data, p, end))
    assert sorted(marks) == [(2, "b"), (6, "a")]
    rec = recover_once(d)
    assert delivered_flags(rec, "a") == [(i, i <= 6) for i in range(1, 12)]
    assert delivered_flags(rec, "b") == [(i, i <= 2) for i in range(1, 11)]


def test_old_logs_with_one_delivered_record_per_message_recover_the_same(
    tmp_path: Path,
) -> None:
    d = tmp_path / "data"
    d.mkdir()
    records = [R.encode_queue(QueueRecord("q", False, {}))]
    records += [R.encode_queue(QueueRecord("other", False, {}))]
    for i in range(1, 6):
        records.append(R.encode_publish(i, {"q": False, "other": False}, "", "", HEADER, b"x"))
    records.append(R.encode_message_ref(R.DELIVERED, "q", 1))
    records.append(R.encode_message_ref(R.REMOVED, "q", 1))
    records.append(R.encode_message_ref(R.DELIVERED, "q", 2))
    records.append(R.encode_message_ref(R.DELIVERED, "q", 3))
    data = R.encode_file_header(1) + b"".join(b"".join(r) for r in records)
    (d / "segment-000000000001.log").write_bytes(data)
    rec = recover_once(d)
    assert delivered_flags(rec, "q") == [(2, True), (3, True), (4, False), (5, False)]
    assert delivered_flags(rec, "other") == [(i, False) for i in range(1, 6)]
    again = recover_once(d)  # after its own compaction, the same
    assert delivered_flags(again, "q") == delivered_flags(rec, "q")
    assert delivered_flags(again, "other") == delivered_flags(rec, "other")


def test_a_delivered_watermark_is_forgotten_with_its_queue(tmp_path: Path) -> None:
    d = tmp_path / "data"
    s, _ = reopen(d)
    s.queue_declared(QueueRecord("q", False, {}))
    s.message_published(1, ["q"], "", "", HEADER, b"1")
    s.flush()
    s.message_delivered("q", 1)
    s.flush()
    s.queue_deleted("q")
    s.queue_declared(QueueRecord("q", False, {}))
    s.close()
    # a log written by hand, as compaction could leave it: a copy of message 1 in the new
    # queue of the same name comes after the old queue's watermark and keeps its own flag
    s, rec = reopen(d)
    assert rec.messages == {}
    s.close()
    records = [
        R.encode_queue(QueueRecord("q", False, {})),
        R.encode_publish(1, {"q": False}, "", "", HEADER, b"1"),
        R.encode_message_ref(R.DELIVERED, "q", 1),
        R.encode_name(R.QUEUE_DELETE, "q"),
        R.encode_queue(QueueRecord("q", False, {})),
        R.encode_publish(1, {"q": False}, "", "", HEADER, b"1"),
    ]
    d2 = tmp_path / "hand"
    d2.mkdir()
    data = R.encode_file_header(1) + b"".join(b"".join(r) for r in records)
    (d2 / "segment-000000000001.log").write_bytes(data)
    assert delivered_flags(recover_once(d2), "q") == [(1, False)]


def test_removed_messages_stay_gone(tmp_path: Path) -> None:
    d = tmp_path / "data"
    s, _ = reopen(d)
    s.queue_declared(QueueRecord("a", False, {}))
    s.queue_declared(QueueRecord("b", False, {}))
    for i in range(1, 6):
        s.message_published(i, ["a", "b"], "", "", HEADER, b"m%d" % i)
    s.flush()
    s.message_removed("a", 2)
    s.message_removed("b", 2)
    s.message_removed("a", 4)
    s.close()
    rec = recover_once(d)
    assert ids(rec, "a") == [1, 3, 5]
    assert ids(rec, "b") == [1, 3, 4, 5]
    rec = recover_once(d)  # still gone after another restart
    assert ids(rec, "a") == [1, 3, 5]


def test_message_removed_before_the_writer_took_it_is_never_written(tmp_path: Path) -> None:
    d = tmp_path / "data"
    s, _ = reopen(d)
    s.queue_declared(QueueRecord("q", False, {}))
    s.message_published(1, ["q"], "", "", HEADER, b"KEPT-MARKER")
    s.message_published(2, ["q"], "", "", HEADER, b"NEVER-WRITTEN-MARKER")
    s.message_removed("q", 2)
    s.close()
    data = all_log_bytes(d)
    assert b"KEPT-MARKER" in data
    assert b"NEVER-WRITTEN-MARKER" not in data
    rec = recover_once(d)
    assert ids(rec, "q") == [1]
    assert rec.next_message_id >= 2


def test_queue_delete_drops_its_messages_and_bindings(tmp_path: Path) -> None:
    d = tmp_path / "data"
    s, _ = reopen(d)
    s.exchange_declared(ExchangeRecord("x", "direct", False, False, {}))
    s.queue_declared(QueueRecord("gone", False, {}))
    s.queue_declared(QueueRecord("kept", False, {}))
    s.binding_added(BindingRecord("x", "queue", "gone", "k", {}))
    s.binding_added(BindingRecord("x", "queue", "kept", "k", {}))
    s.message_published(1, ["gone", "kept"], "x", "k", HEADER, b"shared")
    s.message_published(2, ["gone"], "x", "k", HEADER, b"only-gone")
    s.flush()
    s.message_published(3, ["gone"], "x", "k", HEADER, b"pending")
    s.queue_deleted("gone")
    s.queue_declared(QueueRecord("gone", False, {}))  # a new queue of the same name
    s.message_published(4, ["gone"], "x", "k", HEADER, b"new")
    s.close()
    rec = recover_once(d)
    assert [q.name for q in rec.queues] == ["kept", "gone"]
    assert ids(rec, "kept") == [1]
    assert ids(rec, "gone") == [4]
    assert [b.destination for b in rec.bindings] == ["kept"]


def test_queue_purge(tmp_path: Path) -> None:
    d = tmp_path / "data"
    s, _ = reopen(d)
    s.queue_declared(QueueRecord("p", False, {}))
    s.queue_declared(QueueRecord("o", False, {}))
    s.message_published(1, ["p", "o"], "", "", HEADER, b"1")
    s.flush()
    s.message_published(2, ["p"], "", "", HEADER, b"2")
    s.queue_purged("p")
    s.message_published(3, ["p"], "", "", HEADER, b"3")
    s.close()
    rec = recover_once(d)
    assert ids(rec, "p") == [3]
    assert ids(rec, "o") == [1]


def test_messages_of_an_undeclared_queue_are_not_recovered(tmp_path: Path) -> None:
    d = tmp_path / "data"
    s, _ = reopen(d)
    s.message_published(1, ["nobody"], "", "", HEADER, b"x")
    s.close()
    rec = recover_once(d)
    assert rec.messages == {}
    assert rec.next_message_id == 2


def test_store_directory_is_locked(tmp_path: Path, store: DurableStore) -> None:
    with pytest.raises(StoreFailed):
        DurableStore(tmp_path / "data").recover()


# ---------------------------------------------------------------- damaged logs


def _small_log(d: Path) -> Path:
    """A single-segment log: queue, 12 messages, the first three delivered, one removed."""
    s, _ = reopen(d, fsync="never")
    s.queue_declared(QueueRecord("q", False, {"x-queue-mode": "lazy"}))
    for i in range(1, 13):
        last = s.message_published(i, ["q"], "ex", "rk", HEADER, b"payload-%02d" % i)
    s.flush()
    wait_for(lambda: s.stats()["durable_ticket"] == last)  # so these are records of their own
    for i in (1, 2, 3):  # lowest id first, as a queue delivers: one watermark record
        s.message_delivered("q", i)
    s.message_removed("q", 5)
    s.close()
    [(_, path)] = list_segments(d)
    return path


def _records(data: bytes) -> list[tuple[int, int, int, int]]:
    result = ScanResult()
    found = list(scan(data, result))
    assert result.corrupt == 0 and result.tail_start == -1
    return found


def _expected_prefix(data: bytes, cut: int) -> tuple[list[tuple[int, bool]], int]:
    """Messages (id, delivered) of the complete records in data[:cut], and where they end."""
    queue_ok = False
    live: dict[int, bool] = {}
    good_end = 0
    for rtype, p, end, _start in _records(data):
        if end > cut:
            break
        good_end = end
        if rtype == R.QUEUE:
            queue_ok = True
        elif rtype == R.PUBLISH:
            live[R.decode_publish_queues(data, p)[0]] = False
        elif rtype == R.DELIVERED:  # a watermark: every id <= it was delivered
            watermark = R.decode_message_ref(data, p, end)[0]
            for mid in live:
                if mid <= watermark:
                    live[mid] = True
        elif rtype == R.REMOVED:
            live.pop(R.decode_message_ref(data, p, end)[0])
    return (sorted(live.items()) if queue_ok else []), good_end


def test_truncation_of_the_last_segment_at_every_offset(tmp_path: Path) -> None:
    original = _small_log(tmp_path / "orig")
    data = original.read_bytes()
    assert len(_records(data)) >= 15
    for cut in range(len(data) + 1):
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        (d / original.name).write_bytes(data[:cut])
        rec = recover_once(d)
        expected, good_end = _expected_prefix(data, cut)
        got = [(m.message_id, m.delivered) for m in rec.messages.get("q", [])]
        assert got == expected, cut
        if cut < R.FILE_HEADER_SIZE:
            assert rec.truncated_bytes == cut, cut
        else:
            assert rec.truncated_bytes == cut - max(good_end, R.FILE_HEADER_SIZE), cut
        assert rec.corrupt_records == 0, cut
        if cut in (len(data) - 1, len(data) // 2):  # idempotent: a second start sees the same
            again = recover_once(d)
            assert [(m.message_id, m.delivered) for m in again.messages.get("q", [])] == got
            assert again.truncated_bytes == 0
        shutil.rmtree(d)


@pytest.mark.parametrize("in_last_segment", [True, False])
def test_flipped_bytes_in_a_middle_record_skip_exactly_that_record(
    tmp_path: Path, in_last_segment: bool
) -> None:
    original = _small_log(tmp_path / "orig")
    data = original.read_bytes()
    target = [r for r in _records(data) if r[0] == R.PUBLISH][6]  # message 7
    _, _, end, start = target
    for offset in range(start, end):
        d = tmp_path / f"flip{offset}"
        d.mkdir()
        damaged = bytearray(data)
        damaged[offset] ^= 0xFF
        (d / original.name).write_bytes(bytes(damaged))
        if not in_last_segment:  # a later segment follows: the damaged one is not the tail
            (d / "segment-000000000009.log").write_bytes(R.encode_file_header(9))
        rec = recover_once(d)
        assert [(m.message_id, m.delivered) for m in rec.messages["q"]] == [
            (1, True),
            (2, True),
            (3, True),
            (4, False),
            (6, False),
            (8, False),
            (9, False),
            (10, False),
            (11, False),
            (12, False),
        ], offset
        assert rec.corrupt_records == 1, offset
        assert rec.truncated_bytes == 0, offset
        shutil.rmtree(d)


def test_garbage_and_torn_header(tmp_path: Path) -> None:
    d = tmp_path / "data"
    path = _small_log(d)
    good = path.read_bytes()
    path.write_bytes(good + b"\x00" * 100 + R.MARK_BYTES + b"garbage")
    (d / "segment-000000000005.log").write_bytes(b"AMQPD")  # crash while creating it
    rec = recover_once(d)
    assert ids(rec, "q") == [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12]
    assert rec.truncated_bytes == 5  # the torn segment; the other one is not the last
    assert rec.corrupt_records == 1  # the damaged end of the older segment
    assert not (d / "segment-000000000005.log").exists()


def test_unknown_future_version_is_left_alone(tmp_path: Path) -> None:
    d = tmp_path / "data"
    d.mkdir()
    head = R.FILE_HEADER.pack(R.FILE_MAGIC, R.VERSION + 1, 1, 0)[:20]
    head += zlib.crc32(head).to_bytes(4, "little")
    (d / "segment-000000000001.log").write_bytes(bytes(head) + b"future")
    rec = recover_once(d)
    assert rec.messages == {} and rec.corrupt_records == 1
    assert (d / "segment-000000000001.log").read_bytes() == bytes(head) + b"future"


# ----------------------------------------------------------- group commit and tickets


class SyncSpy:
    """Counts os.fdatasync calls (and can hold the first one) while still syncing."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, hold_first: bool = False) -> None:
        self.calls = 0
        self.events: list[object] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        self._real = os.fdatasync
        monkeypatch.setattr(os, "fdatasync", self)

    def __call__(self, fd: int) -> None:
        self.calls += 1
        self.events.append("sync")
        self.entered.set()
        assert self.release.wait(10)
        self._real(fd)


def test_many_appends_one_flush_is_one_batch_and_one_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, _ = reopen(tmp_path / "data")
    spy = SyncSpy(monkeypatch)
    durable: list[int] = []
    s.on_durable = durable.append
    s.queue_declared(QueueRecord("q", False, {}))
    last = 0
    for i in range(1, 1001):
        last = s.message_published(i, ["q"], "", "q", HEADER, b"x" * 10)
    s.flush()
    wait_for(lambda: durable == [last])
    assert last == 1001
    assert s.stats()["batches"] == 1
    assert spy.calls == 1
    s.close()


def test_appends_while_the_writer_syncs_form_the_next_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, _ = reopen(tmp_path / "data")
    spy = SyncSpy(monkeypatch, hold_first=True)
    durable: list[int] = []
    s.on_durable = durable.append
    s.queue_declared(QueueRecord("q", False, {}))
    first = s.message_published(1, ["q"], "", "q", HEADER, b"first")
    s.flush()
    assert spy.entered.wait(10)  # the writer is inside fdatasync for batch 1
    last = first
    for i in range(2, 102):  # 100 ticks of the event loop, one publish each
        last = s.message_published(i, ["q"], "", "q", HEADER, b"next")
        s.flush()
    assert durable == []  # nothing confirmed before its fdatasync returned
    spy.release.set()
    wait_for(lambda: durable[-1:] == [last])
    assert durable == [first, last]
    assert spy.calls == 2
    assert s.stats()["batches"] == 2
    s.close()


def test_tickets_count_every_append(store: DurableStore) -> None:
    store.queue_declared(QueueRecord("q", False, {}))
    store.exchange_declared(ExchangeRecord("x", "direct", False, False, {}))
    t1 = store.message_published(1, ["q"], "x", "", HEADER, b"")
    store.message_delivered("q", 1)
    store.message_removed("q", 1)
    t2 = store.message_published(2, ["q"], "x", "", HEADER, b"")
    assert (t1, t2) == (3, 6)


def test_policy_always_reports_durable_only_after_fdatasync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, _ = reopen(tmp_path / "data", fsync="always")
    spy = SyncSpy(monkeypatch)
    s.on_durable = spy.events.append
    s.queue_declared(QueueRecord("q", False, {}))
    t1 = s.message_published(1, ["q"], "", "", HEADER, b"a")
    s.flush()
    wait_for(lambda: t1 in spy.events)
    t2 = s.message_published(2, ["q"], "", "", HEADER, b"b")
    s.flush()
    wait_for(lambda: t2 in spy.events)
    assert spy.events == ["sync", t1, "sync", t2]
    s.close()


def test_policy_interval_reports_at_write_and_syncs_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, _ = reopen(tmp_path / "data", fsync="interval", fsync_interval_ms=60_000)
    spy = SyncSpy(monkeypatch)
    s.on_durable = spy.events.append
    s.queue_declared(QueueRecord("q", False, {}))
    t1 = s.message_published(1, ["q"], "", "", HEADER, b"a")
    s.flush()
    wait_for(lambda: t1 in spy.events)
    t2 = s.message_published(2, ["q"], "", "", HEADER, b"b")
    s.flush()
    wait_for(lambda: t2 in spy.events)
    assert spy.events == [t1, t2]  # the interval has not passed: no fdatasync yet
    s.close()
    assert spy.events == [t1, t2, "sync"]  # close syncs

    s, rec = reopen(tmp_path / "data", fsync="interval", fsync_interval_ms=20)
    assert ids(rec, "q") == [1, 2]
    spy.events.clear()
    s.on_durable = spy.events.append
    t = s.message_published(3, ["q"], "", "", HEADER, b"c")
    s.flush()
    wait_for(lambda: "sync" in spy.events)  # comes by itself once the interval is over
    assert spy.events == [t, "sync"]
    s.close()


def test_policy_never_reports_at_write_without_fdatasync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, _ = reopen(tmp_path / "data", fsync="never")
    spy = SyncSpy(monkeypatch)
    s.on_durable = spy.events.append
    s.queue_declared(QueueRecord("q", False, {}))
    ts = []
    for i in range(1, 4):
        ts.append(s.message_published(i, ["q"], "", "", HEADER, b"x"))
        s.flush()
        wait_for(lambda: ts[-1] in spy.events)
    assert spy.events == ts
    s.close()
    rec = recover_once(tmp_path / "data")
    assert ids(rec, "q") == [1, 2, 3]


def test_memory_store_is_durable_at_flush_and_keeps_nothing() -> None:
    m = MemoryStore()
    assert m.recover().messages == {}
    durable: list[int] = []
    m.on_durable = durable.append
    m.queue_declared(QueueRecord("q", False, {}))
    t = m.message_published(1, ["q"], "", "", HEADER, b"x")
    assert durable == []
    m.flush()
    assert durable == [t] == [2]
    assert m.stats()["live_messages"] == 1
    m.message_removed("q", 1)
    m.flush()
    assert durable == [2, 3]
    assert m.stats()["live_messages"] == 0
    m.close()
    assert MemoryStore().recover().queues == []


# ------------------------------------------------------------------- disk reclaim


def test_publish_and_remove_far_more_than_a_segment_shrinks_back(tmp_path: Path) -> None:
    d = tmp_path / "data"
    segment = 16 * 1024
    s, _ = reopen(d, fsync="never", segment_bytes=segment)
    s.queue_declared(QueueRecord("q", False, {}))
    body = os.urandom(1000)
    mid = 0
    for _round in range(100):  # ~2 MB through the log, 125 segments' worth
        batch = []
        for _ in range(20):
            mid += 1
            batch.append(mid)
            t = s.message_published(mid, ["q"], "", "q", HEADER, body)
        s.flush()
        wait_durable(s, t)  # written before removed
        for m in batch:
            s.message_removed("q", m)
        s.flush()
    s.close()
    assert s.stats()["segments_deleted"] > 50
    assert dir_bytes(d) < 3 * segment
    rec = recover_once(d)
    assert rec.messages == {}
    assert rec.next_message_id == mid + 1
    assert dir_bytes(d) < 3 * segment


def test_after_everything_is_removed_the_log_shrinks_without_more_writes(
    tmp_path: Path,
) -> None:
    d = tmp_path / "data"
    segment = 16 * 1024
    s, _ = reopen(d, fsync="never", segment_bytes=segment)
    s.queue_declared(QueueRecord("q", False, {}))
    s.queue_declared(QueueRecord("keep", False, {}))
    s.binding_added(BindingRecord("amq.direct", "queue", "q", "k", {}))
    s.flush()
    wait_durable(s, s.ticket)
    fresh = dir_bytes(d)  # one segment: header, snapshot and the topology, nothing else

    def shrinks_back() -> bool:
        """No more appends: the writer retires the mostly-dead head by itself."""
        deadline = time.monotonic() + 3
        while dir_bytes(d) >= 2 * fresh:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return len(list_segments(d)) == 1

    body = os.urandom(1000)
    mid = 0
    for _round in range(50):  # ~1 MB through the log, ~60 segments' worth
        batch = []
        for _ in range(20):
            mid += 1
            batch.append(mid)
            t = s.message_published(mid, ["q"], "", "q", HEADER, body)
        s.flush()
        wait_durable(s, t)  # written before removed
        for m in batch:
            s.message_removed("q", m)
    s.message_published(mid + 1, ["keep"], "", "keep", HEADER, b"LIVE")
    s.flush()
    wait_durable(s, s.ticket)
    assert shrinks_back(), (dir_bytes(d), fresh, s.stats())

    # a little dead data, far below what retires the head while writes go on
    rotations = s.stats()["head_rotations"]
    mid += 2
    t = s.message_published(mid, ["q"], "", "q", HEADER, body)
    s.flush()
    wait_durable(s, t)
    s.message_removed("q", mid)
    s.flush()
    wait_durable(s, s.ticket)
    assert shrinks_back(), (dir_bytes(d), fresh, s.stats())
    assert s.stats()["head_rotations"] == rotations + 1
    s.close()
    rec = recover_once(d)
    assert ids(rec, "q") == []
    assert [(m.message_id, m.body) for m in rec.messages["keep"]] == [(mid - 1, b"LIVE")]
    assert rec.next_message_id == mid + 1
    assert rec.corrupt_records == 0


@pytest.fixture(params=["located", "scanned"])
def compaction_reads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Compaction reads live messages where the index says, or scans the whole segment."""
    if request.param == "scanned":
        monkeypatch.setattr(reclaim, "LOCATE_LIVE_PER_BYTE", 0.0)
    return str(request.param)


def test_a_long_lived_message_does_not_pin_old_segments(
    tmp_path: Path, compaction_reads: str
) -> None:
    d = tmp_path / "data"
    segment = 16 * 1024
    s, _ = reopen(d, fsync="never", segment_bytes=segment)
    s.queue_declared(QueueRecord("a", False, {}))
    s.queue_declared(QueueRecord("b", False, {}))
    s.message_published(1, ["a", "b"], "x", "old", HEADER, b"LONG-LIVED")
    s.message_published(2, ["b"], "x", "old", HEADER, b"ALSO-LONG-LIVED")
    s.flush()
    s.message_delivered("b", 1)
    s.message_removed("a", 1)
    s.flush()
    first_segment = list_segments(d)[0][1]
    body = os.urandom(1000)
    for mid in range(3, 2003):
        t = s.message_published(mid, ["a"], "", "a", HEADER, body)
        s.flush()
        wait_durable(s, t)  # written before removed
        s.message_removed("a", mid)
    s.close()
    assert s.stats()["compactions"] > 0
    assert not first_segment.exists()
    assert dir_bytes(d) < 3 * segment
    rec = recover_once(d)
    assert ids(rec, "a") == []
    assert [(m.message_id, m.body, m.delivered) for m in rec.messages["b"]] == [
        (1, b"LONG-LIVED", True),
        (2, b"ALSO-LONG-LIVED", False),
    ]
    assert rec.messages["b"][0].routing_key == "old"
    assert rec.corrupt_records == 0


def test_a_mostly_live_old_segment_does_not_pin_dead_ones_behind_it(tmp_path: Path) -> None:
    d = tmp_path / "data"
    segment = 16 * 1024
    s, _ = reopen(d, fsync="never", segment_bytes=segment)
    s.queue_declared(QueueRecord("keep", False, {}))
    s.queue_declared(QueueRecord("churn", False, {}))
    for mid in range(1, 13):  # ~12 KiB that stays: the first segment is ~75% live
        s.message_published(mid, ["keep"], "", "", HEADER, b"K" * 1000)
    s.flush()
    body = os.urandom(1000)
    for mid in range(13, 1013):
        t = s.message_published(mid, ["churn"], "", "", HEADER, body)
        s.flush()
        wait_durable(s, t)
        s.message_removed("churn", mid)
    s.close()
    assert dir_bytes(d) < 12 * 1024 + 4 * segment
    rec = recover_once(d)
    assert ids(rec, "keep") == list(range(1, 13))
    assert ids(rec, "churn") == []


def test_a_compacted_copy_next_to_its_original_recovers_once(
    tmp_path: Path, compaction_reads: str
) -> None:
    """A crash between re-appending live messages and deleting their old segment."""
    d = tmp_path / "data"
    segment = 8 * 1024
    s, _ = reopen(d, fsync="never", segment_bytes=segment)
    s.queue_declared(QueueRecord("q", False, {}))
    s.message_published(1, ["q"], "", "", HEADER, b"KEEP")
    s.flush()
    wait_for(lambda: s.stats()["durable_ticket"] >= 2)
    first = list_segments(d)[0][1]
    saved = first.read_bytes()
    for mid in range(2, 200):
        t = s.message_published(mid, ["q"], "", "", HEADER, b"y" * 200)
        s.flush()
        wait_durable(s, t)
        s.message_removed("q", mid)
    s.message_delivered("q", 1)
    s.close()
    assert not first.exists()
    first.write_bytes(saved)  # as if the crash came before the unlink
    rec = recover_once(d)
    assert [(m.message_id, m.body, m.delivered) for m in rec.messages["q"]] == [(1, b"KEEP", True)]


def test_compaction_keeps_watermark_delivered_flags(tmp_path: Path, compaction_reads: str) -> None:
    d = tmp_path / "data"
    s, _ = reopen(d, fsync="never", segment_bytes=8 * 1024)
    s.queue_declared(QueueRecord("q", False, {}))
    s.queue_declared(QueueRecord("churn", False, {}))
    for mid in (1, 2, 3):
        s.message_published(mid, ["q"], "", "", HEADER, b"KEEP-%d" % mid)
    s.flush()
    s.message_delivered("q", 1)
    s.message_delivered("q", 2)
    s.flush()
    first = list_segments(d)[0][1]
    for mid in range(4, 200):
        t = s.message_published(mid, ["churn"], "", "", HEADER, b"y" * 200)
        s.flush()
        wait_durable(s, t)
        s.message_removed("churn", mid)
    s.close()
    assert s.stats()["compactions"] > 0
    assert not first.exists()
    rec = recover_once(d)
    assert [(m.message_id, m.body, m.delivered) for m in rec.messages["q"]] == [
        (1, b"KEEP-1", True),
        (2, b"KEEP-2", True),
        (3, b"KEEP-3", False),
    ]
    assert rec.corrupt_records == 0


def test_compaction_drops_a_live_message_damaged_on_disk(
    tmp_path: Path, compaction_reads: str
) -> None:
    d = tmp_path / "data"
    s, _ = reopen(d, fsync="never", segment_bytes=8 * 1024)
    s.queue_declared(QueueRecord("q", False, {}))
    s.queue_declared(QueueRecord("churn", False, {}))
    t = s.message_published(1, ["q"], "", "", HEADER, b"DAMAGED-LATER")
    s.message_published(2, ["q"], "", "", HEADER, b"INTACT")
    s.flush()
    wait_durable(s, t)
    first = list_segments(d)[0][1]
    data = bytearray(first.read_bytes())
    data[data.find(b"DAMAGED-LATER")] ^= 0xFF
    first.write_bytes(bytes(data))
    for mid in range(3, 200):
        t = s.message_published(mid, ["churn"], "", "", HEADER, b"y" * 200)
        s.flush()
        wait_durable(s, t)
        s.message_removed("churn", mid)
    s.close()
    assert not first.exists()
    assert s.stats()["corrupt_records"] == 1
    rec = recover_once(d)
    assert [m.body for m in rec.messages["q"]] == [b"INTACT"]


# ------------------------------------------------------------- full disk, I/O errors


class FullDisk:
    """os.write that fails with ENOSPC for the store's files while ``full`` is set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
        self.full = False
        self.partial_first = False
        self.failures = 0
        self._dir = str(directory.resolve())
        self._real = os.write
        monkeypatch.setattr(os, "write", self)

    def __call__(self, fd: int, data: bytes | memoryview) -> int:
        if self.full:
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                target = ""
            if target.startswith(self._dir):
                if self.partial_first and self.failures == 0:
                    self.failures += 1
                    return self._real(fd, bytes(data)[: len(data) // 2])
                self.failures += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._real(fd, data)


def test_disk_full_keeps_records_pending_and_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "data"
    s, _ = reopen(d)
    durable: list[int] = []
    s.on_durable = durable.append
    s.queue_declared(QueueRecord("q", False, {}))
    t0 = s.message_published(1, ["q"], "", "", HEADER, b"before")
    s.flush()
    wait_for(lambda: durable == [t0])
    head = list_segments(d)[-1][1]
    size_before = head.stat().st_size

    disk = FullDisk(monkeypatch, d)
    disk.full = True
    disk.partial_first = True  # half the batch gets written, then ENOSPC
    t1 = s.message_published(2, ["q"], "", "", HEADER, b"during" * 100)
    s.flush()
    wait_for(lambda: s.disk_full)
    assert head.stat().st_size == size_before  # the partial write was cut off again
    t2 = s.message_published(3, ["q"], "", "", HEADER, b"queued")
    s.flush()
    wait_for(lambda: disk.failures >= 2)  # it retried (every second) and failed again
    assert durable == [t0] and s.disk_full

    snapshot = tmp_path / "crash-copy"  # a crash now recovers a clean log
    shutil.copytree(d, snapshot, ignore=shutil.ignore_patterns("LOCK"))
    crashed = recover_once(snapshot)
    assert ids(crashed, "q") == [1]
    assert (crashed.corrupt_records, crashed.truncated_bytes) == (0, 0)

    disk.full = False
    wait_for(lambda: durable[-1:] == [t2], timeout=15)
    assert durable == [t0, t1, t2] and not s.disk_full
    s.close()
    rec = recover_once(d)
    assert [m.body for m in rec.messages["q"]] == [b"before", b"during" * 100, b"queued"]


def test_an_fsync_error_fails_the_store_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    s, _ = reopen(tmp_path / "data")
    durable: list[int] = []
    fatal: list[BaseException] = []
    s.on_durable = durable.append
    s.on_fatal = fatal.append

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fdatasync", broken)
    s.queue_declared(QueueRecord("q", False, {}))
    s.message_published(1, ["q"], "", "", HEADER, b"x")
    s.flush()
    wait_for(lambda: bool(fatal))
    assert isinstance(fatal[0], OSError) and fatal[0].errno == errno.EIO
    assert durable == []
    assert any(r.levelname == "CRITICAL" for r in caplog.records)
    with pytest.raises(StoreFailed):
        s.message_published(2, ["q"], "", "", HEADER, b"y")
    with pytest.raises(StoreFailed):
        s.flush()
    s.close()
    s.close()


# ------------------------------------------------------------------- recovery speed


@pytest.mark.slow
def test_recovery_time_of_many_small_messages(tmp_path: Path) -> None:
    """Reports the time; CI runs 100k, AMQPD_STORE_RECOVERY_COUNT=1000000 for the 1 M figure."""
    count = int(os.environ.get("AMQPD_STORE_RECOVERY_COUNT", "100000"))
    d = tmp_path / "data"
    s, _ = reopen(d, fsync="never")
    s.queue_declared(QueueRecord("q", False, {}))
    body = b"m" * 100
    for i in range(1, count + 1):
        s.message_published(i, ["q"], "", "q", HEADER, body)
        if i % 1000 == 0:
            s.flush()
    s.close()
    s, rec = reopen(d)
    s.close()
    print(f"\nrecovered {count} messages ({dir_bytes(d) // 1024} KiB) in {rec.seconds:.2f}s")
    assert len(rec.messages["q"]) == count
    assert rec.messages["q"][-1].message_id == count
    assert rec.messages["q"][-1].body == body
