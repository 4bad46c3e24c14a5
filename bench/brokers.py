"""Start the brokers `scripts/compare` measures: a fresh amqpd, a local RabbitMQ, LavinMQ.

`AmqpdProcess` runs `python -m amqpd --port 0 --data-dir TMP` (with extra environment,
e.g. AMQPD_PURE_PYTHON=1, if given) and learns the port from its ready line.
`LavinMQProcess` runs a given LavinMQ binary on free ports with a private data directory
and waits until it answers AMQP. `ensure_rabbitmq(port)` returns at once if something
accepts AMQP on the port; otherwise it starts a detached node bench@localhost on that port
and waits until a handshake succeeds. A missing rabbitmq-server raises `RabbitMQMissing`
unless the caller passed install=True (then apt-get installs it). The RabbitMQ node is left
running (it is slow to start and may be shared).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

READY = re.compile(r"listening on \[?([0-9a-fA-F:.]+)\]?:(\d+)")


class AmqpdProcess:
    """One amqpd child with a private data directory; a context manager."""

    def __init__(self, *extra_args: str, env: dict[str, str] | None = None) -> None:
        self.extra_args = list(extra_args)
        self.env = env or {}
        self.port = 0
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen[str] | None = None
        self.data_dir = ""
        self.log: list[str] = []

    @property
    def uri(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.port}/%2F"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> AmqpdProcess:
        self.data_dir = tempfile.mkdtemp(prefix="bench-amqpd-")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "amqpd",
                "--port",
                "0",
                "--data-dir",
                self.data_dir,
                *self.extra_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **self.env},
        )
        ready = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stderr is not None
            for line in self.proc.stderr:
                self.log.append(line.rstrip("\n"))
                match = READY.search(line)
                if match and not ready.is_set():
                    self.host, self.port = match.group(1), int(match.group(2))
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout) or not self.port:
            self.stop()
            raise RuntimeError("amqpd did not start:\n" + "\n".join(self.log[-20:]))
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> AmqpdProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def lavinmq_command(binary: str, extra_args: list[str]) -> list[str]:
    """argv of a LavinMQ on 127.0.0.1 with the placeholders `bench startup` fills in:
    {datadir}, {port} (AMQP) and {distport} (used for its HTTP port)."""
    return [
        binary,
        "--data-dir",
        "{datadir}",
        "--bind",
        "127.0.0.1",
        "--amqp-port",
        "{port}",
        "--http-port",
        "{distport}",
        *extra_args,
    ]


class LavinMQProcess:
    """One LavinMQ child (binary given) on free ports with a private data directory."""

    def __init__(self, binary: str, *extra_args: str) -> None:
        self.binary = binary
        self.extra_args = list(extra_args)
        self.host = "127.0.0.1"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.data_dir = ""
        self._log: Any = None

    @property
    def uri(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.port}/%2F"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> LavinMQProcess:
        self.data_dir = tempfile.mkdtemp(prefix="bench-lavinmq-")
        self.port = free_port(self.host)
        fill = {"{datadir}": self.data_dir, "{port}": str(self.port)}
        fill["{distport}"] = str(free_port(self.host))
        argv = [fill.get(a, a) for a in lavinmq_command(self.binary, self.extra_args)]
        self._log = open(os.path.join(self.data_dir, "bench.log"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if amqp_answers(self.host, self.port, timeout=1.0):
                return self
            time.sleep(0.2)
        self._log.flush()
        with open(os.path.join(self.data_dir, "bench.log"), "rb") as log:
            tail = log.read()[-2000:].decode(errors="replace")
        self.stop()
        raise RuntimeError(f"LavinMQ did not start ({' '.join(argv)}):\n{tail}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> LavinMQProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def amqp_answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """True if the port accepts TCP and answers the AMQP protocol header with a frame."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            return sock.recv(1)[:1] == b"\x01"
    except OSError:
        return False


def rabbitmq_command(port: int, node: str, dist_port: int) -> tuple[list[str], dict[str, str]]:
    """argv and environment that start a RabbitMQ node on these ports (not detached)."""
    env = dict(
        os.environ,
        RABBITMQ_NODE_PORT=str(port),
        RABBITMQ_NODENAME=node,
        RABBITMQ_DIST_PORT=str(dist_port),
    )
    direct = "/usr/lib/rabbitmq/bin/rabbitmq-server"
    if os.geteuid() == 0 and shutil.which("setpriv") and os.path.exists(direct):
        # Debian's wrapper switches to the rabbitmq user with `su`, whose PAM session resets
        # the open-files limit to 1024 (~830 connections). setpriv keeps our raised limit.
        env["HOME"] = "/var/lib/rabbitmq"
        argv = ["setpriv", "--reuid=rabbitmq", "--regid=rabbitmq", "--init-groups", direct]
        return argv, env
    return ["rabbitmq-server"], env


class RabbitMQMissing(Exception):
    """Nothing answers on the port and rabbitmq-server is not installed."""


def install_rabbitmq(log: Any = sys.stderr) -> None:
    """apt-get install rabbitmq-server (with apt-get update if the first try fails)."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "rabbitmq-server"]
    print("compare: installing rabbitmq-server with apt-get", file=log, flush=True)
    if subprocess.run(cmd, env=env, stdout=log, stderr=log).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, stdout=log, stderr=log, check=True)
        subprocess.run(cmd, env=env, stdout=log, stderr=log, check=True)


def ensure_rabbitmq(
    port: int,
    host: str = "127.0.0.1",
    node: str = "bench@localhost",
    timeout: float = 180.0,
    log: Any = sys.stderr,
    install: bool = False,
) -> None:
    """Make sure a RabbitMQ (or any AMQP broker) answers on host:port."""
    if amqp_answers(host, port):
        return
    if shutil.which("rabbitmq-server") is None:
        if not install:
            raise RabbitMQMissing(
                f"nothing answers AMQP on {host}:{port} and rabbitmq-server is not installed: "
                "start a RabbitMQ there, install it (apt-get install rabbitmq-server), or pass "
                "--install-rabbitmq to let compare install it with apt-get"
            )
        install_rabbitmq(log)
    argv, env = rabbitmq_command(port, node, port + 20000)
    print(f"compare: starting RabbitMQ node {node} on port {port}", file=log, flush=True)
    # The default soft limit of 1024 descriptors caps RabbitMQ at ~830 connections.
    subprocess.run(
        ["sh", "-c", 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', "sh", *argv, "-detached"],
        env=env,
        cwd="/var/lib/rabbitmq" if os.path.isdir("/var/lib/rabbitmq") else None,
        stdout=log,
        stderr=log,
        check=False,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if amqp_answers(host, port):
            time.sleep(1.0)  # the listener opens a moment before boot finishes
            return
        time.sleep(0.5)
    raise RuntimeError(f"RabbitMQ did not come up on {host}:{port} within {timeout:.0f} s")
