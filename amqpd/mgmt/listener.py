"""The management HTTP listener: aiohttp on the broker's event loop.

`ManagementServer(broker, listeners).start(bind, port)` serves the API under `/api/`
(basic auth, RabbitMQ's JSON errors), the dashboard at `/`, and samples rates once a
second; `stop()` closes it. Handlers run on the loop, so they read broker state between
AMQP events; long lists yield to the loop while they are built.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from amqpd.mgmt import (
    api_connections,
    api_definitions,
    api_exchanges,
    api_general,
    api_policies,
    api_queues,
    api_testing,
    dashboard,
    rows,
)
from amqpd.mgmt.access import Requester
from amqpd.mgmt.context import Call, Mgmt
from amqpd.mgmt.errors import ApiError
from amqpd.mgmt.router import RawJson, Reply, Router

if TYPE_CHECKING:
    from amqpd.broker import Broker

log = logging.getLogger("amqpd.mgmt")

SAMPLE_INTERVAL = 1.0  # seconds between rate samples
QUEUES_PER_SAMPLE = 1000  # queues sampled per tick (all of them when fewer)
SAMPLE_SLICE = 0.001  # seconds of sampling per event-loop turn
ENCODE_CHUNK = 100  # list items JSON-encoded per event-loop turn


def build_router() -> Router:
    router = Router()
    for module in (
        api_general,
        api_queues,
        api_exchanges,
        api_connections,
        api_definitions,
        api_policies,
        api_testing,
    ):
        module.register(router)
    return router


def _json_response(status: int, body: Any, headers: Any = ()) -> web.Response:
    text = json.dumps(body, separators=(",", ":"))
    response = web.Response(status=status, text=text, content_type="application/json")
    for name, value in headers:
        response.headers[name] = value
    return response


async def _chunked_json(items: list[Any]) -> web.Response:
    """Encode a long list a slice at a time, letting AMQP traffic run in between."""
    pieces = []
    for start in range(0, len(items), ENCODE_CHUNK):
        pieces.append(json.dumps(items[start : start + ENCODE_CHUNK], separators=(",", ":"))[1:-1])
        await asyncio.sleep(0)
    body = "[" + ",".join(pieces) + "]"
    return web.Response(status=200, text=body, content_type="application/json")


async def _send_chunks(request: web.Request, chunks: list[bytes]) -> web.StreamResponse:
    response = web.StreamResponse(status=200)
    response.content_type = "application/json"
    response.charset = "utf-8"
    response.content_length = sum(map(len, chunks))
    await response.prepare(request)
    try:
        for chunk in chunks:
            await response.write(chunk)  # waits while the client is slow to read
        await response.write_eof()
    except ConnectionError:  # the client went away mid-answer: nothing more to send
        pass
    return response


def _error(error: ApiError) -> web.Response:
    response = _json_response(error.status, {"error": error.error, "reason": error.reason})
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="RabbitMQ Management"'
    return response


class ManagementServer:
    def __init__(self, broker: Broker, listeners: list[dict[str, Any]]) -> None:
        self.mgmt = Mgmt(broker)
        self.mgmt.listeners = list(listeners)
        self.router = build_router()
        self._runner: web.AppRunner | None = None
        self._sampler: asyncio.Task[None] | None = None
        self.addresses: list[tuple[str, int]] = []

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/{tail:.*}", self._api)
        dashboard.register(app, lambda header: Requester.login(self.mgmt.broker.accounts, header))
        return app

    async def start(self, bind: str, port: int) -> list[tuple[str, int]]:
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, bind, port, backlog=128, reuse_address=True)
        await site.start()
        server = site._server  # aiohttp exposes the bound sockets only here
        sockets = getattr(server, "sockets", None) or []
        self.addresses = [sock.getsockname()[:2] for sock in sockets]
        self.mgmt.listeners.append(
            {
                "node": self.mgmt.node,
                "protocol": "http",
                "ip_address": bind,
                "port": self.addresses[0][1] if self.addresses else port,
            }
        )
        self._sampler = asyncio.create_task(self._sample_forever())
        return self.addresses

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _api(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        try:
            response = await self._respond(request)
        except Exception:  # a bug must not take the listener (or the broker) down
            log.exception("management API: error on %s %s", request.method, request.path)
            response = _json_response(
                500, {"error": "internal_server_error", "reason": "see the broker log"}
            )
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "HTTP %s %s -> %d in %.1f ms",
                request.method,
                request.path_qs,
                response.status,
                (time.monotonic() - started) * 1000,
            )
        return response

    async def _respond(self, request: web.Request) -> web.StreamResponse:
        try:
            handler, params = self.router.match(request.method, request.raw_path)
            authorization = request.headers.get("Authorization")
            requester = Requester.login(self.mgmt.broker.accounts, authorization)
            body = await request.read()
            call = Call(
                self.mgmt,
                requester,
                request.method,
                params,
                request.query,
                body,
                request.headers,
            )
            result = handler(call)
            if inspect.isawaitable(result):
                result = await result
        except ApiError as error:
            return _error(error)
        if isinstance(result, list) and len(result) > ENCODE_CHUNK:
            return await _chunked_json(result)
        if isinstance(result, RawJson):
            return await _send_chunks(request, result.chunks)
        if isinstance(result, Reply):
            if result.body is None:
                response = web.Response(status=result.status)
                for name, value in result.headers:
                    response.headers[name] = value
                return response
            return _json_response(result.status, result.body, result.headers)
        return _json_response(200, result)

    # -- rates -----------------------------------------------------------------------

    async def _sample_forever(self) -> None:
        queues: list[Any] = []
        while True:
            try:
                if not queues:
                    queues = self._all_queues()
                batch, queues = queues[:QUEUES_PER_SAMPLE], queues[QUEUES_PER_SAMPLE:]
                self.sample_totals()
                await self.sample_queues(batch)
            except Exception:  # statistics must never take the broker down
                log.exception("sampling statistics failed")
            await asyncio.sleep(SAMPLE_INTERVAL)

    def _all_queues(self) -> list[Any]:
        self.mgmt.rates.forget_older_than(time.monotonic() - 600)
        return [q for vhost in self.mgmt.broker.vhosts.values() for q in vhost.queues.values()]

    def sample_totals(self) -> None:
        """Sample every vhost, the overview and every exchange."""
        mgmt = self.mgmt
        now = time.monotonic()
        unacked = mgmt.unacked_by_queue()
        totals: dict[str, float] = {}
        sample = mgmt.rates.sample
        for vhost in mgmt.broker.vhosts.values():
            values: dict[str, float] = dict(vhost.stats.snapshot())
            values.update(api_general.vhost_counts(vhost, unacked))
            sample(("vhost", vhost.name), values, now)
            for name, value in values.items():
                totals[name] = totals.get(name, 0) + value
            for exchange in vhost.exchanges.values():
                sample(rows.exchange_key(exchange), rows.exchange_values(exchange), now)
        sample(("overview",), totals, now)

    async def sample_queues(self, queues: list[Any]) -> None:
        """Sample `queues` (a slice of all queues: with many queues each is sampled every
        few seconds), yielding to AMQP traffic every millisecond or so."""
        mgmt = self.mgmt
        unacked = mgmt.unacked_by_queue()
        sample = mgmt.rates.sample
        values, key = rows.queue_values, rows.queue_key
        clock = time.monotonic
        deadline = clock() + SAMPLE_SLICE
        for queue in queues:
            if queue.deleted:
                continue
            now = clock()
            sample(key(queue), values(queue, unacked[queue]), now)
            if now > deadline:
                await asyncio.sleep(0)
                deadline = clock() + SAMPLE_SLICE
