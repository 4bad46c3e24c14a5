"""Logins and permissions: SASL PLAIN and AMQPLAIN, RabbitMQ-style permission regexes.

`parse_credentials` reads a SASL response; `authenticate` returns the `User` or None
(users are looked up in anything with `user(name)`: the `Config`, the broker's accounts).
`Access` holds one user's compiled configure/write/read patterns on one vhost; `check`
raises the 403 channel error RabbitMQ sends when a resource name does not match. An empty
pattern grants nothing. `update` swaps the patterns of a live `Access` (a permission set
or cleared at run time): every channel holding it follows at its next check.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from typing import Protocol

from amqpd.config import Permission, User
from amqpd.core.errors import ACCESS_REFUSED, ChannelError
from amqpd.passwords import PasswordCheck, hash_password
from amqpd.wire.tables import decode_table

MECHANISMS = ("PLAIN", "AMQPLAIN")  # offered in this order, as RabbitMQ does


def parse_credentials(mechanism: str, response: bytes) -> tuple[str, str] | None:
    """(login, password) from a SASL response, or None if it does not parse."""
    if mechanism == "PLAIN":
        parts = response.split(b"\x00")
        if len(parts) != 3:
            return None
        return parts[1].decode(errors="replace"), parts[2].decode(errors="replace")
    if mechanism == "AMQPLAIN":
        try:
            _end, table = decode_table(struct.pack(">I", len(response)) + response)
        except ValueError:  # any malformed table is simply a failed login
            return None
        login, password = table.get("LOGIN"), table.get("PASSWORD")
        if isinstance(login, bytes):
            login = login.decode(errors="replace")
        if isinstance(password, bytes):
            password = password.decode(errors="replace")
        if not isinstance(login, str) or not isinstance(password, str):
            return None
        return login, password
    return None


class Users(Protocol):
    def user(self, name: str) -> User | None: ...


_NOBODY = PasswordCheck(password_hash=hash_password("", salt=b"\0\0\0\0"))


def authenticate(users: Users, login: str, password: str) -> User | None:
    """The user if `password` is theirs (plaintext or hash, compared in constant time)."""
    user = users.user(login)
    if user is None:
        _NOBODY.matches(password)  # as long as a real check: no timing hint of unknown names
        return None
    return user if user.password_check().matches(password) else None


def is_loopback(host: str) -> bool:
    """Whether a peer address is a loopback one (127.0.0.0/8, ::1, ::ffff:127.x.x.x)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def compile_permission(pattern: str) -> re.Pattern[bytes] | None:
    """A permission regex as RabbitMQ runs it: PCRE without its unicode option, i.e. over the
    name's UTF-8 bytes, so `\\w`, `\\d`, `\\s` are ASCII only and `.` is one byte."""
    return re.compile(pattern.encode()) if pattern else None


def _compiled(permission: Permission) -> dict[str, re.Pattern[bytes] | None]:
    return {
        "configure": compile_permission(permission.configure),
        "write": compile_permission(permission.write),
        "read": compile_permission(permission.read),
    }


class Access:
    """What one user may do on one vhost."""

    def __init__(self, user: str, vhost: str, permission: Permission) -> None:
        self.user = user
        self.vhost = vhost
        self.permission = permission
        self._patterns = _compiled(permission)
        self._granted: dict[tuple[str, str, str], bool] = {}

    def update(self, permission: Permission | None) -> None:
        """Follow a permission set (or cleared: None grants nothing) at run time."""
        permission = permission or Permission("", "", "")
        if permission != self.permission:
            self.permission = permission
            self._patterns = _compiled(permission)
            self._granted = {}

    def check(self, action: str, kind: str, name: str) -> None:
        """Raise ACCESS_REFUSED unless `action` on resource `kind` `name` is allowed."""
        key = (action, kind, name)
        granted = self._granted.get(key)
        if granted is None:
            pattern = self._patterns[action]
            granted = pattern is not None and pattern.search(name.encode()) is not None
            if len(self._granted) < 10000:
                self._granted[key] = granted
        if not granted:
            raise ChannelError(
                ACCESS_REFUSED,
                f"access to {kind} '{name}' in vhost '{self.vhost}' refused for user '{self.user}'",
            )
