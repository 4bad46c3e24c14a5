"""What a test broker is started with: `BrokerSettings` -> the YAML config amqpd reads.

Users are given as `{name: password}` (full rights on every vhost, and the `administrator`
tag where this amqpd has user tags) or as complete YAML user entries (`{"name", "password",
"permissions"}`) for tests of permissions. `extra` holds any other key of config/amqpd.yaml
(e.g. `heartbeat`, `frame_max`) and is validated by amqpd itself when it starts. Operator
listeners (management API, metrics), where this amqpd has them, get free ports, and
`test_controls` (the movable clock and fault injection of `amqpd.testing.controls`) is on
unless turned off. Pure data: no files, no processes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
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
    test_controls: bool = True

    def user_entries(self) -> list[dict[str, Any]]:
        """The `users` list of the YAML file."""
        if isinstance(self.users, Mapping):
            everything: dict[str, dict[str, str]] = {vhost: {} for vhost in self.vhosts}
            entries: list[dict[str, Any]] = [
                {"name": name, "password": password, "permissions": dict(everything)}
                for name, password in self.users.items()
            ]
            if _has_user_tags():  # like RabbitMQ's guest: may use the management API too
                for entry in entries:
                    entry["tags"] = ["administrator"]
            return entries
        return [dict(entry) for entry in self.users]

    def first_login(self) -> tuple[str, str]:
        """(user, password) that the broker's default URL carries."""
        entries = self.user_entries()
        if not entries:
            raise ValueError("a test broker needs at least one user")
        return str(entries[0]["name"]), str(entries[0].get("password", ""))

    def expects_management(self) -> bool:
        """True if the broker will start a management API (this amqpd has one, not disabled)."""
        return "management_port" in operator_ports() and self.extra.get("management") is not False

    def to_yaml(self) -> str:
        data: dict[str, Any] = operator_ports()
        if _knows("test_controls"):
            data["test_controls"] = self.test_controls
        data.update(self.extra)
        data.update(
            vhosts=list(self.vhosts),
            users=self.user_entries(),
            fsync=self.fsync,
            log_level=self.log_level,
        )
        return yaml.safe_dump(data, sort_keys=False)


def operator_ports() -> dict[str, int]:
    """The operator listeners' port keys this amqpd knows (management API, metrics), each 0:
    a test broker takes free ports, so two never contend for 15672 or a real RabbitMQ's."""
    from amqpd.config import Config

    known = {item.name for item in fields(Config)}
    return {key: 0 for key in ("management_port", "prometheus_port") if key in known}


def _knows(key: str) -> bool:
    """This amqpd's config has `key` (older ones refuse unknown keys)."""
    from amqpd.config import Config

    return key in {item.name for item in fields(Config)}


def _has_user_tags() -> bool:
    from amqpd.config import User

    return "tags" in {item.name for item in fields(User)}
