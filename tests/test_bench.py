"""Smoke tests of the load generator (the top-level `bench` package) and its scripts.

Each run case runs `python -m bench ... --json` for a second or two against the session
broker (amqpd, or the broker named by AMQPD_TEST_URL) and checks the summary: every
message sent arrived exactly once, confirms match, rates are nonzero. No timing asserts.
The rest are regression tests of the command lines: help texts, the scripts' choice of
interpreter, and compare never installing RabbitMQ unasked.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.brokers import RabbitMQMissing, ensure_rabbitmq
from tests.conftest import BrokerAddress

ROOT = Path(__file__).resolve().parent.parent


def bench(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout, done.stderr
    return dict(json.loads(done.stdout))


def uri(broker: BrokerAddress) -> str:
    return f"amqp://guest:guest@{broker.host}:{broker.port}/%2F"


@pytest.mark.parametrize(
    "args",
    [
        ("-x1", "-y1", "-a", "-C", "3000"),
        ("-x2", "-y2", "-s", "200", "--multi-ack-every", "10", "-q", "50", "-C", "1500"),
        ("-x1", "-y1", "-f", "persistent", "-c", "100", "-s", "100", "-z", "1", "-r", "2000"),
        ("-x1", "--fanout", "3", "-a", "-z", "1", "-r", "2000"),
        ("-x1", "-y1", "-a", "-s", "300000", "-C", "20"),  # bodies span several frames
    ],
    ids=["auto-ack", "multi-ack", "persistent-confirms", "fanout", "large"],
)
def test_run_delivers_everything_once(broker: BrokerAddress, args: tuple[str, ...]) -> None:
    summary = bench("run", "--uri", uri(broker), *args)
    assert summary["errors"] == []
    queues = summary["config"]["fanout"] or 1
    assert summary["sent"] > 0
    assert summary["expected"] == summary["sent"] * queues
    assert summary["received"] == summary["expected"]
    assert summary["lost"] == 0
    assert summary["duplicated"] == 0
    assert summary["unexpected"] == 0
    assert summary["sent_rate"] > 0 and summary["receive_rate"] > 0
    assert summary["latency_ms"]["p99"] is not None
    if summary["config"]["confirm"]:
        assert summary["confirmed"] == summary["sent"]
        assert summary["nacked"] == 0
        assert summary["confirm_latency_ms"]["p50"] is not None


def test_count_mode_sends_exactly_count(broker: BrokerAddress) -> None:
    summary = bench("run", "--uri", uri(broker), "-x3", "-y1", "-a", "-C", "700")
    assert summary["sent"] == 2100
    assert summary["received"] == 2100
    assert summary["lost"] == 0


def test_idle_connections_all_stay_open(broker: BrokerAddress) -> None:
    summary = bench("idle", "--uri", uri(broker), "--connections", "30", "--hold", "0.2")
    assert summary["errors"] == []
    assert summary["opened"] == 30
    assert summary["alive_after_hold"] == 30
    assert summary["open_seconds"] > 0


def test_startup_reaches_a_handshake() -> None:
    summary = bench("startup", "--runs", "1", "--settle", "0.2")
    assert summary["errors"] == []
    assert summary["startup_seconds_median"] > 0
    assert summary["idle_rss_mib_median"] is None or summary["idle_rss_mib_median"] > 0


def test_bad_options_are_refused() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", "-s", "8"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "at least 16 bytes" in done.stderr


def test_amqpd_does_not_ship_the_bench() -> None:
    assert not (ROOT / "amqpd" / "bench").exists()
    done = subprocess.run(
        [sys.executable, "-c", "import amqpd.bench"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and "No module named 'amqpd.bench'" in done.stderr


@pytest.mark.parametrize("command", ["run", "idle", "startup"])
def test_subcommand_help_shows_the_default_uri(command: str) -> None:
    # The default URI's "%2F" used to reach argparse's %-formatting and crash --help.
    done = subprocess.run(
        [sys.executable, "-m", "bench", command, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: bench {command}")
    if command != "startup":
        assert "%2F" in done.stdout


@pytest.mark.parametrize("script", ["bench", "compare", "recovery_bench"])
def test_scripts_find_the_project_venv(script: str) -> None:
    # Run as the README says, the shebang picks whatever python3 is on PATH, which may lack
    # pamqp; -S stands for such an interpreter (no site-packages at all).
    venv_python = ROOT / ".venv" / "bin" / "python"
    if not venv_python.exists():
        pytest.skip("no .venv in the repository (the README's setup creates it)")
    env = {k: v for k, v in os.environ.items() if k != "BENCH_VENV_REEXEC"}
    done = subprocess.run(
        [sys.executable, "-S", str(ROOT / "scripts" / script), "--help"],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")


def test_compare_help_describes_the_workloads() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "compare"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "issue" not in done.stdout
    assert "--install-rabbitmq" in done.stdout
    for line in ("1  transient, 1p/1c, auto-ack, 16 B", "bench idle --connections 1000"):
        assert line in done.stdout


def test_compare_does_not_install_rabbitmq_unasked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("PATH", str(tmp_path))  # no rabbitmq-server (and no apt-get) on PATH
    with pytest.raises(RabbitMQMissing, match="--install-rabbitmq"):
        ensure_rabbitmq(port, "127.0.0.1", timeout=1.0)


def test_compare_includes_a_lavinmq_binary_and_the_pure_python_amqpd(
    broker: BrokerAddress, tmp_path: Path
) -> None:
    """--lavinmq-bin PATH starts that binary with LavinMQ's flags (a stand-in here: amqpd
    on the ports it is given) and measures it as a peer; --pure adds the pure-Python amqpd."""
    calls = tmp_path / "calls"
    fake = tmp_path / "lavinmq"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {calls}\n'
        'while [ $# -gt 0 ]; do case "$1" in\n'
        '  --data-dir) dir=$2; shift;; --amqp-port) port=$2; shift;; esac; shift; done\n'
        f'exec {sys.executable} -m amqpd --port "$port" --data-dir "$dir/amqpd"\n'
    )
    fake.chmod(0o755)
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "compare"),
            "-w",
            "1",
            "-z",
            "1",
            "--pure",
            "--rabbit-port",  # the session broker stands in for RabbitMQ
            str(broker.port),
            "--rabbit-host",
            broker.host,
            "--lavinmq-bin",
            str(fake),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    header = next(line for line in done.stdout.splitlines() if line.startswith("#"))
    assert header.split() == [
        "#", "metric", "amqpd", "amqpd", "pure", "RabbitMQ", "LavinMQ",
        "amqpd/best", "amqpd", "pure/best",
    ]  # fmt: skip
    row = next(line for line in done.stdout.splitlines() if "received msg/s" in line)
    assert "-" not in row.split()[3:8], done.stdout  # every broker gave a number
    assert "problems" not in done.stdout, done.stdout
    flags = calls.read_text().split()
    assert flags[flags.index("--amqp-port") + 1].isdigit()
    assert {"--data-dir", "--bind", "--http-port"} <= set(flags)
