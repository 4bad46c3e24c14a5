"""Users, vhosts and permissions: the config file's, changed at run time over the API.

`Accounts(config, path)` merges the config file's users and vhosts with what was created,
changed or deleted at run time (the management API, definitions imports), which it keeps
in `path` (data_dir/accounts.json, written atomically; passwords only as salted hashes).
For a name both know, the run-time change wins: a config user changed or deleted over
the API stays changed or deleted after a restart; users and vhosts the config file adds
later appear at the next start. `user`, `users`, `vhosts`, `vhost_meta` read; `put_user`,
`delete_user`, `set_permission`, `clear_permission`, `put_vhost`, `delete_vhost` change
and save (raising `AccountsError` with RabbitMQ's reason for what it refuses). `access`
gives the live `auth.Access` of a connection, which follows permission changes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import weakref
from dataclasses import replace
from pathlib import Path
from typing import Any

from amqpd.auth import Access
from amqpd.config import Config, Permission, User
from amqpd.passwords import SHA256, hash_password

log = logging.getLogger("amqpd.server")

FILE_NAME = "accounts.json"
VHOST_FIELDS = ("description", "tags", "default_queue_type")


class AccountsError(ValueError):
    """A change RabbitMQ refuses too; `reason` is its JSON reason (a string or a list)."""

    def __init__(self, reason: Any) -> None:
        super().__init__(str(reason))
        self.reason = reason


def accounts_path(data_dir: str) -> Path:
    """Where the run-time users, vhosts and permissions of this data directory are kept."""
    return Path(data_dir) / FILE_NAME


def check_pattern(pattern: Any) -> str:
    """A permission regex as auth compiles it; AccountsError if it is none."""
    if not isinstance(pattern, str):
        raise AccountsError(["invalid_regexp", str(pattern)])
    try:
        re.compile(pattern.encode())
    except re.error as error:
        raise AccountsError(["invalid_regexp", pattern, str(error)]) from None
    return pattern


def hashed(user: User) -> User:
    """`user` with its password as a hash (a config user's plaintext is never stored)."""
    if user.password_hash or not user.has_password:
        return replace(user, password="")
    return replace(user, password="", password_hash=hash_password(user.password),
                   hashing_algorithm=SHA256)  # fmt: skip


class Accounts:
    """The users, vhosts and permissions in effect, and their saved run-time changes."""

    def __init__(self, config: Config, path: Path | None) -> None:
        self.path = path
        self._config_users = {user.name: user for user in config.users}
        self._config_vhosts = tuple(config.vhosts)
        self._stored: dict[str, User] = {}  # users created or changed at run time
        self._gone_users: set[str] = set()  # config users deleted at run time
        self._stored_vhosts: dict[str, dict[str, Any]] = {}  # name -> metadata
        self._gone_vhosts: set[str] = set()
        self._users: dict[str, User] = {}
        self._vhosts: list[str] = []
        self._accesses: dict[tuple[str, str], weakref.WeakSet[Access]] = {}
        self._rebuild()

    def load(self) -> None:
        """Read the saved run-time changes (if any); AccountsError if the file is damaged."""
        path = self.path
        if path is None or not path.exists():
            return
        try:
            self._load(path)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise AccountsError(f"cannot read {path}: {error!r}") from None
        self._rebuild()

    # --- reading -------------------------------------------------------------------------

    def user(self, name: str) -> User | None:
        return self._users.get(name)

    def users(self) -> list[User]:
        return list(self._users.values())

    def vhosts(self) -> list[str]:
        return list(self._vhosts)

    def has_vhost(self, name: str) -> bool:
        return name in self._vhosts

    def vhost_meta(self, name: str) -> dict[str, Any]:
        """description, tags and default_queue_type as set over the API ({} if never)."""
        return dict(self._stored_vhosts.get(name, {}))

    def access(self, user: str, vhost: str) -> Access | None:
        """The user's live access to `vhost` (None: no permission there)."""
        found = self._users.get(user)
        permission = found.permission(vhost) if found is not None else None
        if permission is None:
            return None
        access = Access(user, vhost, permission)
        self._accesses.setdefault((user, vhost), weakref.WeakSet()).add(access)
        return access

    # --- changing --------------------------------------------------------------------------

    def put_user(self, user: User) -> bool:
        """Create or replace a user (its permissions kept); True if it is new."""
        old = self._users.get(user.name)
        if old is not None:
            user = replace(user, permissions=dict(old.permissions))
        self._stored[user.name] = hashed(user)
        self._gone_users.discard(user.name)
        self._changed()
        return old is None

    def delete_user(self, name: str) -> bool:
        if name not in self._users:
            return False
        self._stored.pop(name, None)
        if name in self._config_users:
            self._gone_users.add(name)
        self._changed()
        return True

    def set_permission(self, user: str, vhost: str, permission: Permission) -> bool:
        """Set a user's permission on a vhost; True if it had none there."""
        found = self._users.get(user)
        if found is None or vhost not in self._vhosts:
            raise AccountsError("vhost_or_user_not_found")
        for pattern in (permission.configure, permission.write, permission.read):
            check_pattern(pattern)
        created = found.permission(vhost) is None
        self._stored[user] = hashed(
            replace(found, permissions={**found.permissions, vhost: permission})
        )
        self._changed()
        return created

    def clear_permission(self, user: str, vhost: str) -> bool:
        found = self._users.get(user)
        if found is None or found.permission(vhost) is None:
            return False
        kept = {name: perm for name, perm in found.permissions.items() if name != vhost}
        self._stored[user] = hashed(replace(found, permissions=kept))
        self._changed()
        return True

    def put_vhost(self, name: str, meta: dict[str, Any]) -> bool:
        """Create a vhost or change its metadata; True if it is new."""
        created = name not in self._vhosts
        self._stored_vhosts[name] = {key: meta[key] for key in VHOST_FIELDS if key in meta}
        self._gone_vhosts.discard(name)
        self._changed()
        return created

    def delete_vhost(self, name: str) -> bool:
        """Delete a vhost and every permission on it."""
        if name not in self._vhosts:
            return False
        self._stored_vhosts.pop(name, None)
        if name in self._config_vhosts:
            self._gone_vhosts.add(name)
        for user in list(self._users.values()):
            if user.permission(name) is not None:
                kept = {vhost: perm for vhost, perm in user.permissions.items() if vhost != name}
                self._stored[user.name] = hashed(replace(user, permissions=kept))
        self._changed()
        return True

    # --- inside ----------------------------------------------------------------------------

    def _changed(self) -> None:
        self._rebuild()
        self._save()
        for (user, vhost), accesses in list(self._accesses.items()):
            found = self._users.get(user)
            permission = found.permission(vhost) if found is not None else None
            for access in list(accesses):
                access.update(permission)
            if not accesses:
                del self._accesses[(user, vhost)]

    def _rebuild(self) -> None:
        vhosts = [name for name in self._config_vhosts if name not in self._gone_vhosts]
        vhosts += [name for name in self._stored_vhosts if name not in vhosts]
        self._vhosts = vhosts
        users = {
            name: user
            for name, user in self._config_users.items()
            if name not in self._gone_users and name not in self._stored
        }
        users.update(self._stored)
        self._users = users

    def _load(self, path: Path) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        for item in data.get("users", []):
            permissions = {
                vhost: Permission(perm["configure"], perm["write"], perm["read"])
                for vhost, perm in item.get("permissions", {}).items()
            }
            user = User(
                item["name"],
                "",
                permissions,
                tuple(item.get("tags", ())),
                item.get("password_hash", ""),
                item.get("hashing_algorithm", SHA256),
                has_password=bool(item.get("password_hash")),
            )
            self._stored[user.name] = user
        self._gone_users = set(data.get("deleted_users", []))
        for item in data.get("vhosts", []):
            self._stored_vhosts[item["name"]] = {
                key: item[key] for key in VHOST_FIELDS if key in item
            }
        self._gone_vhosts = set(data.get("deleted_vhosts", []))
        overridden = sorted(set(self._config_users) & (set(self._stored) | self._gone_users))
        if overridden:
            log.info(
                "users changed at run time (%s) override the config file's entries: %s",
                path,
                ", ".join(overridden),
            )

    def _save(self) -> None:
        if self.path is None:
            return
        data = {
            "users": [_user_json(user) for user in self._stored.values()],
            "deleted_users": sorted(self._gone_users),
            "vhosts": [{"name": name, **meta} for name, meta in self._stored_vhosts.items()],
            "deleted_vhosts": sorted(self._gone_vhosts),
        }
        write_atomically(self.path, json.dumps(data, indent=1).encode())


def _user_json(user: User) -> dict[str, Any]:
    return {
        "name": user.name,
        "password_hash": user.password_hash if user.has_password else "",
        "hashing_algorithm": user.hashing_algorithm,
        "tags": list(user.tags),
        "permissions": {
            vhost: {"configure": perm.configure, "write": perm.write, "read": perm.read}
            for vhost, perm in user.permissions.items()
        },
    }


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: a crash leaves the old file or the new one, never a mix."""
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # hashes
    with open(descriptor, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
