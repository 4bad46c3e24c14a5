"""The real `amqpd` process: config errors, port clashes, the ready line, signals, overrides.

Every test starts its own daemon (AMQPD_TEST_URL does not apply: these test amqpd itself)
with a private data directory and a clean environment, and talks to it with pika.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest

from tests.broker_process import READY_PATTERN, clean_env

REPO = Path(__file__).resolve().parent.parent
SHUTDOWN_TEXT = "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"


class Daemon:
    """`python -m amqpd ARGS` with stderr collected; ready() waits for the ready line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "amqpd", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env if env is not None else clean_env(),
            cwd=REPO,
        )
        self.lines: list[str] = []
        self.host = ""
        self.port = 0
        self._ready = threading.Event()
        self._eof = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            match = READY_PATTERN.search(line)
            if match and "amqpd ready" in line and not self._ready.is_set():
                self.host, self.port = match.group(1), int(match.group(2))
                self._ready.set()
        self._ready.set()
        self._eof.set()

    def ready(self, timeout: float = 15.0) -> Daemon:
        self._ready.wait(timeout)
        assert self.port, "no ready line; stderr:\n" + "\n".join(self.lines)
        return self

    def wait(self, timeout: float = 15.0) -> int:
        code = self.proc.wait(timeout)
        self._eof.wait(5)  # let the reader drain stderr
        return code

    def params(self) -> pika.ConnectionParameters:
        return pika.ConnectionParameters(
            host=self.host,
            port=self.port,
            credentials=pika.PlainCredentials("guest", "guest"),
            connection_attempts=1,
        )

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[Daemon]]:
    """Collects daemons a test starts and kills any still running at the end."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.close()


@pytest.fixture
def start(daemons: list[Daemon], tmp_path: Path):  # type: ignore[no-untyped-def]
    def start(*args: str, env: dict[str, str] | None = None, data_dir: bool = True) -> Daemon:
        if data_dir:
            args = ("--data-dir", str(tmp_path / f"data{len(daemons)}"), *args)
        daemon = Daemon(*args, env=env)
        daemons.append(daemon)
        return daemon

    return start


@pytest.fixture
def held_port() -> Iterator[int]:
    """A 127.0.0.1 port that is bound and listening for the whole test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_one_line_config_error(daemon: Daemon, *fragments: str) -> None:
    assert daemon.wait() == 2
    text = "\n".join(daemon.lines)
    assert "Traceback" not in text
    assert len(daemon.lines) == 1, text
    assert daemon.lines[0].startswith("amqpd: invalid config: "), text
    for fragment in fragments:
        assert fragment in daemon.lines[0]


# --- configuration errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("port: [1\n", "YAML syntax error"),
        ("portt: 1\n", "unknown key 'portt'"),
        ("port: '1'\n", "port must be an integer"),
        ("frame_max: 100\n", "frame_max must be between 4096"),
        ("users: [{name: a, password: b, permissions: {/: {read: '('}}}]\n", "not a valid regex"),
    ],
)
def test_invalid_config_file_exits_2_with_one_line(
    start, tmp_path: Path, text: str, fragment: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert_one_line_config_error(start("--config", str(path)), fragment, str(path))


def test_unreadable_config_file_exits_2(start, tmp_path: Path) -> None:
    assert_one_line_config_error(
        start("--config", str(tmp_path / "missing.yaml")), "cannot read config file"
    )
    assert_one_line_config_error(start("--config", str(tmp_path)), "cannot read config file")


def test_invalid_environment_and_flags_exit_2(start) -> None:
    assert_one_line_config_error(
        start(env=clean_env(AMQPD_CHANNEL_MAX="0")), "channel_max", "AMQPD_CHANNEL_MAX"
    )
    assert_one_line_config_error(start("--port", "http"), "port must be an integer")
    assert_one_line_config_error(start("--log-level", "chatty"), "log_level")
    assert_one_line_config_error(start("--no-such-flag"), "unrecognized arguments")


def test_taken_port_exits_nonzero_with_one_clear_line(start, held_port: int) -> None:
    daemon = start("--bind", "127.0.0.1", "--port", str(held_port))
    assert daemon.wait() != 0
    text = "\n".join(daemon.lines)
    assert "Traceback" not in text
    assert "amqpd ready" not in text
    errors = [line for line in daemon.lines if " ERROR " in line or " CRITICAL " in line]
    assert len(errors) == 1, text
    assert str(held_port) in errors[0]


# --- start, ready line, connect ------------------------------------------------------------------


def test_port_0_reports_the_bound_port_and_accepts_clients_at_once(start) -> None:
    daemon = start("--port", "0").ready()
    assert daemon.port != 0
    assert daemon.host == "127.0.0.1"
    ready = [line for line in daemon.lines if "amqpd ready: listening on" in line]
    assert len(ready) == 1 and " INFO " in ready[0]
    connection = pika.BlockingConnection(daemon.params())
    try:
        channel = connection.channel()
        assert channel.is_open
    finally:
        connection.close()
    assert daemon.proc.poll() is None


def test_help_and_version_exit_0() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "amqpd", "--help"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=30,
        check=False,
    )
    assert result.returncode == 0 and "--data-dir" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "amqpd", "--version"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=30,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.startswith("amqpd ")


# --- graceful stop -------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_closes_clients_with_connection_forced_and_exits_0(start, signum: int) -> None:
    daemon = start("--port", "0").ready()
    connection = pika.BlockingConnection(daemon.params())
    connection.channel()
    daemon.proc.send_signal(signum)
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        for _ in range(100):  # at most ~10 s
            connection.process_data_events(time_limit=0.1)
    assert info.value.reply_code == 320
    assert info.value.reply_text == SHUTDOWN_TEXT
    assert daemon.wait() == 0
    assert "Traceback" not in "\n".join(daemon.lines)


def test_sigterm_without_clients_exits_0(start) -> None:
    daemon = start("--port", "0").ready()
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.wait() == 0


# --- overrides -----------------------------------------------------------------------------------


def test_amqpd_port_environment_sets_the_port(start) -> None:
    port = free_port()
    daemon = start(env=clean_env(AMQPD_PORT=str(port))).ready()
    assert daemon.port == port


def test_port_flag_beats_amqpd_port(start, held_port: int) -> None:
    # If the environment won, the daemon would fail on the held port.
    daemon = start("--port", "0", env=clean_env(AMQPD_PORT=str(held_port))).ready()
    assert daemon.port not in (0, held_port)


def test_environment_beats_config_file(start, tmp_path: Path, held_port: int) -> None:
    path = tmp_path / "amqpd.yaml"
    path.write_text(f"port: {held_port}\nlog_level: error\n")
    daemon = start(
        env=clean_env(AMQPD_CONFIG=str(path), AMQPD_PORT="0", AMQPD_LOG_LEVEL="info")
    ).ready()
    assert daemon.port not in (0, held_port)


def test_config_file_sets_port_and_bind(start, tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "amqpd.yaml"
    path.write_text(f"bind: 127.0.0.1\nport: {port}\n")
    daemon = start("--config", str(path)).ready()
    assert (daemon.host, daemon.port) == ("127.0.0.1", port)


def test_bind_flag_beats_amqpd_bind(start) -> None:
    daemon = start("--port", "0", "--bind", "127.0.0.1", env=clean_env(AMQPD_BIND="::1")).ready()
    assert daemon.host == "127.0.0.1"


def test_log_level_flag_beats_environment(start) -> None:
    # At "error" the INFO ready line would be suppressed; the flag must win.
    daemon = start("--port", "0", "--log-level", "info", env=clean_env(AMQPD_LOG_LEVEL="error"))
    daemon.ready()


def test_debug_log_level_is_accepted(start) -> None:
    daemon = start("--port", "0", env=clean_env(AMQPD_LOG_LEVEL="DEBUG")).ready()
    assert daemon.port != 0


def test_configured_user_can_log_in_and_guest_cannot(start, tmp_path: Path) -> None:
    path = tmp_path / "amqpd.yaml"
    path.write_text("users:\n  - name: alice\n    password: wonder\n    permissions: {/: {}}\n")
    daemon = start("--config", str(path), "--port", "0").ready()
    params = daemon.params()
    params.credentials = pika.PlainCredentials("alice", "wonder")
    pika.BlockingConnection(params).close()
    params.credentials = pika.PlainCredentials("guest", "guest")
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(params)


# --- the Docker health check script --------------------------------------------------------------


def test_docker_healthcheck_passes_against_the_daemon(start) -> None:
    daemon = start("--port", "0").ready()
    script = str(REPO / "docker" / "healthcheck.py")
    ok = subprocess.run(
        [sys.executable, script, daemon.host, str(daemon.port)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.wait() == 0
    down = subprocess.run(
        [sys.executable, script, daemon.host, str(daemon.port)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert down.returncode == 1 and "unhealthy" in down.stderr
