"""The broker process: event loop, listener, vhosts, and a graceful stop.

`Server(config).run()` starts uvloop, listens on the configured address, logs
`amqpd ready: listening on HOST:PORT` once connections are accepted, and runs until SIGTERM
or SIGINT. Then it stops accepting, closes every client connection with 320
CONNECTION_FORCED, waits briefly for them to go and returns 0. A listen failure (port
taken, bad address) is logged as one line and returns 1.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import uvloop

from amqpd.config import Config
from amqpd.connection import Connection
from amqpd.core.vhost import VHost
from amqpd.scheduler import TickScheduler

log = logging.getLogger("amqpd.server")

SHUTDOWN_GRACE = 3.0


class Broker:
    """Everything connections share: config, vhosts, the tick scheduler, live connections."""

    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.scheduler = TickScheduler(loop)
        self.vhosts = {
            name: VHost(name, schedule=self.scheduler.dispatch) for name in config.vhosts
        }
        self.connections: set[Connection] = set()


def _format_address(sockname: tuple) -> str:
    host, port = sockname[0], sockname[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config

    def run(self) -> int:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(self._main())

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        broker = Broker(self.config, loop)
        try:
            listener = await loop.create_server(
                lambda: Connection(broker), self.config.bind, self.config.port, backlog=1024
            )
        except OSError as error:
            log.error(
                "cannot listen on %s:%s: %s",
                self.config.bind,
                self.config.port,
                error.strerror or error,
            )
            return 1
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        addresses = ", ".join(_format_address(s.getsockname()) for s in listener.sockets)
        log.info("amqpd ready: listening on %s", addresses)
        await stop.wait()
        log.info("shutting down")
        listener.close()
        for connection in list(broker.connections):
            connection.force_close("shutdown")
        deadline = loop.time() + SHUTDOWN_GRACE
        while broker.connections and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for connection in list(broker.connections):
            if connection.transport is not None:
                connection.transport.abort()
        await asyncio.sleep(0)
        log.info("stopped")
        return 0
