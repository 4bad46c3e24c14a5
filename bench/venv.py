"""Find an interpreter that has the project's dependencies, for the `scripts/` entry points.

The scripts start with `#!/usr/bin/env python3`, which is whatever `python3` comes first
on PATH -- often one without pamqp. `use_project_python(root)` returns at once if `module`
is importable; otherwise it re-executes the running script once with
`root/.venv/bin/python` (the venv the README's quick start creates), or exits with status 1
and a hint.
Standard library only: it runs before anything else is importable.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

_REEXEC = "BENCH_VENV_REEXEC"  # not AMQPD_*: amqpd reads (and may check) those


def use_project_python(root: Path, module: str = "pamqp") -> None:
    if importlib.util.find_spec(module) is not None:
        return
    python = root / ".venv" / "bin" / "python"
    if python.exists() and not os.environ.get(_REEXEC):
        os.environ[_REEXEC] = "1"  # if that Python lacks it too, say so instead of looping
        os.execv(python, [str(python), sys.argv[0], *sys.argv[1:]])
    sys.exit(
        f"{Path(sys.argv[0]).name}: {module} is not installed for {sys.executable}; set up the "
        f"project's venv (python3 -m venv .venv && .venv/bin/pip install -e '.[test]') "
        f"or run this script with a Python that has amqpd's dependencies"
    )
