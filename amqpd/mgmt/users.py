"""RabbitMQ's JSON for users, permissions and vhost metadata, read and written.

`user_json` shows a user as `/api/users` and definitions exports do (a plaintext password
from the config file only as a fresh salted hash); `user_from_body` reads a `PUT
/api/users/{name}` body or a definitions entry with RabbitMQ 3.10's rules, `vhost_meta`
a vhost's description, tags and default queue type. Refusals raise `BadBody` carrying
RabbitMQ's reason (a text, or a list as its Erlang terms show).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from amqpd.config import Permission, User
from amqpd.passwords import SHA256, hash_password


class BadBody(ValueError):
    def __init__(self, reason: Any) -> None:
        super().__init__(str(reason))
        self.reason = reason


def user_json(user: User) -> dict[str, Any]:
    if not user.has_password:
        shown = ""
    elif user.password_hash:
        shown = user.password_hash
    else:  # a config file's plaintext password: shown only as a (fresh) hash
        shown = hash_password(user.password)
    return {
        "name": user.name,
        "password_hash": shown,
        "hashing_algorithm": user.hashing_algorithm,
        "tags": list(user.tags),
        "limits": {},
    }


def permission_json(user: str, vhost: str, permission: Permission) -> dict[str, Any]:
    return {
        "user": user,
        "vhost": vhost,
        "configure": permission.configure,
        "write": permission.write,
        "read": permission.read,
    }


def permissions(users: list[User], vhost: str | None = None) -> list[dict[str, Any]]:
    return [
        permission_json(user.name, name, permission)
        for user in users
        for name, permission in user.permissions.items()
        if vhost is None or name == vhost
    ]


def tags_of(raw: Any) -> tuple[str, ...]:
    """RabbitMQ's `tags`: a comma-separated string or a list of names (any names)."""
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise BadBody("tags must be a comma-separated string or a list of strings")
    return tuple(tag.strip() for tag in items if tag.strip())


def user_from_body(name: str, body: dict[str, Any]) -> User:
    """A user from a PUT body (or a definitions entry), as RabbitMQ validates it."""
    if "tags" not in body:
        raise BadBody("tags_not_present")
    password, given_hash = body.get("password"), body.get("password_hash")
    if password is not None and given_hash is not None:
        raise BadBody("both_password_and_password_hash_are_provided")
    algorithm = body.get("hashing_algorithm") or SHA256
    if not isinstance(algorithm, str):
        raise BadBody("hashing_algorithm must be a string")
    tags = tags_of(body["tags"])
    if password is not None:
        if not isinstance(password, str):
            raise BadBody("password must be a string")
        return User(name, "", {}, tags, hash_password(password), SHA256)
    if given_hash is not None:
        if not isinstance(given_hash, str):
            raise BadBody("password_hash must be a string")
        try:
            base64.b64decode(given_hash.encode(), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise BadBody(["not_base64", given_hash]) from None
        return User(name, "", {}, tags, given_hash, algorithm, has_password=bool(given_hash))
    return User(name, "", {}, tags, "", SHA256, has_password=False)


def vhost_meta(body: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if "description" in body:
        if not isinstance(body["description"], str):
            raise BadBody("description must be a string")
        meta["description"] = body["description"]
    if "tags" in body:
        meta["tags"] = list(tags_of(body["tags"]))
    if "default_queue_type" in body:
        kind = body["default_queue_type"]
        if kind not in ("classic", "quorum", "stream", "undefined"):
            raise BadBody(f"unsupported default queue type {kind!r}")
        meta["default_queue_type"] = kind
    return meta
