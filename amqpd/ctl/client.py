"""A small synchronous client for the management HTTP API, for `amqpctl`.

`ApiClient(url, user, password)` sends requests with basic auth and returns decoded JSON.
Failures raise `CtlError` carrying the exit code `amqpctl` should end with: 69 when the
broker cannot be reached, 77 for a refused login or permission, 65 for a request the
broker rejected (not found, bad arguments), and the HTTP `status` when there was one.
The pytest plugin's `testing.management` client is built on this one.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_NOPERM = 77


class CtlError(Exception):
    def __init__(self, message: str, code: int, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status  # the HTTP status of a refused request


def segment(name: str) -> str:
    return quote(name, safe="")


class ApiClient:
    def __init__(self, url: str, user: str, password: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._auth = f"Basic {token}"
        self.timeout = timeout

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", self._auth)
        request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            raise _http_error(error) from None
        except (TimeoutError, urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise CtlError(
                f"unable to connect to the management API at {self.url}: {reason}",
                EX_UNAVAILABLE,
            ) from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise CtlError(f"{self.url}{path} did not answer with JSON", EX_SOFTWARE) from None

    def get(self, path: str) -> Any:
        return self.request("GET", path)


def _http_error(error: urllib.error.HTTPError) -> CtlError:
    try:
        body = json.loads(error.read() or b"{}")
    except ValueError:
        body = None
    reason = error.reason
    if isinstance(body, dict):
        reason = body.get("reason") or body.get("error") or reason
    if error.code == 404:
        return CtlError(f"not found: {reason}", EX_DATAERR, 404)
    if error.code == 401:
        return CtlError(f"access refused: {reason}", EX_NOPERM, 401)
    return CtlError(f"{reason} (HTTP {error.code})", EX_DATAERR, error.code)
