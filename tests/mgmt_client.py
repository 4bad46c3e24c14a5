"""Test helpers for the management API: a tiny HTTP client and an amqpd with users.

`Api(port)` sends real HTTP requests (urllib, basic auth) and returns status, decoded JSON
and headers. `start_mgmt_broker(tmp)` starts amqpd with a config holding users of each
management tag and a second vhost, and returns the process and its management port.
`REFERENCE` is the reference RabbitMQ's API on 15673; `reference_up()` says if it answers.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.broker_process import BrokerProcess

CONFIG = """\
vhosts: [/, other]
users:
  - name: guest
    password: guest
    tags: [administrator]
    permissions:
      /: {}
      other: {}
  - name: watcher
    password: w
    tags: monitoring
    permissions:
      /: {}
  - name: app
    password: a
    tags: [management]
    permissions:
      /: {configure: "^app\\\\.", write: ".*", read: ".*"}
  - name: plain
    password: p
    permissions:
      /: {}
"""


def q(name: str) -> str:
    """A path segment (vhost `/` is `%2F`)."""
    return quote(name, safe="")


class Api:
    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.base = f"http://{host}:{port}"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        user: tuple[str, str] | None = ("guest", "guest"),
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if user is not None:
            token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                status, reply_headers = response.status, response.headers
        except urllib.error.HTTPError as error:
            raw, status, reply_headers = error.read(), error.code, error.headers
        return status, (json.loads(raw) if raw else None), reply_headers

    def get(self, path: str, **kwargs: Any) -> Any:
        status, body, _headers = self.request("GET", path, **kwargs)
        assert status == 200, (path, status, body)
        return body


REFERENCE = Api(15673)  # the reference RabbitMQ's management API, when one runs


def reference_up() -> bool:
    try:
        return REFERENCE.request("GET", "/api/overview")[0] == 200
    except OSError:
        return False


def start_mgmt_broker(tmp: Path, *extra: str) -> tuple[BrokerProcess, Api]:
    config = tmp / "amqpd.yaml"
    config.write_text(CONFIG)
    proc = BrokerProcess(tmp / "data", "--config", str(config), *extra).start()
    return proc, Api(proc.http_port())
