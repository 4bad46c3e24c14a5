"""Policies as RabbitMQ has them: named, per vhost, matched by name pattern and `apply-to`.

`Policies(path)` keeps them in one JSON file in the data directory (written atomically);
`put` validates a definition's keys and values with RabbitMQ's rules and texts, and
`effective(vhost, kind, name)` is the policy that applies to a queue or exchange: the
matching one with the highest priority. amqpd shows which policy applies (`policy`,
`effective_policy_definition`); the queue features they configure are enforced only
where the queue's own x-arguments are (see the README).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

APPLY_TO = ("all", "queues", "exchanges", "classic_queues", "quorum_queues", "streams")


class PolicyError(ValueError):
    """A policy RabbitMQ would refuse; str(error) is RabbitMQ's reason text."""


def _non_negative(what: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        return None if ok else f"{value!r} is not a valid {what}"

    return check


def _positive(what: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
        return None if ok else f"{value!r} is not a valid {what}"

    return check


def _text(what: str) -> Callable[[Any], str | None]:
    return lambda value: None if isinstance(value, str) else f"{value!r} is not a valid {what}"


def _choice(what: str, *allowed: str) -> Callable[[Any], str | None]:
    return lambda value: None if value in allowed else f"{value!r} is not a valid {what}"


KEYS: dict[str, Callable[[Any], str | None]] = {
    "message-ttl": _non_negative("message TTL"),
    "expires": _positive("queue TTL"),
    "max-length": _non_negative("maximum length"),
    "max-length-bytes": _non_negative("maximum length in bytes"),
    "overflow": _choice("overflow behaviour", "drop-head", "reject-publish", "reject-publish-dlx"),
    "dead-letter-exchange": _text("dead letter exchange"),
    "dead-letter-routing-key": _text("dead letter routing key"),
    "dead-letter-strategy": _choice("dead letter strategy", "at-most-once", "at-least-once"),
    "alternate-exchange": _text("alternate exchange"),
    "delivery-limit": _non_negative("delivery limit"),
    "queue-mode": _choice("queue mode", "default", "lazy"),
    "queue-version": _choice("queue version", 1, 2),  # type: ignore[arg-type]
    "max-age": _text("max age"),
    "queue-master-locator": _text("queue master locator"),
    "queue-leader-locator": _text("queue leader locator"),
    "ha-mode": _text("ha mode"),
    "ha-params": lambda value: None,
    "ha-sync-mode": _text("ha sync mode"),
    "ha-promote-on-shutdown": _text("ha promote on shutdown"),
    "ha-promote-on-failure": _text("ha promote on failure"),
    "federation-upstream": _text("federation upstream"),
    "federation-upstream-set": _text("federation upstream set"),
}


def validate(body: dict[str, Any]) -> dict[str, Any]:
    """A policy from a PUT body (or a definitions entry): pattern, definition, priority,
    apply-to. Raises PolicyError with RabbitMQ's 'Validation failed' texts."""
    pattern = body.get("pattern")
    if not isinstance(pattern, str):
        raise PolicyError("Validation failed\n\npattern is required\n")
    try:
        re.compile(pattern)
    except re.error as error:
        problem = f"{pattern!r} is not a valid regex: {error}"
        raise PolicyError(f"Validation failed\n\n{problem}\n") from None
    definition = body.get("definition")
    if isinstance(definition, str):
        try:
            definition = json.loads(definition)
        except ValueError:
            definition = None
    if not isinstance(definition, dict) or not definition:
        raise PolicyError("Validation failed\n\ndefinition must be a non-empty object\n")
    unknown = [key for key in definition if key not in KEYS]
    if unknown:
        listed = ",".join(f'{{"{key}",{json.dumps(definition[key])}}}' for key in unknown)
        raise PolicyError(f"Validation failed\n\n[{listed}] are not recognised policy settings\n")
    for key, value in definition.items():
        found = KEYS[key](value)
        if found:
            raise PolicyError(f"Validation failed\n\n{found}\n")
    priority = body.get("priority", 0)
    if isinstance(priority, str) and priority.lstrip("-").isdigit():
        priority = int(priority)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise PolicyError(f"Validation failed\n\n{priority!r} is not a valid priority\n")
    apply_to = body.get("apply-to", "all")
    if apply_to not in APPLY_TO:
        raise PolicyError(f"Validation failed\n\n{apply_to!r} is not a valid apply-to value\n")
    return {
        "pattern": pattern,
        "definition": definition,
        "priority": priority,
        "apply-to": apply_to,
    }


def _applies(apply_to: str, kind: str) -> bool:
    if apply_to == "all":
        return True
    if kind == "exchange":
        return apply_to == "exchanges"
    return apply_to in ("queues", "classic_queues")


def policies_path(data_dir: str) -> Path:
    """Where the policies of a broker with this data directory are kept."""
    return Path(data_dir) / "policies.json"


class Policies:
    """The policies of every vhost, kept in `path` (JSON) and in memory."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._by_vhost: dict[str, dict[str, dict[str, Any]]] = {}
        self._compiled: dict[str, re.Pattern[str]] = {}
        if path is not None and path.exists():
            for item in json.loads(path.read_text(encoding="utf-8")):
                self._by_vhost.setdefault(item["vhost"], {})[item["name"]] = item

    def list(self, vhost: str | None = None) -> list[dict[str, Any]]:
        found = [
            policy
            for name, policies in sorted(self._by_vhost.items())
            if vhost is None or name == vhost
            for _key, policy in sorted(policies.items())
        ]
        return [dict(policy) for policy in found]

    def get(self, vhost: str, name: str) -> dict[str, Any] | None:
        found = self._by_vhost.get(vhost, {}).get(name)
        return dict(found) if found is not None else None

    def put(self, vhost: str, name: str, body: dict[str, Any]) -> bool:
        """Add or replace a policy; True if it is new."""
        policy = {"vhost": vhost, "name": name, **validate(body)}
        policies = self._by_vhost.setdefault(vhost, {})
        created = name not in policies
        policies[name] = policy
        self._save()
        return created

    def delete(self, vhost: str, name: str) -> bool:
        policies = self._by_vhost.get(vhost, {})
        if policies.pop(name, None) is None:
            return False
        self._save()
        return True

    def effective(self, vhost: str, kind: str, name: str) -> dict[str, Any] | None:
        """The policy applying to queue or exchange `name`: highest priority among those
        whose pattern matches and whose apply-to covers `kind` ("queue" or "exchange")."""
        best: dict[str, Any] | None = None
        for policy in self._by_vhost.get(vhost, {}).values():
            if not _applies(policy["apply-to"], kind):
                continue
            pattern = self._compiled.get(policy["pattern"])
            if pattern is None:
                pattern = self._compiled[policy["pattern"]] = re.compile(policy["pattern"])
            if pattern.search(name) and (best is None or policy["priority"] > best["priority"]):
                best = policy
        return best

    def _save(self) -> None:
        if self.path is None:
            return
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.list(), indent=1), encoding="utf-8")
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
