"""Start a real `amqpd` process for tests and find the port it bound.

`BrokerProcess` runs `python -m amqpd --port 0` with a private data directory, waits for
the ready log line (which names the bound address) and stops the process with SIGTERM.
Setting AMQPD_TEST_URL=host:port makes the shared fixtures use an already running broker
instead, so the same tests can be checked against a reference RabbitMQ.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

READY_PATTERN = re.compile(r"listening on \[?([0-9a-fA-F:.]+)\]?:(\d+)")
HTTP_PATTERN = re.compile(
    r"(management API|Prometheus metrics) on http://\[?([0-9a-fA-F:.]+)\]?:(\d+)"
)


class BrokerProcess:
    """One amqpd child process; use as a context manager or call start()/stop()."""

    def __init__(self, data_dir: Path, *extra_args: str, env: dict[str, str] | None = None):
        self.data_dir = Path(data_dir)
        self.extra_args = list(extra_args)
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.log_lines: list[str] = []
        self.http_ports: dict[str, int] = {}  # "management API" / "Prometheus metrics" -> port
        self._ready = threading.Event()

    def start(self, timeout: float = 15.0) -> BrokerProcess:
        args = [sys.executable, "-m", "amqpd", "--port", "0", "--data-dir", str(self.data_dir)]
        # Operator listeners on free ports: the fixed defaults may be taken on a test machine.
        args += ["--management-port", "0", "--prometheus-port", "0"]
        env = dict(os.environ)
        env.update(self.env or {})
        self._ready = (
            threading.Event()
        )  # a fresh one: the last process's reader may still set its own
        self.proc = subprocess.Popen(
            args + self.extra_args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        threading.Thread(target=self._read_log, args=(self.proc, self._ready), daemon=True).start()
        if not self._ready.wait(timeout):
            self.kill()
            raise RuntimeError("amqpd did not become ready:\n" + "\n".join(self.log_lines))
        return self

    def _read_log(self, proc: subprocess.Popen[str], ready: threading.Event) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.log_lines.append(line.rstrip("\n"))
            http = HTTP_PATTERN.search(line)
            if http:
                self.http_ports[http.group(1)] = int(http.group(3))
            match = READY_PATTERN.search(line)
            if match and not ready.is_set():
                self.host, self.port = match.group(1), int(match.group(2))
                ready.set()
        ready.set()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def wait_for_log(self, fragment: str, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(fragment in line for line in self.log_lines):
                return True
            time.sleep(0.02)
        return False

    def http_port(self, which: str = "management API", timeout: float = 15.0) -> int:
        """The port of the management API (or "Prometheus metrics") once it listens."""
        deadline = time.monotonic() + timeout
        while which not in self.http_ports:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {which} listener:\n" + "\n".join(self.log_lines))
            time.sleep(0.02)
        return self.http_ports[which]

    def __enter__(self) -> BrokerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def external_broker() -> tuple[str, int] | None:
    """The (host, port) named by AMQPD_TEST_URL, or None to start amqpd."""
    url = os.environ.get("AMQPD_TEST_URL")
    if not url:
        return None
    host, _, port = url.rpartition(":")
    return host or "127.0.0.1", int(port)


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without the AMQPD_* settings a developer may have set, plus `extra`.

    AMQPD_PURE_PYTHON is kept: it picks the codec, not a setting, and the pure-Python pass of
    .ci/run must start pure-Python brokers.
    """
    kept = ("AMQPD_PURE_PYTHON",)
    env = {k: v for k, v in os.environ.items() if k in kept or not k.startswith("AMQPD_")}
    env.update(extra)
    return env
