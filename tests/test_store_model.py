"""A stateful model test of DurableStore (hypothesis) against a plain in-memory model.

Random sequences of declare / publish / deliver / ack / purge / delete queue / flush / idle
ticks / restart / crash, on real files with small segments (so rotations and compactions happen
all the time). After every restart and crash the recovered queues and messages (ids, bodies,
delivered flags) must equal the model exactly: what was handed to the store before a clean
close, or before the last flush when it crashed (a crash at a write boundary: what was not
flushed is gone, nothing comes back that was acked, purged or deleted). After every step the
bytes rewritten by reclaim must stay within ``REWRITE_FACTOR`` times the bytes appended (plus
the allowance: one segment and what the store found at start).

The default run is bounded (a few seconds); ``-m slow`` runs many more, longer sequences.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from amqpd.store import DurableStore, QueueRecord
from amqpd.store import log as store_log
from amqpd.store.reclaim import REWRITE_FACTOR

HEADER = b"\x00<\x00\x00\x00\x00\x00\x00\x00\x00\x00d\x90\x00\x00\x02"
QUEUES = ("a", "b", "c")
SEGMENT = 4096  # the smallest the store accepts: a rotation every few messages
RATIO = 0.9  # compact segments up to 90% live: many compactions (the budget still holds)

# model: message id -> (body, {queue: delivered})
Model = dict[int, tuple[bytes, dict[str, bool]]]


def _copy(model: Model) -> Model:
    return {mid: (body, dict(held)) for mid, (body, held) in model.items()}


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="amqpd-model-")) / "data"
        self.store = DurableStore(
            self.dir, fsync="never", segment_bytes=SEGMENT, compact_ratio=RATIO
        )
        self.store.recover()
        self.queues: set[str] = set()
        self.msgs: Model = {}
        self.next_id = 1
        # operations not yet handed to the store (a crash loses them), and the model then
        self.buffer: list[tuple[str, tuple[Any, ...]]] = []
        self.flushed_queues: set[str] = set()
        self.flushed_msgs: Model = {}

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir.parent, ignore_errors=True)

    # ------------------------------------------------------------------ operations

    def _do(self, method: str, *args: Any) -> None:
        self.buffer.append((method, args))

    def _held(self, queue: str) -> list[int]:
        return sorted(mid for mid, (_, held) in self.msgs.items() if queue in held)

    @rule(queue=st.sampled_from(QUEUES))
    def declare(self, queue: str) -> None:
        self.queues.add(queue)
        self._do("queue_declared", QueueRecord(queue, False, {"x-n": len(queue)}))

    @precondition(lambda self: self.queues)
    @rule(
        data=st.data(),
        size=st.one_of(st.integers(0, 64), st.integers(500, 1500)),
        copies=st.integers(1, 8),
    )
    def publish(self, data: st.DataObject, size: int, copies: int) -> None:
        queues = data.draw(
            st.lists(st.sampled_from(sorted(self.queues)), min_size=1, max_size=3, unique=True)
        )
        for _ in range(copies):
            mid = self.next_id
            self.next_id += 1
            body = (b"%d:" % mid + b"x" * size)[: max(size, 1)]
            self.msgs[mid] = (body, dict.fromkeys(queues, False))
            self._do("message_published", mid, list(queues), "ex", "rk", HEADER, body)

    @precondition(lambda self: self.queues)
    @rule(data=st.data(), keep=st.lists(st.booleans(), min_size=4, max_size=12))
    def churn(self, data: st.DataObject, keep: list[bool]) -> None:
        """A burst of ~700-byte messages of which some are acked at once: partly live segments."""
        queue = data.draw(st.sampled_from(sorted(self.queues)))
        burst = []
        for _ in keep:
            mid = self.next_id
            self.next_id += 1
            body = b"%d:" % mid + b"c" * 700
            self.msgs[mid] = (body, {queue: False})
            self._do("message_published", mid, [queue], "", queue, HEADER, body)
            burst.append(mid)
        self._settle()  # written before acked (else the store never writes them at all)
        for mid, kept in zip(burst, keep, strict=True):
            if not kept:
                self._remove(queue, mid)
        self._deliver(queue, data.draw(st.integers(0, len(keep))))

    @precondition(lambda self: self.msgs)
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        """A few messages of a queue go out (queues deliver in id order)."""
        queue = data.draw(st.sampled_from(sorted(self.queues)))
        self._deliver(queue, data.draw(st.integers(1, 4)))

    def _deliver(self, queue: str, count: int) -> None:
        """The queue's ``count`` lowest undelivered messages go out, lowest id first."""
        waiting = [m for m in self._held(queue) if not self.msgs[m][1][queue]]
        for mid in waiting[:count]:
            self.msgs[mid][1][queue] = True
            self._do("message_delivered", queue, mid)

    @precondition(lambda self: self.msgs)
    @rule(data=st.data(), many=st.integers(0, 3))
    def ack(self, data: st.DataObject, many: int) -> None:
        mid = data.draw(st.sampled_from(sorted(self.msgs)))
        targets = [mid] if many else [m for m in sorted(self.msgs) if m <= mid]
        for m in targets:
            for queue in list(self.msgs[m][1]):
                self._remove(queue, m)

    def _remove(self, queue: str, mid: int) -> None:
        held = self.msgs[mid][1]
        del held[queue]
        if not held:
            del self.msgs[mid]
        self._do("message_removed", queue, mid)

    @precondition(lambda self: self.queues)
    @rule(data=st.data(), now=st.integers(0, 2))
    def purge(self, data: st.DataObject, now: int) -> None:
        if now:
            return  # (rarer than the other steps)
        queue = data.draw(st.sampled_from(sorted(self.queues)))
        for mid in self._held(queue):
            held = self.msgs[mid][1]
            del held[queue]
            if not held:
                del self.msgs[mid]
        self._do("queue_purged", queue)

    @precondition(lambda self: self.queues)
    @rule(data=st.data(), now=st.integers(0, 2))
    def delete_queue(self, data: st.DataObject, now: int) -> None:
        if now:
            return  # (rarer than the other steps)
        queue = data.draw(st.sampled_from(sorted(self.queues)))
        self.queues.discard(queue)
        for mid in self._held(queue):
            held = self.msgs[mid][1]
            del held[queue]
            if not held:
                del self.msgs[mid]
        self._do("queue_deleted", queue)

    @rule()
    def flush(self) -> None:
        """Hand everything to the store (one write round)."""
        for method, args in self.buffer:
            getattr(self.store, method)(*args)
        self.buffer.clear()
        self.store.flush()
        self.flushed_queues = set(self.queues)
        self.flushed_msgs = _copy(self.msgs)

    def _settle(self) -> None:
        """Flush and wait until the writer has written it all."""
        self.flush()
        deadline = time.monotonic() + 10
        while int(self.store.stats()["durable_ticket"]) < self.store.ticket:
            assert time.monotonic() < deadline, self.store.stats()
            time.sleep(0.001)

    @rule()
    def idle_tick(self) -> None:
        """Let the writer catch up and run its idle reclaim (head retirement, compaction)."""
        self._settle()
        time.sleep(0.03)

    # ---------------------------------------------------------- restart and crash

    def _reopen_and_check(self) -> None:
        self.store = DurableStore(
            self.dir, fsync="never", segment_bytes=SEGMENT, compact_ratio=RATIO
        )
        rec = self.store.recover()
        assert rec.corrupt_records == 0 and rec.truncated_bytes == 0
        assert sorted(q.name for q in rec.queues) == sorted(self.queues)
        for q in rec.queues:
            assert q.arguments == {"x-n": len(q.name)}
        expected = {
            queue: [(mid, self.msgs[mid][0], self.msgs[mid][1][queue]) for mid in self._held(queue)]
            for queue in self.queues
        }
        got = {
            queue: [(m.message_id, m.body, m.delivered) for m in rec.messages.get(queue, [])]
            for queue in self.queues
        }
        assert got == expected
        assert set(rec.messages) <= self.queues  # nothing of a deleted queue comes back
        assert rec.next_message_id > max(self.msgs, default=0)

    @rule(now=st.integers(0, 2))
    def restart(self, now: int) -> None:
        """A clean close: everything appended is written, then recovered exactly."""
        if now:
            return  # (restarts are rarer than the other steps, so segments fill up)
        self.flush()
        self.store.close()
        self._reopen_and_check()

    @rule(now=st.integers(0, 2))
    def crash(self, now: int) -> None:
        """The process dies between write rounds: what was never flushed is lost."""
        if now:
            return
        self.buffer.clear()
        self.queues = set(self.flushed_queues)
        self.msgs = _copy(self.flushed_msgs)
        self.store.close()  # writes what the store was handed: exactly the flushed rounds
        self._reopen_and_check()

    # ---------------------------------------------------------------------- invariants

    @invariant()
    def rewrites_stay_proportional_to_appends(self) -> None:
        s = self.store.stats()
        budget = REWRITE_FACTOR * int(s["appended_bytes"]) + int(s["rewrite_allowance"])
        assert int(s["rewritten_bytes"]) <= budget, s
        assert not s["failed"]


@pytest.fixture
def quick_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer's idle reclaim after 10 ms instead of 250, so idle ticks are cheap."""
    monkeypatch.setattr(store_log, "IDLE_RECLAIM_DELAY", 0.01)


def test_store_matches_its_model(quick_idle: None) -> None:
    run_state_machine_as_test(
        StoreMachine,
        settings=settings(
            max_examples=6,
            stateful_step_count=150,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        ),
    )


@pytest.mark.slow
def test_store_matches_its_model_long(quick_idle: None) -> None:
    run_state_machine_as_test(
        StoreMachine,
        settings=settings(
            max_examples=200,
            stateful_step_count=200,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
