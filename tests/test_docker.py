"""The container's entrypoint and health check, run outside a container (no Docker here).

The entrypoint is started as the image starts it (`amqpd-entrypoint [flags]`), with a private
data directory and ready file; clients are pika. The Dockerfile itself is linted by hadolint
in .ci/run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest
import yaml
from packaging.requirements import Requirement

from tests.broker_process import clean_env

REPO = Path(__file__).resolve().parent.parent
ENTRYPOINT = REPO / "docker" / "entrypoint.py"
HEALTHCHECK = REPO / "docker" / "healthcheck.py"


class Container:
    """docker/entrypoint.py as a child process, its stderr collected line by line."""

    def __init__(self, tmp: Path, *args: str, **env: str) -> None:
        self.ready_file = tmp / "amqpd.ready"
        self.env = {k: v for k, v in clean_env().items() if not k.startswith("RABBIT")}
        self.env.update(AMQPD_READY_FILE=str(self.ready_file), AMQPD_DATA_DIR=str(tmp / "data"))
        self.env.update(AMQPD_BIND="127.0.0.1", AMQPD_PORT="0", AMQPD_FSYNC="never")
        self.env.update(env)
        self.proc = subprocess.Popen(
            [sys.executable, str(ENTRYPOINT), *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: teardown ends amqpd with it
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, fragment: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(fragment in line for line in self.lines):
            assert time.monotonic() < deadline, f"no {fragment!r} in:\n" + "\n".join(self.lines)
            assert self.proc.poll() is None or fragment in "\n".join(self.lines)
            time.sleep(0.01)

    @property
    def port(self) -> int:
        self.wait_for("Server startup complete")
        return int(self.ready_file.read_text().split()[1])

    def url(self, user: str, password: str, vhost: str = "%2F") -> str:
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}/{vhost}"

    def healthcheck(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(HEALTHCHECK), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        return self.proc.wait(timeout)


@pytest.fixture
def containers(tmp_path: Path) -> Iterator[list[Container]]:
    started: list[Container] = []
    yield started
    for container in started:
        # SIGTERM reaches amqpd through the entrypoint; SIGKILL of the entrypoint alone would
        # leave amqpd running. Whatever is left of the group is killed after.
        try:
            container.stop()
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(container.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        container.proc.wait()


def start(containers: list[Container], tmp: Path, *args: str, **env: str) -> Container:
    container = Container(tmp, *args, **env)
    containers.append(container)
    return container


def can_log_in(url: str) -> bool:
    try:
        pika.BlockingConnection(pika.URLParameters(url)).close()
    except pika.exceptions.ProbableAccessDeniedError:
        return False  # vhost refused
    except pika.exceptions.ProbableAuthenticationError:
        return False  # login refused
    return True


def test_rabbitmq_default_variables(containers: list[Container], tmp_path: Path) -> None:
    container = start(
        containers,
        tmp_path,
        RABBITMQ_DEFAULT_USER="app",
        RABBITMQ_DEFAULT_PASS="s3cret",
        RABBITMQ_DEFAULT_VHOST="orders",
    )
    conn = pika.BlockingConnection(pika.URLParameters(container.url("app", "s3cret", "orders")))
    conn.channel().queue_declare("entrypoint-q")
    conn.close()
    assert not can_log_in(container.url("guest", "guest"))  # the default user replaces guest
    assert not can_log_in(container.url("app", "s3cret", "%2F"))  # as RabbitMQ: only "orders"
    assert container.healthcheck().returncode == 0
    assert container.stop() == 0
    assert not container.ready_file.exists()
    result = container.healthcheck()
    assert result.returncode == 1 and "not ready yet" in result.stderr


def test_testcontainers_settings(containers: list[Container], tmp_path: Path) -> None:
    """What testcontainers' RabbitMqContainer sets: all four variables, the port included."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    container = start(
        containers,
        tmp_path,
        RABBITMQ_NODE_PORT=str(port),
        RABBITMQ_DEFAULT_USER="guest",
        RABBITMQ_DEFAULT_PASS="guest",
        RABBITMQ_DEFAULT_VHOST="/",
    )
    assert container.port == port
    assert can_log_in(container.url("guest", "guest"))


def test_default_variables_merge_into_a_config_file(
    containers: list[Container], tmp_path: Path
) -> None:
    config = tmp_path / "amqpd.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "vhosts": ["/", "metrics"],
                "users": [{"name": "monitor", "password": "look", "permissions": {"metrics": {}}}],
            }
        )
    )
    container = start(containers, tmp_path, "--config", str(config), RABBITMQ_DEFAULT_USER="app")
    assert can_log_in(container.url("app", "guest"))  # RABBITMQ_DEFAULT_PASS unset: guest
    assert can_log_in(container.url("monitor", "look", "metrics"))
    assert not can_log_in(container.url("app", "guest", "metrics"))
    assert config.read_text().count("app") == 0  # the user's file is left alone


def test_plain_amqpd_variables_and_flags(containers: list[Container], tmp_path: Path) -> None:
    """Without RABBITMQ_* variables the flags go to amqpd untouched; the health check
    follows the port amqpd really bound (here a flag overriding AMQPD_PORT)."""
    container = start(containers, tmp_path, "--port", "0", "--log-level", "warning")
    assert can_log_in(container.url("guest", "guest"))
    assert container.healthcheck().returncode == 0
    host, port = container.ready_file.read_text().split()
    assert host == "127.0.0.1" and int(port) == container.port
    assert container.healthcheck("127.0.0.1", port).returncode == 0
    assert container.stop(signal.SIGINT) == 0


def test_healthcheck_fails_on_a_silent_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        ready = tmp_path / "ready"
        ready.write_text(f"127.0.0.1 {port}\n")
        env = {**os.environ, "AMQPD_READY_FILE": str(ready)}
        result = subprocess.run(
            [sys.executable, str(HEALTHCHECK)], env=env, capture_output=True, text=True, timeout=30
        )
    assert result.returncode == 1 and "unhealthy" in result.stderr


def test_sigterm_during_recovery_stops_at_once(containers: list[Container], tmp_path: Path) -> None:
    """Many vhosts make recovery take seconds; a SIGTERM in the middle ends it promptly."""
    vhosts = ["/"] + [f"v{i}" for i in range(400)]
    config = tmp_path / "many.yaml"
    config.write_text(yaml.safe_dump({"vhosts": vhosts}))
    container = start(containers, tmp_path, "--config", str(config))
    container.wait_for("vhost v3: recovered")
    sent = time.monotonic()
    code = container.stop(timeout=10)
    took = time.monotonic() - sent
    assert code == 128 + signal.SIGTERM
    assert not any("amqpd ready" in line for line in container.lines)  # it was still recovering
    assert took < 2.0, took


def test_bad_config_file_is_reported(containers: list[Container], tmp_path: Path) -> None:
    container = start(
        containers, tmp_path, RABBITMQ_DEFAULT_USER="app", AMQPD_CONFIG=str(tmp_path / "missing")
    )
    assert container.proc.wait(30) == 2
    container.wait_for("amqpd-entrypoint: cannot read config file")


def test_constraints_pin_every_dependency() -> None:
    """docker/constraints.txt pins each runtime dependency, within pyproject's ranges."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (REPO / "docker" / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.lower()] = version
    for dependency in project["dependencies"]:
        requirement = Requirement(dependency)
        assert requirement.name.lower() in pins, requirement.name
        assert requirement.specifier.contains(pins[requirement.name.lower()]), requirement


def test_dockerfile_installs_dependencies_before_copying_the_source() -> None:
    lines = (REPO / "docker" / "Dockerfile").read_text().splitlines()
    final = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    pinned = next(i for i, line in enumerate(lines) if "-r /etc/amqpd/constraints.txt" in line)
    amqpd = next(i for i, line in enumerate(lines) if line.startswith("COPY --from=build"))
    assert final < pinned < amqpd  # in the final stage, dependencies before amqpd's wheel
    assert 'ENTRYPOINT ["amqpd-entrypoint"]' in lines
    build_copies = [line for line in lines[:final] if line.startswith("COPY ")]
    assert any("setup.py" in line for line in build_copies)  # the accelerator gets built


def test_plain_amqpd_sigterm_during_recovery_is_prompt(tmp_path: Path) -> None:
    """Without the entrypoint (not PID 1) amqpd has SIGTERM's default action until its own
    handlers are installed after recovery: it ends at once, which the log survives."""
    config = tmp_path / "many.yaml"
    config.write_text(yaml.safe_dump({"vhosts": ["/"] + [f"v{i}" for i in range(400)]}))
    env = clean_env()
    args = ["--config", str(config), "--port", "0", "--data-dir", str(tmp_path / "data")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "amqpd", *args], env=env, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    try:
        for line in proc.stderr:
            assert "amqpd ready" not in line
            if "vhost v3: recovered" in line:
                break
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == -signal.SIGTERM
        assert time.monotonic() - sent < 2.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
