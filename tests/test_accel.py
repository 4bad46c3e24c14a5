"""Which codec runs: the compiled accelerator unless AMQPD_PURE_PYTHON=1 or it was not built.

The whole suite runs once with the accelerator and (for the codec's tests) once with
AMQPD_PURE_PYTHON=1 (.ci/run); these tests check that each run really uses what it claims,
and that an install on a machine with a C compiler did build the extension.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from amqpd import accel
from amqpd.store import records
from amqpd.wire import content, frames, methods

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
