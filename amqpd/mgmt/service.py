"""Starting and stopping the operator listeners: management API and Prometheus metrics.

`OperatorListeners(broker, amqp_addresses)` is what the server starts once AMQP is up.
Each listener that binds logs one line naming its URL (port 0 picks a free port); one
that cannot bind is logged as an error and left out, so AMQP clients are never turned
away because, say, another broker's management plugin holds port 15672.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from amqpd.broker import Broker
    from amqpd.mgmt.listener import ManagementServer
    from amqpd.mgmt.metrics import MetricsServer

log = logging.getLogger("amqpd.mgmt")


def _ready_level() -> int:
    """Lines naming a listener's address are what scripts wait for: never hidden."""
    return max(logging.INFO, logging.getLogger().getEffectiveLevel())


def _url(host: str, port: int, path: str) -> str:
    return f"http://[{host}]:{port}{path}" if ":" in host else f"http://{host}:{port}{path}"


class OperatorListeners:
    def __init__(self, broker: Broker, amqp_addresses: list[tuple[str, int]]) -> None:
        self.broker = broker
        self.config = broker.config
        self.amqp_addresses = amqp_addresses
        self.management: ManagementServer | None = None
        self.metrics: MetricsServer | None = None

    async def start(self) -> None:
        from amqpd.mgmt.inspect import node_name
        from amqpd.mgmt.listener import ManagementServer
        from amqpd.mgmt.metrics import MetricsServer

        config = self.config
        listeners: list[dict[str, Any]] = [
            {"node": node_name(), "protocol": "amqp", "ip_address": host, "port": port}
            for host, port in self.amqp_addresses
        ]
        management = ManagementServer(self.broker, listeners)
        try:
            addresses = await management.start(config.management_bind, config.management_port)
        except OSError as error:
            log.error(
                "cannot listen for the management API on %s:%s: %s",
                config.management_bind,
                config.management_port,
                error.strerror or error,
            )
            await management.stop()
        else:
            self.management = management
            host, port = addresses[0]
            log.log(_ready_level(), "management API on %s", _url(host, port, "/"))
        metrics = MetricsServer(self.broker)
        try:
            addresses = await metrics.start(config.management_bind, config.prometheus_port)
        except OSError as error:
            log.error(
                "cannot listen for Prometheus metrics on %s:%s: %s",
                config.management_bind,
                config.prometheus_port,
                error.strerror or error,
            )
            await metrics.stop()
        else:
            self.metrics = metrics
            host, port = addresses[0]
            if self.management is not None:
                self.management.mgmt.listeners.append(
                    {
                        "node": node_name(),
                        "protocol": "http/prometheus",
                        "ip_address": config.management_bind,
                        "port": port,
                    }
                )
            log.log(_ready_level(), "Prometheus metrics on %s", _url(host, port, "/metrics"))

    async def stop(self) -> None:
        for server in (self.management, self.metrics):
            if server is not None:
                await server.stop()
