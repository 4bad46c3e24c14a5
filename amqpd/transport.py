"""What a connection's protocol state needs from the outside: a byte transport and a clock.

`Transport` is the subset of asyncio.Transport the connection calls; `Clock` the subset of the
event loop (time and timers). The real ones satisfy these protocols as they are; tests pass
fakes that record what was written and fire timers when told, so no socket or loop is needed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...

    def is_closing(self) -> bool: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def get_extra_info(self, name: str, default: Any = None) -> Any: ...


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def time(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer: ...

    def call_soon(self, callback: Callable[[], object]) -> Any: ...
