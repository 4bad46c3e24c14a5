"""A private amqpd process per test module, for tests that read the broker's log.

`own_broker` starts one with extra flags/env and yields the `BrokerProcess` (its `log_lines`
hold every line it wrote so far). `log_since(proc, mark)` is the log written after `mark`
(a count taken from `len(proc.log_lines)`), optionally once a line it expects is there.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.broker_process import BrokerProcess


@contextmanager
def own_broker(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(data_dir, *args, env=env).start()
    try:
        yield proc
    finally:
        proc.stop()


def log_since(
    proc: BrokerProcess, mark: int, settle: float = 0.2, until: str | None = None
) -> list[str]:
    """Log lines written after `mark`, once the broker has had `settle` seconds to write;
    with `until`, first wait (up to 10 s) for a line after `mark` that contains it."""
    if until is not None:
        deadline = time.monotonic() + 10.0
        while not any(until in line for line in proc.log_lines[mark:]):
            if time.monotonic() > deadline:
                break  # the caller's assertions say what is missing
            time.sleep(0.02)
    time.sleep(settle)
    return proc.log_lines[mark:]
