"""Routing for the management API: RabbitMQ's paths with percent-encoded segments.

Vhost names are path segments (`/` is `%2F`), so paths are split on `/` *before* decoding
each segment. `Router.add(method, "/api/queues/{vhost}/{queue}", handler)` registers a
route; `match(method, raw_path)` returns the handler and decoded parameters, or raises
404 / 405 as RabbitMQ does. Handlers take a `Call` and return a JSON value or a `Reply`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from amqpd.mgmt.context import Call
from amqpd.mgmt.errors import method_not_allowed, not_found

Handler = Callable[[Call], Any | Awaitable[Any]]


@dataclass(frozen=True)
class Reply:
    """A response other than 200 with a JSON body."""

    status: int
    body: Any = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RawJson:
    """A 200 response whose JSON the handler encoded already: UTF-8 bytes, in pieces that
    are sent one after the other (no copy joins a long answer into one buffer)."""

    chunks: list[bytes]


NO_CONTENT = Reply(204)
CREATED = Reply(201)


class Router:
    def __init__(self) -> None:
        self._routes: list[tuple[tuple[str, ...], dict[str, Handler]]] = []

    def add(self, method: str, path: str, handler: Handler) -> None:
        pattern = tuple(path.strip("/").split("/"))
        for existing, handlers in self._routes:
            if existing == pattern:
                handlers[method] = handler
                return
        self._routes.append((pattern, {method: handler}))

    def match(self, method: str, raw_path: str) -> tuple[Handler, dict[str, str]]:
        segments = [unquote(part) for part in raw_path.split("?", 1)[0].strip("/").split("/")]
        for pattern, handlers in self._routes:
            if len(pattern) != len(segments):
                continue
            params: dict[str, str] = {}
            for expected, actual in zip(pattern, segments, strict=True):
                if expected.startswith("{"):
                    params[expected[1:-1]] = actual
                elif expected != actual:
                    break
            else:
                handler = handlers.get(method)
                if handler is None and method == "HEAD":
                    handler = handlers.get("GET")
                if handler is None:
                    raise method_not_allowed()
                return handler, params
        raise not_found()
