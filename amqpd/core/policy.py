"""Policies of one vhost: which one applies to a queue or exchange, and what it then sets.

`PolicyRegistry` holds a vhost's policies (already validated: see mgmt/policies.py) and
operator policies; `match(kind, name, quorum)` is the one policy that applies to an
object: the highest priority among those whose pattern matches (re.search, as RabbitMQ's
`re:run`) and whose `apply-to` covers the object. RabbitMQ leaves a tie between equal
priorities to its table's hash order; amqpd picks the name that sorts first.

`queue_settings(arguments, policy, operator, quorum)` is what a queue then does, by
RabbitMQ 3.10's precedence against the queue's own x-arguments: the lower value wins for
`message-ttl`, `expires`, `max-length`, `max-length-bytes` and `delivery-limit`; the
argument wins for `dead-letter-exchange`, `dead-letter-routing-key` and (classic queues)
`overflow`; a quorum queue's `overflow` policy wins over its argument. Operator policies
combine with the user policy by taking the lower value. For exchanges, an
`alternate-exchange` argument wins over the policy's. No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Keys a policy may set and the queue argument each one stands for.
LOWER_WINS = ("message-ttl", "expires", "max-length", "max-length-bytes", "delivery-limit")
OPERATOR_KEYS = LOWER_WINS + ("max-in-memory-length", "max-in-memory-bytes")


@dataclass(frozen=True)
class Policy:
    """One validated policy (user or operator)."""

    name: str
    pattern: str
    definition: Mapping[str, Any]
    priority: int = 0
    apply_to: str = "all"
    regex: re.Pattern[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(self.pattern))

    @classmethod
    def from_json(cls, name: str, item: Mapping[str, Any]) -> Policy:
        """From the JSON shape the API and definitions use (`pattern`, `definition`,
        `priority`, `apply-to`)."""
        return cls(
            name,
            item["pattern"],
            dict(item["definition"]),
            int(item.get("priority", 0)),
            item.get("apply-to", "all"),
        )

    def as_json(self, vhost: str) -> dict[str, Any]:
        return {
            "vhost": vhost,
            "name": self.name,
            "pattern": self.pattern,
            "apply-to": self.apply_to,
            "definition": dict(self.definition),
            "priority": self.priority,
        }

    def covers(self, kind: str, quorum: bool) -> bool:
        """Whether `apply-to` covers a `kind` ("queue" or "exchange") object."""
        apply_to = self.apply_to
        if apply_to == "all":
            return True
        if kind == "exchange":
            return apply_to == "exchanges"
        if apply_to == "queues":
            return True
        return apply_to == ("quorum_queues" if quorum else "classic_queues")


def _best(policies: Iterable[Policy], kind: str, name: str, quorum: bool) -> Policy | None:
    best: Policy | None = None
    for policy in policies:
        if not policy.covers(kind, quorum) or policy.regex.search(name) is None:
            continue
        if (
            best is None
            or policy.priority > best.priority
            or (policy.priority == best.priority and policy.name < best.name)
        ):
            best = policy
    return best


class PolicyRegistry:
    """A vhost's policies and operator policies, by name."""

    def __init__(self) -> None:
        self.policies: dict[str, Policy] = {}
        self.operator_policies: dict[str, Policy] = {}

    def _table(self, operator: bool) -> dict[str, Policy]:
        return self.operator_policies if operator else self.policies

    def set(self, policy: Policy, *, operator: bool = False) -> bool:
        """Add or replace a policy; True if it is new."""
        table = self._table(operator)
        created = policy.name not in table
        table[policy.name] = policy
        return created

    def clear(self, name: str, *, operator: bool = False) -> bool:
        """Remove a policy; False if there was none of that name."""
        return self._table(operator).pop(name, None) is not None

    def get(self, name: str, *, operator: bool = False) -> Policy | None:
        return self._table(operator).get(name)

    def listed(self, *, operator: bool = False) -> list[Policy]:
        return [policy for _, policy in sorted(self._table(operator).items())]

    def match(self, kind: str, name: str, quorum: bool = False) -> Policy | None:
        """The policy applying to queue or exchange `name` (None: no policy)."""
        if not self.policies:
            return None
        return _best(self.policies.values(), kind, name, quorum)

    def match_operator(self, kind: str, name: str, quorum: bool = False) -> Policy | None:
        if not self.operator_policies:
            return None
        return _best(self.operator_policies.values(), kind, name, quorum)


def effective_definition(policy: Policy | None, operator: Policy | None) -> dict[str, Any]:
    """The definition in effect (the management API's `effective_policy_definition`):
    the policy's keys, with an operator policy's value where it is lower, or where the
    policy does not set that key."""
    found = dict(policy.definition) if policy is not None else {}
    if operator is not None:
        for key, value in operator.definition.items():
            mine = found.get(key)
            found[key] = value if mine is None else _merge(key, mine, value)
    return found


def _merge(key: str, value: Any, operator_value: Any) -> Any:
    if key in OPERATOR_KEYS and isinstance(value, int) and isinstance(operator_value, int):
        return min(value, operator_value)
    return value


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """What a queue enforces, once its arguments and policies are combined."""

    ttl: int | None = None
    expires: int | None = None
    max_length: int | None = None
    max_bytes: int | None = None
    overflow: str = "drop-head"
    dlx: str | None = None
    dlrk: str | None = None
    delivery_limit: int | None = None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else None


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def queue_settings(
    arguments: Mapping[str, Any],
    policy: Policy | None = None,
    operator: Policy | None = None,
    quorum: bool = False,
) -> QueueSettings:
    """A queue's effective settings by RabbitMQ 3.10's precedence (see the module doc)."""
    definition = effective_definition(policy, operator) if policy or operator else {}

    def lower(key: str) -> int | None:
        own = _integer(arguments.get("x-" + key))
        set_by_policy = _integer(definition.get(key))
        if own is None:
            return set_by_policy
        return own if set_by_policy is None else min(own, set_by_policy)

    def argument_first(key: str) -> str | None:
        own = _text(arguments.get("x-" + key))
        return own if own is not None else _text(definition.get(key))

    overflow_argument = _text(arguments.get("x-overflow"))
    overflow_policy = _text(definition.get("overflow"))
    if quorum:
        overflow = overflow_policy or overflow_argument
    else:
        overflow = overflow_argument or overflow_policy
    limit = lower("delivery-limit")
    return QueueSettings(
        ttl=lower("message-ttl"),
        expires=lower("expires"),
        max_length=lower("max-length"),
        max_bytes=lower("max-length-bytes"),
        overflow=overflow or "drop-head",
        dlx=argument_first("dead-letter-exchange"),
        dlrk=argument_first("dead-letter-routing-key"),
        delivery_limit=limit if quorum and limit is not None and limit >= 0 else None,
    )


def alternate_exchange(
    arguments: Mapping[str, Any], policy: Policy | None, operator: Policy | None = None
) -> str | None:
    """An exchange's alternate exchange: its `alternate-exchange` argument, else the
    policy's (RabbitMQ's `get_arg`: the argument wins)."""
    own = _text(arguments.get("alternate-exchange"))
    if own is not None or (policy is None and operator is None):
        return own
    return _text(effective_definition(policy, operator).get("alternate-exchange"))
