"""`Broker`: one amqpd subprocess for tests and scripts, started, restarted and always reaped.

`Broker(**settings)` writes a config file into a private work directory, runs amqpd on a free
port (`port=0`) through `amqpd.testing.guard` (so the broker dies with this process, however it
ends), waits for the ready line and exposes the address (`.url`, `.host`, `.port`, `.vhost`).
`stop()` is a graceful SIGTERM, `kill()` is SIGKILL of the broker's process group (a crash),
`restart()` brings it back on the same port and data directory. Every stderr line is kept in
`.log_lines`. Use it as a context manager; an atexit hook kills whatever is still running.
Test controls (through the management API): `.clock`, `.faults`, `.connections()`,
`.wait_for_queue()`, see `amqpd.testing.controls`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from amqpd.testing.controls import Clock, Controls, Faults
from amqpd.testing.endpoint import Endpoint
from amqpd.testing.management import ManagementClient
from amqpd.testing.settings import BrokerSettings

READY_PATTERN = re.compile(r"amqpd ready: listening on \[?([0-9a-fA-F:.]+)\]?:(\d+)")
MANAGEMENT_PATTERN = re.compile(r"management API on (http://\S+?)/?$")
MANAGEMENT_FAILED = "cannot listen for the management API"
MANAGEMENT_WAIT = 5.0
MAX_LOG_LINES = 100_000
# The one AMQPD_* variable a started broker inherits (the others would change its settings):
# the codec choice, so an AMQPD_PURE_PYTHON=1 test run tests the pure-Python broker.
INHERITED = ("AMQPD_PURE_PYTHON",)


class BrokerStartError(RuntimeError):
    """The broker exited or stayed silent instead of logging its ready line."""


class Broker:
    """An amqpd child process; see the module docstring. Not thread-safe."""

    def __init__(
        self,
        settings: BrokerSettings | None = None,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        port: int = 0,
        bind: str = "127.0.0.1",
        program: str | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 15.0,
        name: str = "amqpd",
        **setting_fields: Any,
    ) -> None:
        if settings is None:
            settings = BrokerSettings(**setting_fields)
        elif setting_fields:
            raise TypeError("pass either settings= or setting keywords, not both")
        self.settings = settings
        self.name = name
        self.bind = bind
        self.port = port
        self.program = program
        self.env = dict(env or {})
        self.startup_timeout = startup_timeout
        self._workdir = Path(tempfile.mkdtemp(prefix="amqpd-test-"))
        self._owns_data = data_dir is None
        self.data_dir = self._workdir / "data" if data_dir is None else Path(data_dir).absolute()
        self.config_path = self._workdir / "amqpd.yaml"
        self.config_path.write_text(settings.to_yaml(), encoding="utf-8")
        self.user, self.password = settings.first_login()
        self.log_lines: list[str] = []
        self.ready_seconds: float | None = None
        self.returncode: int | None = None  # of the last process that exited
        self._management_url: str | None = None
        self._management_from: int | None = None  # log line to look for its URL from
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._closed = False
        self._controls: Controls | None = None

    # -- address ------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.bind, self.bind)

    @property
    def vhost(self) -> str:
        return self.settings.vhosts[0]

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.host, self.port, self.vhost, self.user, self.password)

    @property
    def url(self) -> str:
        return self.endpoint.url

    @property
    def management_url(self) -> str | None:
        """`http://HOST:PORT` of the broker's management API, None if it has none.

        Read from the log on first use (the API starts just after AMQP is ready, so start()
        does not wait for it)."""
        if self._management_url is None and self._management_from is not None:
            self._management_url = self._await_management(self._management_from)
            self._management_from = None
        return self._management_url

    def url_for(
        self, vhost: str | None = None, user: str | None = None, password: str | None = None
    ) -> str:
        """The URL of another vhost and/or login on this broker."""
        endpoint = self.endpoint
        if vhost is not None:
            endpoint = endpoint.with_vhost(vhost)
        if user is not None:
            endpoint = endpoint.with_user(user, password if password is not None else "")
        return endpoint.url

    # -- test controls ------------------------------------------------------------------------

    @property
    def controls(self) -> Controls:
        """Clock, faults and wait helpers over this broker's management API."""
        url = self.management_url
        if url is None:
            raise RuntimeError(f"{self.name} has no management API: test controls need one")
        controls = self._controls
        if controls is None or controls.base_url != url:
            client = ManagementClient(url, self.user, self.password)
            controls = self._controls = Controls(client, self.vhost)
        return controls

    @property
    def clock(self) -> Clock:
        """`advance(seconds, connections=False)` moves broker time forward; `now()`."""
        return self.controls.clock

    @property
    def faults(self) -> Faults:
        return self.controls.faults

    def connections(self) -> list[dict[str, Any]]:
        """The client connections, as `GET /api/connections` lists them."""
        return self.controls.connections()

    def wait_for_queue(
        self,
        name: str,
        vhost: str | None = None,
        messages: int | None = None,
        consumers: int | None = None,
        timeout: float = 5.0,
    ) -> dict[str, Any]:
        """Wait until queue `name` exists with the given counts; see Controls.wait_for_queue."""
        return self.controls.wait_for_queue(name, vhost, messages, consumers, timeout)

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def closed(self) -> bool:
        """True once close() ran: the broker cannot be started again."""
        return self._closed

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        guard = [sys.executable, "-m", "amqpd.testing.guard"]
        if self.program is not None:
            guard += ["--exec", self.program]
        return [
            *guard,
            "--",
            "--config",
            str(self.config_path),
            "--bind",
            self.bind,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]

    def start(self) -> Broker:
        """Start the process and wait for its ready line (raises BrokerStartError)."""
        if self._closed:
            raise RuntimeError("this Broker was closed")
        if self.running:
            return self
        env = {k: v for k, v in os.environ.items() if k in INHERITED or not k.startswith("AMQPD_")}
        env.update(self.env)
        started = time.monotonic()
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.PIPE,  # our end stays open: EOF tells the guard we are gone
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,  # its own process group: Ctrl-C is ours to handle
        )
        self.ready_seconds = None
        atexit.register(self._kill_at_exit)
        first_line = len(self.log_lines)
        self.log_lines.append(f"--- {self.name}: pid {self._proc.pid} started ---")
        ready = threading.Event()
        found: list[int] = []
        assert self._proc.stderr is not None
        self._reader = threading.Thread(
            target=self._read_log,
            args=(self._proc.stderr, ready, found),
            name=f"{self.name}-log",
            daemon=True,
        )
        self._reader.start()
        ready.wait(self.startup_timeout)
        if not found or not self.running:
            code = self._terminate(signal.SIGKILL, 5.0)
            why = f"exited with code {code}" if code != -signal.SIGKILL else "timed out"
            raise BrokerStartError(
                f"{self.name} did not become ready ({why}); its log:\n" + self.log_text()
            )
        self.port = found[0]
        self.ready_seconds = time.monotonic() - started
        self._management_url = None
        self._management_from = first_line if self.settings.expects_management() else None
        return self

    def _await_management(self, since: int) -> str | None:
        """The management API's URL, logged just after the ready line by an amqpd that has
        one (its port key is in our config); None for one without or that could not bind."""
        deadline = time.monotonic() + MANAGEMENT_WAIT
        while time.monotonic() < deadline and self.running:
            for line in self.log_lines[since:]:
                match = MANAGEMENT_PATTERN.search(line)
                if match:
                    return match.group(1)
                if MANAGEMENT_FAILED in line or "amqpd.server: shutting down" in line:
                    return None
            time.sleep(0.005)
        return None

    def _read_log(self, stream: IO[str], ready: threading.Event, found: list[int]) -> None:
        lines = self.log_lines
        for line in stream:
            if len(lines) < MAX_LOG_LINES:
                lines.append(line.rstrip("\n"))
            if not ready.is_set():
                match = READY_PATTERN.search(line)
                if match:
                    found.append(int(match.group(2)))
                    ready.set()
        ready.set()

    def stop(self, timeout: float = 10.0) -> int | None:
        """Graceful stop (SIGTERM, clients get 320 CONNECTION_FORCED); SIGKILL after `timeout`.

        Returns the exit code (None if it was not running).
        """
        return self._terminate(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """SIGKILL the broker's whole process group, as a crash would; returns the exit code."""
        return self._terminate(signal.SIGKILL, 5.0)

    def restart(self, kill: bool = False) -> Broker:
        """Stop (or kill) and start again on the same port and data directory."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start()

    def _terminate(self, signum: int, timeout: float) -> int | None:
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                if signum == signal.SIGKILL:
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.send_signal(signum)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._reader is not None:
            self._reader.join(2.0)
        for stream in (proc.stdin, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self.returncode = proc.returncode
        self.log_lines.append(f"--- {self.name}: pid {proc.pid} exited with {proc.returncode} ---")
        atexit.unregister(self._kill_at_exit)
        self._proc = None
        return self.returncode

    def _kill_at_exit(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        """Stop the broker and delete the private work directory (not a given data_dir).

        A broker on a private data directory is killed (its data is deleted anyway, and a
        graceful stop waits up to 3 s for clients that do not answer `connection.close`);
        one on a caller's `data_dir` is stopped gracefully so the directory is left clean.
        """
        if self._closed:
            return
        if self._owns_data:
            self.kill()
        else:
            self.stop()
        self._closed = True
        shutil.rmtree(self._workdir, ignore_errors=True)

    # -- logs ---------------------------------------------------------------------------------

    def log_text(self, since: int = 0) -> str:
        """The broker's stderr from line `since` on (see `len(broker.log_lines)`)."""
        return "\n".join(self.log_lines[since:])

    def wait_for_log(self, fragment: str, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(fragment in line for line in self.log_lines):
                return True
            time.sleep(0.02)
        return False

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<Broker {self.name} {self.host}:{self.port} {state}>"
