"""Reading messages back from the log in batches (the paged-queue path): records with mixed
names in a row, multi-queue records, and a damaged record that loses only itself."""

from __future__ import annotations

import os
import time
from pathlib import Path

from amqpd.store import DurableStore, QueueRecord, ReadBackFailed
from amqpd.store.index import OFF_MASK

HEADER = b"\x00<\x00\x00\x00\x00\x00\x00\x00\x00\x00d\x90\x00\x00\x02"


def test_a_batch_of_records_with_changing_names_reads_back_exactly(tmp_path: Path) -> None:
    store = DurableStore(tmp_path / "data", fsync="never")
    store.recover()
    for name in ("a", "b", "ccc"):
        store.queue_declared(QueueRecord(name, False, {}))
    names = [("", "a"), ("", "a"), ("x", "a"), ("x", "b"), ("", "ab"), ("", "ab"), ("xy", "")]
    queue_sets = [["a"], ["a"], ["a", "b"], ["b"], ["ccc"], ["a"], ["a", "b", "ccc"]]
    expected = {}
    for mid in range(1, 141):
        exchange, routing_key = names[mid % len(names)]
        queues = queue_sets[(mid // 3) % len(queue_sets)]
        body = os.urandom(mid % 40)
        header = HEADER + bytes([mid % 256])
        store.message_published(mid, queues, exchange, routing_key, header, body)
        expected[mid] = (exchange, routing_key, header, body)
    store.flush()
    deadline = time.monotonic() + 5
    while store.stats()["durable_ticket"] < store.ticket and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.reader is not None
    # damage the body of one record on disk: only that message is lost
    packed = store._index.loc.get(77)
    offset, size = (packed >> 32) & OFF_MASK, packed & OFF_MASK
    path = store._index.segs[packed >> 64].path
    with open(path, "r+b") as handle:
        handle.seek(offset + size - 1)
        last = handle.read(1)
        handle.seek(offset + size - 1)
        handle.write(bytes([last[0] ^ 0xFF]) if last else b"")
    store.reader.close()  # forget what was read ahead before the damage
    got = store.reader.read_messages(range(1, 141))
    for mid, found in zip(range(1, 141), got, strict=True):
        if mid == 77:
            assert isinstance(found, ReadBackFailed)
        else:
            assert found == expected[mid], mid
    assert store.reader.read_messages([999]) and isinstance(
        store.reader.read_messages([999])[0], ReadBackFailed
    )
    store.close()
