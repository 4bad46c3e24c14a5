"""`bench startup`: time from exec of a broker command to a completed AMQP handshake.

Each run execs the command in a new session, then either reads the bound port from a
"listening on HOST:PORT" line on its stderr (amqpd with --port 0) or, when the command
contains {port}, substitutes a free port and polls it. The clock stops when a client has
finished the handshake (connection.open-ok and channel.open-ok). After `settle` seconds
the idle RSS of the process listening on the port is read; then the session gets SIGTERM
(SIGKILL after 20 s). {datadir} is replaced by a fresh temporary directory per run and
{distport} by a second free port (for RabbitMQ's distribution listener).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from .client import BrokerUri, connect
from .procinfo import pid_listening_on, rss_mib
from .workers import run_loop

READY = re.compile(r"listening on \[?([0-9a-fA-F:.]+)\]?:(\d+)")


def default_command() -> list[str]:
    """amqpd on an OS-chosen port with a fresh data directory."""
    return [sys.executable, "-m", "amqpd", "--port", "0", "--data-dir", "{datadir}"]


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _handshake_once(uri: BrokerUri) -> bool:
    try:
        client = await asyncio.wait_for(connect(uri), 5.0)
    except (OSError, TimeoutError, Exception):
        return False
    await client.close()
    return True


async def _wait_handshake(uri: BrokerUri, deadline: float, proc: subprocess.Popen[Any]) -> bool:
    while time.perf_counter() < deadline and proc.poll() is None:
        if await _handshake_once(uri):
            return True
        await asyncio.sleep(0.005)
    return False


def _stop(proc: subprocess.Popen[Any]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _one_run(
    command: list[str], timeout: float, settle: float, user: str, password: str
) -> dict[str, Any]:
    datadir = tempfile.mkdtemp(prefix="bench-startup-")
    port = free_port() if any("{port}" in c for c in command) else 0
    dist = free_port() if any("{distport}" in c for c in command) else 0
    argv = [
        c.replace("{datadir}", datadir)
        .replace("{port}", str(port))
        .replace("{distport}", str(dist))
        for c in command
    ]
    found: dict[str, Any] = {}
    seen_port = threading.Event()
    log_tail: list[str] = []
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )

    def read_log() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log_tail.append(line.rstrip("\n"))
            del log_tail[:-20]
            match = READY.search(line)
            if match and not seen_port.is_set():
                found.update(
                    log_seconds=time.perf_counter() - started,
                    host=match.group(1),
                    port=int(match.group(2)),
                )
                seen_port.set()
        seen_port.set()

    threading.Thread(target=read_log, daemon=True).start()
    result: dict[str, Any] = {"command": argv}
    try:
        deadline = started + timeout
        if not port:
            seen_port.wait(timeout)
            if "port" not in found:
                result["error"] = "no 'listening on HOST:PORT' line: " + " | ".join(log_tail)
                return result
            port = found["port"]
            result["log_seconds"] = round(found["log_seconds"], 4)
        host = found.get("host", "127.0.0.1")
        uri = BrokerUri(host, port, user, password, "/")
        ok: list[bool] = []

        async def main() -> None:
            ok.append(await _wait_handshake(uri, deadline, proc))

        run_loop(main())
        if not ok[0]:
            result["error"] = "no successful handshake: " + " | ".join(log_tail[-5:])
            return result
        result["handshake_seconds"] = round(time.perf_counter() - started, 4)
        time.sleep(settle)
        pid = pid_listening_on(port)
        result.update(port=port, pid=pid, idle_rss_mib=rss_mib(pid))
        return result
    finally:
        _stop(proc)
        shutil.rmtree(datadir, ignore_errors=True)


def measure_startup(
    command: list[str] | None,
    runs: int = 3,
    timeout: float = 60.0,
    settle: float = 1.0,
    user: str = "guest",
    password: str = "guest",
) -> dict[str, Any]:
    """Run the startup workload `runs` times; summary with medians and each run."""
    command = command or default_command()
    results = [_one_run(command, timeout, settle, user, password) for _ in range(runs)]
    good = [r for r in results if "handshake_seconds" in r]
    times = [r["handshake_seconds"] for r in good]
    rss = [r["idle_rss_mib"] for r in good if r.get("idle_rss_mib") is not None]
    return {
        "command": command,
        "runs": results,
        "startup_seconds_median": round(statistics.median(times), 4) if times else None,
        "startup_seconds_min": min(times) if times else None,
        "startup_seconds_max": max(times) if times else None,
        "idle_rss_mib_median": round(statistics.median(rss), 1) if rss else None,
        "errors": [r["error"] for r in results if "error" in r],
    }


def format_startup(summary: dict[str, Any]) -> str:
    """Human-readable lines for a `measure_startup` summary."""
    lines = [f"command: {' '.join(summary['command'])}"]
    for i, run in enumerate(summary["runs"], 1):
        if "error" in run:
            lines.append(f"  run {i}: ERROR {run['error']}")
            continue
        log = f", ready line {run['log_seconds']:.3f} s" if "log_seconds" in run else ""
        lines.append(
            f"  run {i}: handshake after {run['handshake_seconds']:.3f} s{log}, "
            f"idle RSS {run['idle_rss_mib']} MiB (pid {run['pid']})"
        )
    lines.append(
        f"startup median {summary['startup_seconds_median']} s "
        f"(min {summary['startup_seconds_min']}, max {summary['startup_seconds_max']});"
        f" idle RSS median {summary['idle_rss_mib_median']} MiB"
    )
    return "\n".join(lines)
