"""Node.js clients (amqplib, @cloudamqp/amqp-client) against the broker under test.

Runs tests/node/smoke.mjs: connect, channel, declare, publish with confirms, consume, and
close with publishes in flight, for each client. Needs `node` and the npm packages pinned in
tests/node/package-lock.json (`.ci/run` installs them with `npm ci` when node is present);
skipped, saying which is missing, otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BrokerAddress

NODE_DIR = Path(__file__).parent / "node"
PACKAGES = ("amqplib", "@cloudamqp/amqp-client")


def test_node_clients_smoke(broker: BrokerAddress, unique: str) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js smoke test skipped: `node` is not installed")
    missing = [name for name in PACKAGES if not (NODE_DIR / "node_modules" / name).is_dir()]
    if missing:
        pytest.skip(
            f"Node.js smoke test skipped: npm packages {missing} are not installed "
            "(run `npm ci --prefix tests/node`)"
        )
    result = subprocess.run(
        [node, "smoke.mjs", broker.url, unique],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert result.stdout.split("\n")[:2] == ["ok amqplib", "ok amqp-client"], output
