"""Definitions in RabbitMQ's JSON format: export the topology, import one (API, CLI, startup).

`export(broker)` returns what `GET /api/definitions` serves: users (with their salted
hashes), vhosts, permissions, policies, non-exclusive queues, exchanges other than the
built-in ones, and the bindings between them, so the file loads into RabbitMQ 3.10
unchanged. `import_definitions(broker, data)` applies a file exported by RabbitMQ or amqpd
in RabbitMQ's order: it creates (or replaces) the users with their password hashes,
creates the missing vhosts, sets the permissions and policies, and declares the
exchanges, queues and bindings. Problems raise `DefinitionsError` with one line saying what.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from amqpd import __version__
from amqpd.accounts import AccountsError
from amqpd.config import Permission
from amqpd.core.errors import AMQPError
from amqpd.core.exchange import Exchange
from amqpd.core.vhost import VHost
from amqpd.mgmt.jsonable import to_json
from amqpd.mgmt.policies import Policies, PolicyError, policies_path
from amqpd.mgmt.users import BadBody, permission_json, user_from_body, user_json
from amqpd.store import StoreFailed

if TYPE_CHECKING:
    from amqpd.broker import Broker

log = logging.getLogger("amqpd.mgmt")

RABBIT_VERSION = "3.10.8"


class DefinitionsError(ValueError):
    """A definitions file that cannot be applied; str(error) says why."""


def _header() -> dict[str, Any]:
    return {
        "rabbit_version": RABBIT_VERSION,
        "rabbitmq_version": RABBIT_VERSION,
        "product_name": "amqpd",
        "product_version": __version__,
    }


def _queues(vhost: VHost) -> list[dict[str, Any]]:
    return [
        {
            "name": queue.name,
            "vhost": vhost.name,
            "durable": queue.durable,
            "auto_delete": queue.auto_delete,
            "arguments": to_json(queue.arguments),
        }
        for queue in vhost.queues.values()
        if not queue.exclusive
    ]


def _exported_exchange(exchange: Exchange) -> bool:
    return exchange.name != "" and not exchange.name.startswith("amq.")


def _exchanges(vhost: VHost) -> list[dict[str, Any]]:
    return [
        {
            "name": exchange.name,
            "vhost": vhost.name,
            "type": exchange.type_name,
            "durable": exchange.durable,
            "auto_delete": exchange.auto_delete,
            "internal": exchange.internal,
            "arguments": to_json(exchange.arguments),
        }
        for exchange in vhost.exchanges.values()
        if _exported_exchange(exchange)
    ]


def _bindings(vhost: VHost) -> list[dict[str, Any]]:
    found = []
    for exchange in vhost.exchanges.values():
        if exchange.name == "":
            continue
        for (destination, routing_key, _frozen), arguments in exchange.bindings.items():
            is_exchange = isinstance(destination, Exchange)
            if not is_exchange and destination.exclusive:
                continue
            found.append(
                {
                    "source": exchange.name,
                    "vhost": vhost.name,
                    "destination": destination.name,
                    "destination_type": "exchange" if is_exchange else "queue",
                    "routing_key": routing_key,
                    "arguments": to_json(arguments),
                }
            )
    return found


def export(
    broker: Broker, vhost_name: str | None = None, policies: Policies | None = None
) -> dict[str, Any]:
    """The broker's definitions; for one vhost, without users and vhost fields as RabbitMQ."""
    config = broker.config
    if policies is None:
        policies = Policies(broker.vhosts, policies_path(config.data_dir))
    if vhost_name is not None:
        vhost = broker.vhosts[vhost_name]
        shown = _header()
        mine = policies.list(vhost_name)
        for policy in mine:
            policy.pop("vhost")
        shown.update({"parameters": [], "policies": mine})
        for key, items in (
            ("queues", _queues(vhost)),
            ("exchanges", _exchanges(vhost)),
            ("bindings", _bindings(vhost)),
        ):
            for item in items:
                item.pop("vhost")
            shown[key] = items
        return shown
    vhosts = list(broker.vhosts.values())
    users = broker.accounts.users()
    shown = _header()
    shown.update(
        {
            "users": [user_json(user) for user in users],
            "vhosts": [_vhost_json(broker, vhost.name) for vhost in vhosts],
            "permissions": [
                permission_json(user.name, name, permission)
                for user in users
                for name, permission in user.permissions.items()
            ],
            "topic_permissions": [],
            "parameters": [],
            "global_parameters": [],
            "policies": policies.list(),
            "queues": [item for vhost in vhosts for item in _queues(vhost)],
            "exchanges": [item for vhost in vhosts for item in _exchanges(vhost)],
            "bindings": [item for vhost in vhosts for item in _bindings(vhost)],
        }
    )
    return shown


def _vhost_json(broker: Broker, name: str) -> dict[str, Any]:
    meta = broker.accounts.vhost_meta(name)
    shown: dict[str, Any] = {"name": name}  # RabbitMQ 3.10 exports no more
    if meta:
        shown["metadata"] = {
            "description": meta.get("description", ""),
            "tags": meta.get("tags", []),
        }
        if "default_queue_type" in meta:
            shown["metadata"]["default_queue_type"] = meta["default_queue_type"]
    return shown


def _items(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = data.get(key) or []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise DefinitionsError(f"{key} must be a list of objects")
    return items


def _vhost_of(broker: Broker, item: dict[str, Any], default: str | None, what: str) -> VHost:
    name = item.get("vhost", default)
    if not isinstance(name, str):
        raise DefinitionsError(f"{what} has no vhost")
    vhost = broker.vhosts.get(name)
    if vhost is None:
        raise DefinitionsError(
            f"{what} is in vhost '{name}', which amqpd does not have (list it in the "
            "file's `vhosts`, or create it first)"
        )
    return vhost


def _flag(value: Any) -> bool:
    return value.lower() == "true" if isinstance(value, str) else bool(value)


def _name(item: dict[str, Any], what: str) -> str:
    name = item.get("name")
    if not isinstance(name, str):
        raise DefinitionsError(f"a {what} without a name")
    return name


def _arguments(item: dict[str, Any], what: str) -> dict[str, Any]:
    arguments = item.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise DefinitionsError(f"{what}: arguments must be an object")
    return arguments


def import_definitions(
    broker: Broker, data: Any, vhost_name: str | None = None, policies: Policies | None = None
) -> dict[str, int]:
    """Set the policies and declare the exchanges, queues and bindings in `data`; returns
    counts of each. With `vhost_name`, items without a vhost belong to it (RabbitMQ's
    per-vhost format)."""
    if policies is None:
        policies = Policies(broker.vhosts, policies_path(broker.config.data_dir))
    if not isinstance(data, dict):
        raise DefinitionsError("definitions must be a JSON object")
    _note_skipped(data)
    done = {
        "users": _import_users(broker, data),
        "vhosts": _import_vhosts(broker, data),
        "permissions": _import_permissions(broker, data),
        "policies": 0,
        "exchanges": 0,
        "queues": 0,
        "bindings": 0,
    }
    for item in _items(data, "policies"):
        name = _name(item, "policy")
        vhost = _vhost_of(broker, item, vhost_name, f"policy '{name}'")
        try:
            policies.put(vhost.name, name, item)
        except PolicyError as error:
            reason = str(error).replace("Validation failed", "").strip()
            raise DefinitionsError(f"policy '{name}': {reason}") from None
        done["policies"] += 1
    try:
        for item in _items(data, "exchanges"):
            name = _name(item, "exchange")
            what = f"exchange '{name}'"
            vhost = _vhost_of(broker, item, vhost_name, what)
            if name == "" or name.startswith("amq."):
                continue
            vhost.declare_exchange(
                name,
                str(item.get("type", "direct")),
                durable=_flag(item.get("durable", True)),
                auto_delete=_flag(item.get("auto_delete", False)),
                internal=_flag(item.get("internal", False)),
                arguments=_arguments(item, what),
            )
            done["exchanges"] += 1
        for item in _items(data, "queues"):
            name = _name(item, "queue")
            what = f"queue '{name}'"
            vhost = _vhost_of(broker, item, vhost_name, what)
            vhost.declare_queue(
                name,
                owner=None,
                server_named=name.startswith("amq."),
                durable=_flag(item.get("durable", True)),
                auto_delete=_flag(item.get("auto_delete", False)),
                arguments=_arguments(item, what),
            )
            done["queues"] += 1
        for item in _items(data, "bindings"):
            source, destination = item.get("source"), item.get("destination")
            kind = item.get("destination_type", "queue")
            if not isinstance(source, str) or not isinstance(destination, str):
                raise DefinitionsError("a binding without source or destination")
            what = f"binding {source} -> {kind} {destination}"
            vhost = _vhost_of(broker, item, vhost_name, what)
            routing_key = str(item.get("routing_key", ""))
            arguments = _arguments(item, what)
            if kind == "exchange":
                vhost.bind_exchange(destination, source, routing_key, arguments)
            else:
                vhost.bind_queue(destination, source, routing_key, arguments, None)
            done["bindings"] += 1
    except AMQPError as error:
        raise DefinitionsError(error.text.partition(" - ")[2] or error.text) from None
    return done


def _import_users(broker: Broker, data: dict[str, Any]) -> int:
    """Create or replace each user (password_hash and hashing_algorithm, or password)."""
    users = []
    for item in _items(data, "users"):
        name = _name(item, "user")
        body = dict(item)
        body.setdefault("tags", "")
        if "password_hash" in body and "password" in body:
            body.pop("password")
        try:
            users.append(user_from_body(name, body))
        except BadBody as error:
            raise DefinitionsError(f"user '{name}': {error}") from None
    for user in users:
        broker.accounts.put_user(user)
    return len(users)


def _import_vhosts(broker: Broker, data: dict[str, Any]) -> int:
    """Create the vhosts amqpd does not have yet (those it has are left as they are)."""
    created = 0
    for item in _items(data, "vhosts"):
        name = _name(item, "vhost")
        if name in broker.vhosts:
            continue
        metadata = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
        meta = {
            key: value
            for key, value in {**item, **(metadata or {})}.items()
            if key in ("description", "tags", "default_queue_type")
        }
        try:
            broker.add_vhost(name, meta)
        except (StoreFailed, OSError, ValueError) as error:
            raise DefinitionsError(f"cannot create vhost '{name}': {error}") from None
        created += 1
    return created


def _import_permissions(broker: Broker, data: dict[str, Any]) -> int:
    done = 0
    for item in _items(data, "permissions"):
        user, vhost = item.get("user"), item.get("vhost")
        patterns = [item.get(key, "") for key in ("configure", "write", "read")]
        if not isinstance(user, str) or not isinstance(vhost, str):
            raise DefinitionsError("a permission without user or vhost")
        try:
            broker.accounts.set_permission(user, vhost, Permission(*patterns))
        except AccountsError as error:
            raise DefinitionsError(f"permission of '{user}' on vhost '{vhost}': {error}") from None
        done += 1
    return done


def _note_skipped(data: dict[str, Any]) -> None:
    """Parameters are not taken from a file: say so."""
    for key in ("parameters",):
        skipped: Iterable[Any] = _items(data, key)
        count = len(list(skipped))
        if count:
            log.warning("definitions: %d %s not applied (not supported yet)", count, key)


def load_file(broker: Broker, path: str) -> dict[str, int]:
    """Apply a definitions file at startup (the `definitions_file` setting)."""
    import json

    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as error:
        raise DefinitionsError(f"cannot read it: {error.strerror or error}") from None
    except ValueError as error:
        raise DefinitionsError(f"not valid JSON: {error}") from None
    done = import_definitions(broker, data)
    log.info(
        "definitions loaded from %s: %d users, %d new vhosts, %d permissions, %d policies, "
        "%d exchanges, %d queues, %d bindings",
        path,
        done["users"],
        done["vhosts"],
        done["permissions"],
        done["policies"],
        done["exchanges"],
        done["queues"],
        done["bindings"],
    )
    return done
