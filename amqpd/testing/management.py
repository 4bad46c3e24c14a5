"""Create and delete vhosts on an external broker through a RabbitMQ-style management API.

Used by the pytest plugin to give each test its own vhost on a broker it did not start (a
real RabbitMQ with the management plugin): `PUT /api/vhosts/{vhost}`, then
`PUT /api/permissions/{vhost}/{user}` with full rights, and `DELETE /api/vhosts/{vhost}`
afterwards; `call()` makes any other call and returns its JSON (the test controls use it).
Blocking calls with the standard library only.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote


class ManagementError(RuntimeError):
    """The management API refused or could not be reached."""


class ManagementClient:
    """A few calls of the management HTTP API at `base_url`, with basic auth."""

    def __init__(self, base_url: str, user: str, password: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self._auth = f"Basic {token}"
        self.timeout = timeout

    def call(
        self,
        method: str,
        path: str,
        body: object | None = None,
        headers: dict[str, str] | None = None,
        missing_ok: bool = False,
    ) -> Any:
        """The decoded JSON answer (None if empty, or 404 with `missing_ok`)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Authorization", self._auth)
        request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and missing_ok:
                return None
            detail = exc.read().decode(errors="replace").strip()
            raise ManagementError(
                f"{method} {path}: HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail else "")
            ) from None
        except OSError as exc:
            raise ManagementError(f"{method} {self.base_url}{path}: {exc}") from None
        return json.loads(raw) if raw.strip() else None

    def _call(self, method: str, path: str, body: object | None = None) -> None:
        self.call(method, path, body)

    def create_vhost(self, vhost: str, grant_to: str) -> None:
        """Create `vhost` and give user `grant_to` all rights on it."""
        name = quote(vhost, safe="")
        self._call("PUT", f"/api/vhosts/{name}", {})
        everything = {"configure": ".*", "write": ".*", "read": ".*"}
        self._call("PUT", f"/api/permissions/{name}/{quote(grant_to, safe='')}", everything)

    def delete_vhost(self, vhost: str) -> None:
        self._call("DELETE", f"/api/vhosts/{quote(vhost, safe='')}")
