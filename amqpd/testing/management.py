"""Create and delete vhosts on an external broker through a RabbitMQ-style management API.

Used by the pytest plugin to give each test its own vhost on a broker it did not start (a
real RabbitMQ with the management plugin): `PUT /api/vhosts/{vhost}`, then
`PUT /api/permissions/{vhost}/{user}` with full rights, and `DELETE /api/vhosts/{vhost}`
afterwards; `call()` makes any other call and returns its JSON (the test controls use it).
Blocking calls over `amqpctl`'s HTTP client (amqpd.ctl.client); failures raise
`ManagementError`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from amqpd.ctl.client import ApiClient, CtlError


class ManagementError(RuntimeError):
    """The management API refused or could not be reached."""


class ManagementClient:
    """A few calls of the management HTTP API at `base_url`, with basic auth."""

    def __init__(self, base_url: str, user: str, password: str, timeout: float = 10.0) -> None:
        self._api = ApiClient(base_url, user, password, timeout)
        self.base_url = self._api.url

    def call(
        self,
        method: str,
        path: str,
        body: object | None = None,
        headers: dict[str, str] | None = None,
        missing_ok: bool = False,
    ) -> Any:
        """The decoded JSON answer (None if empty, or 404 with `missing_ok`)."""
        try:
            return self._api.request(method, path, body, headers)
        except CtlError as error:
            if error.status == 404 and missing_ok:
                return None
            if error.status is None:  # not reached, or not JSON
                raise ManagementError(f"{method} {self.base_url}{path}: {error}") from None
            raise ManagementError(f"{method} {path}: HTTP {error.status}: {error}") from None

    def create_vhost(self, vhost: str, grant_to: str) -> None:
        """Create `vhost` and give user `grant_to` all rights on it."""
        name = quote(vhost, safe="")
        self.call("PUT", f"/api/vhosts/{name}", {})
        everything = {"configure": ".*", "write": ".*", "read": ".*"}
        self.call("PUT", f"/api/permissions/{name}/{quote(grant_to, safe='')}", everything)

    def delete_vhost(self, vhost: str) -> None:
        self.call("DELETE", f"/api/vhosts/{quote(vhost, safe='')}")
