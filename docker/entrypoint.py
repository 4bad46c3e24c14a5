#!/usr/bin/env python3
"""Container entrypoint: run amqpd as PID 1's only child, RabbitMQ-image compatible.

`amqpd-entrypoint [amqpd flags...]`:
- installs its SIGTERM/SIGINT handlers before anything else and passes the signal to amqpd,
  which then stops at once even during recovery (amqpd is not PID 1, so the kernel's default
  action applies until amqpd installs its own handlers); exits with amqpd's exit code
  (128 + N for a signal N);
- honours RABBITMQ_DEFAULT_USER, RABBITMQ_DEFAULT_PASS and RABBITMQ_DEFAULT_VHOST as the
  official RabbitMQ image does: that user (replacing guest) with all rights on that vhost,
  merged into the config file named by --config or AMQPD_CONFIG if there is one; and
  RABBITMQ_NODE_PORT as the port (it beats AMQPD_PORT; a --port flag beats both); all other
  AMQPD_* variables and flags work as usual;
- copies amqpd's log to stderr; on amqpd's ready line it writes "HOST PORT" (the address amqpd
  really listens on, flags included) to $AMQPD_READY_FILE (default /tmp/amqpd.ready) for the
  health check, and logs "Server startup complete" as RabbitMQ does (log-based waits).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

READY = re.compile(r"amqpd ready: listening on \[?([0-9a-fA-F:.]+)\]?:(\d+)")
DEFAULT_READY_FILE = "/tmp/amqpd.ready"
CONNECTABLE = {"0.0.0.0": "127.0.0.1", "::": "::1"}
EVERYTHING = {"configure": ".*", "write": ".*", "read": ".*"}


class EntrypointError(Exception):
    """Cannot start amqpd; str() is one line for stderr."""


def rabbitmq_config(env: Mapping[str, str], base: dict[str, Any] | None) -> dict[str, Any] | None:
    """The config with RABBITMQ_DEFAULT_* applied to `base`, or None if none is set."""
    user = env.get("RABBITMQ_DEFAULT_USER") or None
    password = env.get("RABBITMQ_DEFAULT_PASS") or None
    vhost = env.get("RABBITMQ_DEFAULT_VHOST") or None
    if user is None and password is None and vhost is None:
        return None
    user, password, vhost = user or "guest", password or "guest", vhost or "/"
    data = dict(base or {})
    vhosts = list(data.get("vhosts") or [])
    if vhost not in vhosts:
        vhosts.append(vhost)
    data["vhosts"] = vhosts
    users = [u for u in data.get("users") or [] if isinstance(u, dict) and u.get("name") != user]
    users.append({"name": user, "password": password, "permissions": {vhost: dict(EVERYTHING)}})
    data["users"] = users
    return data


def split_config_flag(args: list[str]) -> tuple[str | None, list[str]]:
    """(--config value or None, the other arguments)."""
    rest: list[str] = []
    path: str | None = None
    items = iter(args)
    for arg in items:
        if arg == "--config":
            path = next(items, None)
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return path, rest


def prepare(args: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """amqpd's arguments and environment, with RABBITMQ_DEFAULT_* turned into a config file."""
    import yaml  # not at the top: the signal handlers are installed before this import

    flag_path, rest = split_config_flag(args)
    path = flag_path or env.get("AMQPD_CONFIG") or None
    base: dict[str, Any] | None = None
    if path is not None:
        try:
            base = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise EntrypointError(f"cannot read config file {path}: {exc}") from None
        if not isinstance(base, dict):
            raise EntrypointError(f"{path}: the top level must be a mapping of keys")
    node_port = env.get("RABBITMQ_NODE_PORT")
    if node_port:  # testcontainers' RabbitMqContainer always sets it
        env = {**env, "AMQPD_PORT": node_port}
    merged = rabbitmq_config(env, base)
    if merged is None:
        return args, env
    fd, merged_path = tempfile.mkstemp(prefix="amqpd-", suffix=".yaml")  # mode 0600
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        yaml.safe_dump(merged, handle, sort_keys=False)
    return rest, {**env, "AMQPD_CONFIG": merged_path}


class Supervisor:
    """Runs amqpd, forwards stop signals to it, relays its log and reports readiness."""

    def __init__(self, ready_file: Path) -> None:
        self.ready_file = ready_file
        self.child: subprocess.Popen[bytes] | None = None
        self.stop_signal: int | None = None
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def run(self, args: list[str], env: dict[str, str]) -> int:
        self.ready_file.unlink(missing_ok=True)
        if self.stop_signal is not None:
            return 128 + self.stop_signal
        self.child = subprocess.Popen(
            [sys.executable, "-m", "amqpd", *args], env=env, stderr=subprocess.PIPE
        )
        if self.stop_signal is not None:  # arrived while the child was being spawned
            self.child.send_signal(self.stop_signal)
        assert self.child.stderr is not None
        out = sys.stderr.buffer
        for line in self.child.stderr:
            out.write(line)
            out.flush()
            match = READY.search(line.decode("utf-8", "replace"))
            if match and not self.ready_file.exists():
                host = CONNECTABLE.get(match.group(1), match.group(1))
                self._write_ready(f"{host} {match.group(2)}\n")
                out.write(b"amqpd-entrypoint: Server startup complete\n")
                out.flush()
        code = self.child.wait()
        self.ready_file.unlink(missing_ok=True)
        return 128 - code if code < 0 else code

    def _write_ready(self, text: str) -> None:
        partial = self.ready_file.with_name(self.ready_file.name + ".tmp")
        partial.write_text(text, encoding="ascii")
        partial.replace(self.ready_file)  # the health check never reads half a line


def main(argv: list[str]) -> int:
    env = dict(os.environ)
    supervisor = Supervisor(Path(env.pop("AMQPD_READY_FILE", "") or DEFAULT_READY_FILE))
    # From here on a SIGTERM is never lost (PID 1 ignores signals it has no handler for).
    try:
        args, child_env = prepare(argv, env)
    except EntrypointError as exc:
        print(f"amqpd-entrypoint: {exc}", file=sys.stderr)
        return 2
    return supervisor.run(args, child_env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
