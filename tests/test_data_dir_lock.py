"""Two amqpd on one data directory: the second says who holds it and what to do instead."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from amqpd.testing import Broker
from tests.broker_process import clean_env


def test_second_broker_names_the_holder_and_the_flag(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Broker(data_dir=data) as first:
        env = clean_env()
        result = subprocess.run(
            [sys.executable, "-m", "amqpd", "--port", "0", "--data-dir", str(data)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1
        assert (
            f"is in use by process {first.pid}; stop it or give this amqpd another "
            "--data-dir" in result.stderr
        ), result.stderr
    # The lock goes with the process: the same directory opens again at once.
    with Broker(data_dir=data) as again:
        assert again.running
