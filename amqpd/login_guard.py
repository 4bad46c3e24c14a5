"""Failed logins per peer address: a small delay for repeated failures, a bounded log.

`LoginGuard.refused(host, now)` records a failed login from `host` and returns a `Verdict`:
how long to wait before answering it (0 for the first `FREE_FAILURES` in `WINDOW` seconds,
then `DELAY`) and whether to log it (the first `LOGGED_FAILURES` per window; the next one is
logged with a note that more will not be). `succeeded(host)` forgets the host. At most
`MAX_HOSTS` hosts are remembered (the oldest are forgotten first), so memory stays bounded
however many addresses try. Sans-IO: the caller supplies the time.
"""

from __future__ import annotations

from typing import NamedTuple

FREE_FAILURES = 5
WINDOW = 60.0
DELAY = 1.0
LOGGED_FAILURES = 20
MAX_HOSTS = 10_000


class Verdict(NamedTuple):
    delay: float  # seconds to wait before refusing
    log: bool  # log this refusal
    last_logged: bool  # the last one logged in this window: say that the rest are not


class LoginGuard:
    __slots__ = ("_failures",)

    def __init__(self) -> None:
        self._failures: dict[str, tuple[float, int]] = {}  # host -> (window start, count)

    def refused(self, host: str, now: float) -> Verdict:
        failures = self._failures
        start, count = failures.pop(host, (now, 0))
        if now - start > WINDOW:
            start, count = now, 0
        count += 1
        failures[host] = (start, count)  # re-inserted: the dict stays in order of last failure
        if len(failures) > MAX_HOSTS:
            del failures[next(iter(failures))]
        return Verdict(
            delay=DELAY if count > FREE_FAILURES else 0.0,
            log=count <= LOGGED_FAILURES,
            last_logged=count == LOGGED_FAILURES,
        )

    def succeeded(self, host: str) -> None:
        self._failures.pop(host, None)

    def __len__(self) -> int:
        return len(self._failures)
