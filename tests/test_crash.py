"""Crash test: kill -9 amqpd at random moments under confirmed persistent publishing.

Three publisher threads with confirms publish persistent messages with unique ids to a
durable queue; the broker is SIGKILLed at a random moment, restarted on the same data
directory, and the queue drained: every message whose confirm had arrived must be back (a
copy of an unconfirmed one is fine, one lost confirmed message is a failure), in publish
order per publisher. The default test is bounded; the `slow` one is deselected by the
pyproject addopts and runs with `-m slow`. `scripts/crash_soak` runs the same loop for as
long as asked.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pika
import pytest

from tests.broker_process import BrokerProcess, external_broker

pytestmark = pytest.mark.skipif(
    external_broker() is not None, reason="kills a private amqpd; AMQPD_TEST_URL is set"
)

QUEUE = "crash"
PERSISTENT = pika.BasicProperties(delivery_mode=2)
ROOT = Path(__file__).resolve().parent.parent


def connect(proc: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            proc.host, proc.port, credentials=pika.PlainCredentials("guest", "guest")
        )
    )


def publish_until_killed(
    proc: BrokerProcess, name: str, attempted: set[str], confirmed: list[str]
) -> None:
    seq = 0
    try:
        ch = connect(proc).channel()
        ch.confirm_delivery()
        while True:
            body = f"{name}:{seq:09d}"
            seq += 1
            attempted.add(body)
            ch.basic_publish("", QUEUE, body.encode(), PERSISTENT)
            confirmed.append(body)  # only once the broker's ack is in
    except Exception:
        return  # the broker is gone


def drain(proc: BrokerProcess) -> list[str]:
    conn = connect(proc)
    ch = conn.channel()
    total = ch.queue_declare(QUEUE, durable=True).method.message_count
    got: list[str] = []
    if total:
        for method, _props, body in ch.consume(QUEUE, auto_ack=True, inactivity_timeout=30):
            assert method is not None, f"drain stalled after {len(got)} of {total}"
            got.append(body.decode())
            if len(got) == total:
                break
        ch.cancel()
    conn.close()
    return got


def crash_loop(data_dir: Path, iterations: int, publishers: int, seed: int) -> list[str]:
    """Run the loop; returns a report line per iteration; asserts on any loss."""
    rng = random.Random(seed)
    attempted: set[str] = set()
    report = []
    procs: list[BrokerProcess] = []
    proc = BrokerProcess(data_dir).start()
    procs.append(proc)
    drain(proc)  # declares the queue
    try:
        for iteration in range(1, iterations + 1):
            confirmed: list[str] = []
            threads = [
                threading.Thread(
                    target=publish_until_killed,
                    args=(proc, f"i{iteration}p{p}", attempted, confirmed),
                    daemon=True,
                )
                for p in range(publishers)
            ]
            for thread in threads:
                thread.start()
            # The crash moment is random by design; a poll would defeat the purpose.
            threading.Event().wait(rng.uniform(0.4, 1.5))
            proc.kill()
            for thread in threads:
                thread.join(30)
                assert not thread.is_alive(), "a publisher hung after the broker was killed"
            proc = BrokerProcess(data_dir).start()  # fresh object: see BrokerProcess.start race
            procs.append(proc)
            recovered = drain(proc)
            seen = set(recovered)
            lost = set(confirmed) - seen
            unknown = seen - attempted
            report.append(
                f"seed={seed} iteration {iteration}: confirmed={len(confirmed)} "
                f"recovered={len(recovered)} lost={len(lost)} unknown={len(unknown)}"
            )
            assert confirmed, "no publish was confirmed before the kill: the test proved nothing"
            assert not lost, f"{report[-1]}; lost confirmed messages: {sorted(lost)[:10]}"
            assert not unknown, f"{report[-1]}; bodies never published: {sorted(unknown)[:10]}"
            for p in range(publishers):  # queue order = publish order, per publisher
                mine = [b for b in recovered if b.startswith(f"i{iteration}p{p}:")]
                assert mine == sorted(mine), f"{report[-1]}; publisher {p} out of order"
        assert proc.stop() == 0
    finally:
        for each in procs:
            each.kill()
    tracebacks = [line for each in procs for line in each.log_lines if "Traceback" in line]
    assert not tracebacks, tracebacks
    return report


def _seed() -> int:
    return int(os.environ.get("AMQPD_CRASH_SEED") or random.SystemRandom().randrange(2**32))


def test_confirmed_messages_survive_kill_9(tmp_path: Path) -> None:
    report = crash_loop(tmp_path / "data", iterations=5, publishers=3, seed=_seed())
    print("\n".join(report))


@pytest.mark.slow
def test_confirmed_messages_survive_kill_9_long(tmp_path: Path) -> None:
    report = crash_loop(tmp_path / "data", iterations=30, publishers=4, seed=_seed())
    print("\n".join(report))


def test_crash_soak_script_runs(tmp_path: Path) -> None:
    """scripts/crash_soak works: a short run prints per-iteration counts and passes."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "crash_soak"),
            "--iterations",
            "2",
            "--publishers",
            "2",
            "--min-run",
            "0.3",
            "--max-run",
            "0.6",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert sum(line.startswith("iteration ") and " lost=0 " in line for line in lines) == 2
    assert lines[-1].startswith("VERDICT: PASS")
