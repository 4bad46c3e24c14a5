"""ShiftedClock (amqpd/testclock.py) without an event loop: a fake loop records call_later."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from amqpd.testclock import ShiftedClock, ShiftedLoopClock


class FakeHandle:
    def __init__(self, delay: float, callback: Callable[[], Any]) -> None:
        self.delay = delay
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    def __init__(self) -> None:
        self.handles: list[FakeHandle] = []
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], Any]) -> FakeHandle:
        handle = FakeHandle(delay, callback)
        self.handles.append(handle)
        return handle


def make() -> tuple[ShiftedClock, FakeLoop]:
    loop = FakeLoop()
    return ShiftedClock(loop), loop  # type: ignore[arg-type]


def test_advance_runs_due_timers_in_deadline_order_and_cancels_their_loop_timers() -> None:
    clock, loop = make()
    ran: list[str] = []
    start = clock.now()
    clock.call_at(start + 3_600_000, lambda: ran.append("hour"))
    clock.call_at(start + 60_000, lambda: ran.append("minute"))
    clock.call_at(start + 7_200_000, lambda: ran.append("two hours"))
    assert [round(h.delay) for h in loop.handles] == [3600, 60, 7200]
    assert clock.advance(3601) == 2
    assert ran == ["minute", "hour"]
    assert [h.cancelled for h in loop.handles] == [True, True, False]
    assert clock.now() - start >= 3_601_000
    assert clock.offset == 3601
    assert clock.pending() == 1


def test_a_timer_runs_once_whoever_fires_it() -> None:
    clock, loop = make()
    ran: list[int] = []
    clock.call_at(clock.now() + 1000, lambda: ran.append(1))
    loop.handles[0].callback()  # the loop got there first
    assert clock.advance(5) == 0
    assert ran == [1]


def test_cancelled_timers_never_run() -> None:
    clock, loop = make()
    ran: list[int] = []
    timer = clock.call_at(clock.now() + 1000, lambda: ran.append(1))
    timer.cancel()
    assert loop.handles[0].cancelled
    loop.handles[0].callback()
    clock.advance(5)
    assert ran == []


def test_timers_set_after_an_advance_count_from_shifted_time() -> None:
    clock, loop = make()
    clock.advance(100)
    clock.call_at(clock.now() + 2000, lambda: None)
    assert loop.handles[0].delay == pytest.approx(2.0, abs=0.05)


def test_only_forward() -> None:
    clock, _loop = make()
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.advance(float("nan"))


def test_loop_clock_moves_connection_time_and_fires_due_timers() -> None:
    loop = FakeLoop()
    clock = ShiftedLoopClock(loop)  # type: ignore[arg-type]
    ran: list[str] = []
    clock.call_later(30, lambda: ran.append("heartbeat"))
    clock.call_later(10, lambda: ran.append("handshake"))
    assert clock.time() == 1000.0
    assert clock.advance(20) == 1
    assert ran == ["handshake"]
    assert clock.time() == 1020.0
    loop.now += 10  # real time passes as well
    assert clock.advance(0) == 1
    assert ran == ["handshake", "heartbeat"]
    assert [h.cancelled for h in loop.handles] == [True, True]
