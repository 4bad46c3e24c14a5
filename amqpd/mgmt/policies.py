"""Policies over the management API: validation with RabbitMQ's rules and texts, and the
facade that sets them on the vhosts and keeps the file.

`validate(body)` checks a policy (or, with `operator=True`, an operator policy) as
RabbitMQ does. `Policies(vhosts, path)` lists, shows, sets and clears policies: each vhost
owns its policies and applies them at once (core/policy.py, core/vhost.py), and every
change is written to `path` (policy_file.py). `effective(vhost, kind, name)` is what the
API shows for a queue or exchange: the policy applied, the operator policy, and the
definition in effect.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from amqpd import policy_file
from amqpd.core.policy import OPERATOR_KEYS, Policy, effective_definition
from amqpd.core.vhost import VHost
from amqpd.policy_file import policies_path

__all__ = ["KEYS", "Policies", "PolicyError", "policies_path", "validate"]

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


def validate(body: dict[str, Any], operator: bool = False) -> dict[str, Any]:
    """A policy from a PUT body (or a definitions entry): pattern, definition, priority,
    apply-to. Raises PolicyError with RabbitMQ's 'Validation failed' texts. Operator
    policies accept only the keys RabbitMQ lets them set (limits and TTLs)."""
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
    allowed = OPERATOR_KEYS if operator else KEYS
    unknown = [key for key in definition if key not in allowed]
    if unknown:
        listed = ",".join(f'{{"{key}",{json.dumps(definition[key])}}}' for key in unknown)
        raise PolicyError(f"Validation failed\n\n[{listed}] are not recognised policy settings\n")
    for key, value in definition.items():
        found = KEYS.get(key, _non_negative(key.replace("-", " ")))(value)
        if found:
            raise PolicyError(f"Validation failed\n\n{found}\n")
    priority = body.get("priority", 0)
    if isinstance(priority, str) and priority.lstrip("-").isdigit():
        priority = int(priority)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise PolicyError(f"Validation failed\n\n{priority!r} is not a valid priority\n")
    apply_to = body.get("apply-to", "all")
    if apply_to not in APPLY_TO:
        raise PolicyError(
            f"Validation failed\n\napply-to '{apply_to}' unrecognised; should be one of: "
            "'queues', 'classic_queues',  'quorum_queues', 'streams', 'exchanges', or 'all'\n"
        )
    return {
        "pattern": pattern,
        "definition": definition,
        "priority": priority,
        "apply-to": apply_to,
    }


class Policies:
    """The policies of every vhost: the vhosts hold and apply them, `path` keeps them."""

    def __init__(self, vhosts: Mapping[str, VHost], path: Path | None) -> None:
        self.vhosts = vhosts
        self.path = path

    def list(self, vhost: str | None = None, operator: bool = False) -> list[dict[str, Any]]:
        return [
            policy.as_json(name)
            for name, found in sorted(self.vhosts.items())
            if vhost is None or name == vhost
            for policy in found.policies.listed(operator=operator)
        ]

    def get(self, vhost: str, name: str, operator: bool = False) -> dict[str, Any] | None:
        found = self.vhosts.get(vhost)
        policy = found.policies.get(name, operator=operator) if found is not None else None
        return policy.as_json(vhost) if policy is not None else None

    def put(self, vhost: str, name: str, body: dict[str, Any], operator: bool = False) -> bool:
        """Validate, set and apply a policy, then save; True if it is new. A KeyError if
        the vhost does not exist."""
        policy = Policy.from_json(name, validate(body, operator))
        created = self.vhosts[vhost].set_policy(policy, operator=operator)
        self._save()
        return created

    def delete(self, vhost: str, name: str, operator: bool = False) -> bool:
        found = self.vhosts.get(vhost)
        if found is None or not found.clear_policy(name, operator=operator):
            return False
        self._save()
        return True

    def effective(self, vhost: str, kind: str, name: str) -> dict[str, Any] | None:
        """What applies to queue or exchange `name` (`kind` "queue" or "exchange"): the
        policy's name, the operator policy's name and the definition in effect; None if
        no policy applies."""
        found = self.vhosts.get(vhost)
        if found is None:
            return None
        target = found.queues.get(name) if kind == "queue" else found.exchanges.get(name)
        if target is not None:
            policy, operator = target.policy, target.operator_policy
        else:
            policy = found.policies.match(kind, name)
            operator = found.policies.match_operator(kind, name)
        if policy is None and operator is None:
            return None
        return {
            "name": policy.name if policy is not None else None,
            "operator_policy": operator.name if operator is not None else None,
            "definition": effective_definition(policy, operator),
        }

    def _save(self) -> None:
        policy_file.save(self.path, {name: vhost.policies for name, vhost in self.vhosts.items()})
