"""The broker process: event loop, listener, vhosts and their stores, a graceful stop.

`Server(config).run()` recovers every vhost from its log in `data_dir`, starts uvloop,
listens on the configured address, logs which codec it runs (`codec: compiled` or
`codec: pure-python`, amqpd/accel.py) and then `amqpd ready: listening on HOST:PORT` once
connections are accepted, and runs until SIGTERM or SIGINT. Then it stops accepting,
closes every client connection with 320 CONNECTION_FORCED, closes the stores (bounded:
a reclaim in progress is abandoned) and returns 0; a second SIGTERM or SIGINT during that
stop exits at once with code 1 (the log is left as a crash would leave it). A listen
failure (port taken, bad address) or an unusable data directory is logged as one line and
returns 1; a store that cannot write stops the broker with exit code 1.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import ssl
from typing import Any, Literal

import uvloop

from amqpd import accel
from amqpd.adapter import AmqpProtocol
from amqpd.broker import Broker
from amqpd.config import Config
from amqpd.store import StoreFailed, StoreLocked
from amqpd.tls import server_context

log = logging.getLogger("amqpd.server")

SHUTDOWN_GRACE = 3.0


def _format_address(sockname: tuple) -> str:
    host, port = sockname[0], sockname[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config

    @staticmethod
    def _on_signal(broker: Broker) -> None:
        if broker.stopping.is_set():
            log.warning("second stop signal: exiting now")
            logging.shutdown()
            os._exit(1)
        broker.stopping.set()

    def run(self) -> int:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(self._main())

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        broker = Broker(self.config, loop)
        try:
            broker.open_vhosts()
        except (StoreFailed, OSError) as error:
            hint = "; stop it or give this amqpd another --data-dir"
            hint = hint if isinstance(error, StoreLocked) else ""
            log.error("cannot open the data directory %s: %s%s", self.config.data_dir, error, hint)
            broker.close_stores()
            return 1
        if self.config.definitions_file:
            from amqpd.mgmt.definitions import DefinitionsError, load_file

            try:
                load_file(broker, self.config.definitions_file)
            except DefinitionsError as error:
                log.error("cannot load definitions %s: %s", self.config.definitions_file, error)
                broker.close_stores()
                return 1
        # Messages are many small, acyclic objects: collect generation 0 less often and
        # keep everything alive after recovery out of the collector's scans.
        gc.collect()
        gc.freeze()
        gc.set_threshold(100_000, 50, 100)
        try:
            listener = await loop.create_server(
                lambda: AmqpProtocol(broker, broker.connection_clock),
                self.config.bind,
                self.config.port,
                backlog=1024,
            )
        except OSError as error:
            log.error(
                "cannot listen on %s:%s: %s",
                self.config.bind,
                self.config.port,
                error.strerror or error,
            )
            broker.close_stores()
            return 1
        tls_listener = await self._listen_tls(loop, broker) if self.config.tls_certfile else None
        if tls_listener is False:
            listener.close()
            broker.close_stores()
            return 1
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, broker)
        addresses = ", ".join(_format_address(s.getsockname()) for s in listener.sockets)
        log.info("codec: %s", accel.active())
        # The ready line is what scripts wait for: never hide it below the log level.
        ready_level = max(logging.INFO, logging.getLogger().getEffectiveLevel())
        log.log(ready_level, "amqpd ready: listening on %s", addresses)
        watches = [
            asyncio.create_task(broker.watch_disk()),
            asyncio.create_task(broker.watch_memory()),
        ]
        operators = None
        if self.config.management:
            from amqpd.mgmt.service import OperatorListeners

            operators = OperatorListeners(broker, [s.getsockname()[:2] for s in listener.sockets])
            await operators.start()
        await broker.stopping.wait()
        for watch in watches:
            watch.cancel()
        log.info("shutting down")
        if operators is not None:
            await operators.stop()
        listener.close()
        if tls_listener:
            tls_listener.close()
        for connection in list(broker.connections):
            connection.force_close("shutdown")
        deadline = loop.time() + SHUTDOWN_GRACE
        while broker.connections and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for connection in list(broker.connections):
            connection.abort()
        await asyncio.sleep(0)
        # The store's writer thread may be mid-reclaim: closing it blocks this thread for up
        # to its CLOSE_TIMEOUT, and a second signal must still be heard, so close elsewhere.
        await asyncio.to_thread(broker.close_stores)
        log.info("stopped")
        return 1 if broker.fatal is not None else 0

    async def _listen_tls(
        self, loop: asyncio.AbstractEventLoop, broker: Broker
    ) -> asyncio.Server | Literal[False]:
        """The amqps listener (logged as one line), or False after logging why it cannot be."""
        config = self.config
        try:
            context = server_context(config)
        except (ssl.SSLError, OSError) as error:
            log.error("cannot use the TLS certificate or key: %s", error)
            return False
        # A failed TLS handshake (a plaintext client, a bad certificate) is the client's
        # problem: one short line at debug level, never a traceback.
        loop.set_exception_handler(_quiet_tls_errors)
        try:
            server = await loop.create_server(
                lambda: AmqpProtocol(broker),
                config.bind,
                config.tls_port,
                ssl=context,
                ssl_handshake_timeout=config.handshake_timeout,
                backlog=1024,
            )
        except OSError as error:
            log.error(
                "cannot listen for TLS on %s:%s: %s",
                config.bind,
                config.tls_port,
                error.strerror or error,
            )
            return False
        addresses = ", ".join(_format_address(s.getsockname()) for s in server.sockets)
        log.info("amqps (TLS) accepting at %s", addresses)
        return server


def _quiet_tls_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    error = context.get("exception")
    if isinstance(error, (ssl.SSLError, ConnectionError, TimeoutError)):
        log.debug("TLS connection failed: %s", str(error)[:200])
        return
    loop.default_exception_handler(context)
