"""Who is asking: HTTP basic auth against amqpd's users, and RabbitMQ's tag rules.

`Requester.login(users, header)` checks an `Authorization: Basic` header and returns the
user, or raises 401 as RabbitMQ does (no or wrong credentials, or a user without a
management tag). `administrator` may do everything; `monitoring` sees every vhost and every
connection; `management` (and `policymaker`) see the vhosts they have permissions on and
their own connections. Resource rules (configure/write/read patterns) are `auth.Access`'s.
"""

from __future__ import annotations

import base64
import binascii
import logging

from amqpd.auth import Access, Users, authenticate
from amqpd.config import User
from amqpd.core.errors import ChannelError
from amqpd.mgmt.errors import ApiError, not_authorised

log = logging.getLogger("amqpd.mgmt")

MANAGEMENT_TAGS = frozenset({"administrator", "monitoring", "policymaker", "management"})


class Requester:
    """One authenticated user of the API."""

    def __init__(self, user: User) -> None:
        self.user = user
        self.name = user.name
        self.tags = user.tags
        self.is_admin = "administrator" in user.tags
        self.is_monitor = self.is_admin or "monitoring" in user.tags

    @classmethod
    def login(cls, users: Users, header: str | None) -> Requester:
        if not header or not header.lower().startswith("basic "):
            raise not_authorised("Not_Authorized")
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise not_authorised("Not_Authorized") from None
        name, _, password = decoded.partition(":")
        user = authenticate(users, name, password)
        if user is None:
            log.warning("HTTP access denied: user '%s' - invalid credentials", name)
            raise not_authorised("Login failed")
        if not MANAGEMENT_TAGS.intersection(user.tags):
            log.warning("HTTP access denied: user '%s' - not a management user", name)
            raise not_authorised("Not management user")
        return cls(user)

    def require_admin(self) -> None:
        if not self.is_admin:
            raise not_authorised("Not administrator user")

    def require_monitor(self) -> None:
        if not self.is_monitor:
            raise not_authorised("Not monitor user")

    def sees_vhost(self, vhost: str) -> bool:
        return self.is_monitor or self.user.permission(vhost) is not None

    def require_vhost(self, vhost: str) -> None:
        """Users without access to a vhost are told so, as RabbitMQ does."""
        if self.user.permission(vhost) is None and not self.is_admin:
            raise not_authorised("Access refused.")

    def sees_connection(self, user: str) -> bool:
        return self.is_monitor or user == self.name

    def check(self, vhost: str, action: str, kind: str, name: str) -> None:
        """RabbitMQ's configure/write/read check for a resource, as an HTTP 401."""
        permission = self.user.permission(vhost)
        if permission is None:
            raise not_authorised("Access refused.")
        try:
            Access(self.name, vhost, permission).check(action, kind, name)
        except ChannelError:
            raise ApiError(401, "not_authorised", "Access refused.") from None
