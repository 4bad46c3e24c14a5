"""What a test broker is started with: `BrokerSettings` -> the YAML config amqpd reads.

Users are given as `{name: password}` (full rights on every vhost) or as complete YAML user
entries (`{"name", "password", "permissions"}`) for tests of permissions. `extra` holds any
other key of config/amqpd.yaml (e.g. `heartbeat`, `frame_max`) and is validated by amqpd
itself when it starts. Pure data: no files, no processes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

UserSpec = Mapping[str, str] | Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class BrokerSettings:
    """Settings of one test broker; defaults suit tests (fast `fsync: never`, guest/guest)."""

    vhosts: Sequence[str] = ("/",)
    users: UserSpec = field(default_factory=lambda: {"guest": "guest"})
    fsync: str = "never"
    log_level: str = "info"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def user_entries(self) -> list[dict[str, Any]]:
        """The `users` list of the YAML file."""
        if isinstance(self.users, Mapping):
            everything: dict[str, dict[str, str]] = {vhost: {} for vhost in self.vhosts}
            return [
                {"name": name, "password": password, "permissions": dict(everything)}
                for name, password in self.users.items()
            ]
        return [dict(entry) for entry in self.users]

    def first_login(self) -> tuple[str, str]:
        """(user, password) that the broker's default URL carries."""
        entries = self.user_entries()
        if not entries:
            raise ValueError("a test broker needs at least one user")
        return str(entries[0]["name"]), str(entries[0].get("password", ""))

    def to_yaml(self) -> str:
        data: dict[str, Any] = dict(self.extra)
        data.update(
            vhosts=list(self.vhosts),
            users=self.user_entries(),
            fsync=self.fsync,
            log_level=self.log_level,
        )
        return yaml.safe_dump(data, sort_keys=False)
