"""The `list_*` commands: which API list each reads, its rabbitmqctl columns and defaults.

Column names are rabbitmqctl's; most are the API's field names, the rest are mapped here
(e.g. `source_name` is a binding's `source`). `format_value` prints what rabbitmqctl
prints for plain values: `true`/`false`, numbers, text; tables and lists as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Listing:
    what: str  # "queues", as in "Listing queues for vhost / ..."
    path: str  # API path; {vhost} is replaced by the encoded vhost
    defaults: tuple[str, ...]
    columns: tuple[str, ...]
    per_vhost: bool = True
    quoted_vhost: bool = False  # the heading says vhost "/" (policy listings), not vhost /
    mapped: dict[str, Callable[[dict[str, Any]], Any]] = field(default_factory=dict)


def _key(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda item: item.get(name)


POLICY_COLUMNS = ("vhost", "name", "pattern", "apply-to", "definition", "priority")

LISTINGS = {
    "list_queues": Listing(
        "queues",
        "/api/queues/{vhost}",
        ("name", "messages"),
        (
            "name",
            "durable",
            "auto_delete",
            "arguments",
            "policy",
            "exclusive",
            "messages_ready",
            "messages_unacknowledged",
            "messages",
            "consumers",
            "consumer_utilisation",
            "memory",
            "state",
            "type",
            "exclusive_consumer_tag",
        ),
    ),
    "list_exchanges": Listing(
        "exchanges",
        "/api/exchanges/{vhost}",
        ("name", "type"),
        ("name", "type", "durable", "auto_delete", "internal", "arguments", "policy"),
    ),
    "list_bindings": Listing(
        "bindings",
        "/api/bindings/{vhost}",
        (
            "source_name",
            "source_kind",
            "destination_name",
            "destination_kind",
            "routing_key",
            "arguments",
        ),
        (
            "source_name",
            "source_kind",
            "destination_name",
            "destination_kind",
            "routing_key",
            "arguments",
        ),
        mapped={
            "source_name": _key("source"),
            "source_kind": lambda item: "exchange",
            "destination_name": _key("destination"),
            "destination_kind": _key("destination_type"),
        },
    ),
    "list_connections": Listing(
        "connections",
        "/api/connections",
        ("user", "peer_host", "peer_port", "state"),
        (
            "name",
            "user",
            "vhost",
            "peer_host",
            "peer_port",
            "host",
            "port",
            "state",
            "channels",
            "protocol",
            "auth_mechanism",
            "frame_max",
            "channel_max",
            "timeout",
            "client_properties",
            "connected_at",
            "user_provided_name",
        ),
        per_vhost=False,
    ),
    "list_channels": Listing(
        "channels",
        "/api/channels",
        ("name", "user", "consumer_count", "messages_unacknowledged"),
        (
            "name",
            "number",
            "user",
            "vhost",
            "transactional",
            "confirm",
            "consumer_count",
            "messages_unacknowledged",
            "messages_unconfirmed",
            "messages_uncommitted",
            "prefetch_count",
            "global_prefetch_count",
            "state",
        ),
        per_vhost=False,
    ),
    "list_consumers": Listing(
        "consumers",
        "/api/consumers/{vhost}",
        (
            "queue_name",
            "channel_name",
            "consumer_tag",
            "ack_required",
            "prefetch_count",
            "active",
            "arguments",
        ),
        (
            "queue_name",
            "channel_name",
            "consumer_tag",
            "ack_required",
            "prefetch_count",
            "active",
            "exclusive",
            "arguments",
        ),
        mapped={
            "queue_name": lambda item: item["queue"]["name"],
            "channel_name": lambda item: item["channel_details"]["name"],
        },
    ),
    "list_vhosts": Listing(
        "vhosts",
        "/api/vhosts",
        ("name",),
        ("name", "tracing", "messages", "messages_ready", "messages_unacknowledged"),
        per_vhost=False,
    ),
    "list_policies": Listing(
        "policies",
        "/api/policies/{vhost}",
        POLICY_COLUMNS,
        POLICY_COLUMNS,
        quoted_vhost=True,
    ),
    "list_operator_policies": Listing(
        "operator policy overrides",
        "/api/operator-policies/{vhost}",
        POLICY_COLUMNS,
        POLICY_COLUMNS,
        quoted_vhost=True,
    ),
    "list_users": Listing(
        "users",
        "/api/users",
        ("user", "tags"),
        ("user", "tags"),
        per_vhost=False,
        mapped={"user": _key("name"), "tags": lambda item: f"[{', '.join(item['tags'])}]"},
    ),
}


def value_of(listing: Listing, item: dict[str, Any], column: str) -> Any:
    getter = listing.mapped.get(column)
    return getter(item) if getter is not None else item.get(column)


def format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)
