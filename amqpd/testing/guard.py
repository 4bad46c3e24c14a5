"""Run a test broker so that it never outlives the process that started it.

`python -m amqpd.testing.guard [--exec PROGRAM] -- ARGS...` is what `amqpd.testing.Broker`
runs. Its stdin is a pipe whose only writer is the parent: when the parent exits in any way
(normal exit, Ctrl-C, SIGKILL, a crash) the kernel closes that pipe, the guard reads EOF and
stops the broker with SIGTERM, then SIGKILL after `GRACE` seconds. Without `--exec` amqpd runs
in this very process (no extra interpreter start); with `--exec` PROGRAM runs as a child
(e.g. another amqpd install) and SIGTERM/SIGINT sent to the guard are passed on to it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

GRACE = 10.0


def _wait_for_eof(fd: int = 0) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass


def _self_destruct() -> None:
    """Parent gone: stop this process gracefully, and for sure after GRACE seconds."""
    deadline = threading.Timer(GRACE, os._exit, args=(1,))
    deadline.daemon = True  # a clean stop within GRACE exits normally, without waiting for it
    deadline.start()
    os.kill(os.getpid(), signal.SIGTERM)


def _watch_parent(on_gone: Callable[[], None]) -> None:
    def watch() -> None:
        _wait_for_eof()
        on_gone()

    threading.Thread(target=watch, name="amqpd-guard", daemon=True).start()


def run_in_process(args: list[str]) -> int:
    from amqpd.cli import main

    _watch_parent(_self_destruct)
    return main(args)


def run_child(program: str, args: list[str]) -> int:
    child = subprocess.Popen([program, *args], stdin=subprocess.DEVNULL)

    def forward(signum: int, _frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)

    def parent_gone() -> None:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(GRACE)
            except subprocess.TimeoutExpired:
                child.kill()

    _watch_parent(parent_gone)
    return child.wait()


def main(argv: list[str]) -> int:
    program: str | None = None
    if argv[:1] == ["--exec"] and len(argv) >= 2:
        program, argv = argv[1], argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if program is None:
        return run_in_process(argv)
    return run_child(program, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
