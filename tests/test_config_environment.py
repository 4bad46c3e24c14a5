"""A misspelled AMQPD_* variable is not silently ignored: amqpd logs a warning naming it."""

from __future__ import annotations

import subprocess
import sys

from amqpd.config import unknown_environment
from tests.broker_process import clean_env


def test_unknown_variables_are_named_with_a_suggestion() -> None:
    env = {
        "AMQPD_PROT": "5731",
        "AMQPD_PORT": "5672",
        "AMQPD_CONFIG": "x.yaml",
        "AMQPD_VHOSTS": "a,b",
        "AMQPD_ZZZ": "1",
        "HOME": "/root",
    }
    assert unknown_environment(env) == [
        "AMQPD_PROT is ignored: no such setting (did you mean AMQPD_PORT?)",
        "AMQPD_VHOSTS is ignored: vhosts can only be set in the config file",
        "AMQPD_ZZZ is ignored: no such setting",
    ]


def test_known_variables_give_no_warning() -> None:
    env = {"AMQPD_FSYNC": "never", "AMQPD_TEST_URL": "h:1", "AMQPD_PURE_PYTHON": "1"}
    assert unknown_environment(env) == []


def test_the_daemon_logs_the_warning(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = clean_env()
    env["AMQPD_PROT"] = "5731"
    # An unusable data dir makes amqpd exit right after logging its warnings.
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "amqpd", "--port", "0", "--data-dir", str(blocker / "data")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert (
        "WARNING amqpd.config: AMQPD_PROT is ignored: no such setting (did you mean AMQPD_PORT?)"
        in result.stderr
    )
