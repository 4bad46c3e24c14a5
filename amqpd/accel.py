"""Which codec runs: the compiled accelerator (amqpd._speedups) or the pure-Python one.

`speedups()` returns the compiled module, or None when it was not built (no C compiler at
install time) or when the environment sets AMQPD_PURE_PYTHON=1. The wire and store modules
call it once at import and bind their hot functions accordingly; the pure-Python versions
stay importable under their own names either way.
"""

from __future__ import annotations

import os
from types import ModuleType


def speedups() -> ModuleType | None:
    if os.environ.get("AMQPD_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from amqpd import _speedups
    except ImportError:
        return None
    return _speedups


def active() -> str:
    """'compiled' or 'pure-python': what this process runs."""
    return "compiled" if speedups() is not None else "pure-python"
