"""`bench run --generator node`: the run done by one Node.js amqplib process (bench/node).

Issue 13's method: one producer connection and one consumer connection (one channel per
queue) in one `node` process, as fast as amqplib goes. The Python generator's overhead per
message is larger than some brokers' (LavinMQ), which hid their speed; this one does not.
`run_node(cfg)` returns the same summary keys as the Python runner (sent/received rates,
latency percentiles, lost, duplicated, errors), the process is killed at the run's limit.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .settings import RunConfig

SCRIPT = Path(__file__).resolve().parent / "node" / "loadgen.mjs"
AMQPLIB = Path(__file__).resolve().parent.parent / "tests" / "node" / "node_modules" / "amqplib"


def node_arguments(cfg: RunConfig) -> dict[str, Any]:
    """The JSON settings loadgen.mjs reads (its argv[2])."""
    return {
        "uri": cfg.uri,
        "queue": cfg.queue or f"bench.node.{cfg.run_id or secrets.token_hex(4)}",
        "size": cfg.size,
        "duration": cfg.duration,
        "rate": cfg.rate,
        "confirm": cfg.confirm,
        "persistent": cfg.persistent,
        "auto_ack": cfg.auto_ack,
        "multi_ack_every": cfg.multi_ack_every,
        "prefetch": cfg.prefetch,
        "fanout": cfg.fanout,
        "drain_timeout": cfg.drain_timeout,
        "drain_max": cfg.drain_max,
        "time_limit": cfg.limit,
    }


def run_node(cfg: RunConfig) -> dict[str, Any]:
    """Run loadgen.mjs once; the summary dict (with "errors" when it failed)."""
    summary: dict[str, Any] = {
        "config": {k: v for k, v in asdict(cfg).items() if k != "run_id"},
        "errors": [],
        "publish_seconds": 0.0,
        "drain_seconds": 0.0,
        "sent": 0,
        "sent_rate": 0.0,
        "confirmed": 0,
        "nacked": 0,
        "confirm_rate": 0.0,
        "received": 0,
        "receive_rate": 0.0,
        "lost": None,
        "duplicated": None,
        "unexpected": 0,
        "foreign": 0,
        "returned": 0,
        "blocked": False,
        "latency_ms": None,
        "confirm_latency_ms": None,
    }
    node = shutil.which("node")
    if node is None or not AMQPLIB.is_dir():
        summary["errors"].append("needs node and `npm ci --prefix tests/node`")
        return summary
    try:
        done = subprocess.run(
            [node, str(SCRIPT), json.dumps(node_arguments(cfg))],
            capture_output=True,
            text=True,
            timeout=cfg.limit + 15,
        )
    except subprocess.TimeoutExpired:
        summary["errors"].append(f"node generator killed after {cfg.limit + 15:g} s")
        return summary
    lines = done.stdout.strip().splitlines()
    try:
        result = dict(json.loads(lines[-1]))
    except (IndexError, json.JSONDecodeError):
        summary["errors"].append(f"node exited {done.returncode}: {done.stderr.strip()[-500:]}")
        return summary
    summary.update(result)
    return summary
