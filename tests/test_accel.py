"""Which codec runs: the compiled accelerator unless AMQPD_PURE_PYTHON=1 or it was not built.

The whole suite runs once with the accelerator and once with AMQPD_PURE_PYTHON=1 (.ci/run);
these tests check that each run really uses what it claims, in this process and in the brokers
it starts (each logs `codec: compiled` or `codec: pure-python`), and that an install on a
machine with a C compiler did build the extension.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from amqpd import accel
from amqpd.store import records
from amqpd.testing import Broker
from amqpd.wire import content, frames, methods
from tests.broker_process import BrokerProcess

FORCED_PURE = os.environ.get("AMQPD_PURE_PYTHON", "") not in ("", "0")


def _selection() -> dict[str, bool]:
    return {
        "frames": frames.FrameReader is frames.PureFrameReader,
        "methods": methods.decode_method is methods.pure_decode_method,
        "content": content.peek_header is content.pure_peek_header,
        "delivery": content.content_frames is content.pure_content_frames,
        "records": records.encode_publish is records.pure_encode_publish
        and records.encode_ref is records.pure_encode_ref,
    }


def test_every_module_made_the_same_choice_and_honours_the_environment() -> None:
    pure = accel.speedups() is None
    assert pure or not FORCED_PURE
    assert _selection() == dict.fromkeys(_selection(), pure)
    assert accel.active() == ("pure-python" if pure else "compiled")


def test_extension_is_built_where_a_compiler_is() -> None:
    """An editable install with `cc` and the Python headers present builds the extension."""
    headers = Path(sysconfig.get_paths()["include"], "Python.h")
    if shutil.which("cc") is None or not headers.exists():
        return
    import amqpd

    built = list(Path(amqpd.__file__).parent.glob("_speedups*.so"))
    assert built, "a C compiler is present but amqpd._speedups was not built"


def test_environment_selects_pure_python_in_a_fresh_interpreter() -> None:
    code = (
        "from amqpd import accel; from amqpd.wire import frames; "
        "print(accel.active(), frames.FrameReader.__name__)"
    )
    env = {**os.environ, "AMQPD_PURE_PYTHON": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["pure-python", "PureFrameReader"], out.stderr


def _codec_lines(log_lines: list[str]) -> list[str]:
    return [line.split("codec: ", 1)[1] for line in log_lines if "codec: " in line]


def test_session_brokers_run_the_codec_of_this_run(
    broker_process: BrokerProcess | None, amqpd: Broker | object
) -> None:
    """Both launchers (tests/broker_process.py and the pytest plugin) pass the choice on."""
    if broker_process is None or not isinstance(amqpd, Broker):
        pytest.skip("the broker under test is an external one")
    expected = accel.active()
    assert _codec_lines(broker_process.log_lines) == [expected], broker_process.log_lines
    assert _codec_lines(amqpd.log_lines) == [expected], amqpd.log_lines
