"""Prometheus metrics with rabbitmq_prometheus's names, on their own listener.

`/metrics` has the totals dashboards use (connections, channels, consumers, queues, queue
message counts, and the global published / routed / delivered / acknowledged / confirmed /
unroutable counters), `/metrics/per-object` adds one series per queue (`metrics_queues`,
written in slices). amqpd's own series
(`amqpd_*`) are the process memory and each vhost's recovery time. Values are read from the
broker when scraped; the collector keeps no state of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from amqpd import __version__
from amqpd.core.stats import MessageStats
from amqpd.mgmt import inspect, shapes
from amqpd.mgmt.metrics_queues import per_queue_text

if TYPE_CHECKING:
    from amqpd.broker import Broker

PROTOCOL = {"protocol": "amqp091"}
# store stats() key -> (metric name, help, is a counter)
STORE_SERIES = {
    "live_messages": ("amqpd_store_messages", "Persistent messages in the log", False),
    "segments": ("amqpd_store_segments", "Segment files of the log", False),
    "bytes_on_disk": ("amqpd_store_disk_bytes", "Bytes of the log on disk", False),
    "batches": ("amqpd_store_batches", "Write batches (group commits)", True),
    "fsyncs": ("amqpd_store_fsyncs", "fdatasync calls", True),
    "compactions": ("amqpd_store_compactions", "Segments compacted", True),
    "segments_deleted": ("amqpd_store_segments_deleted", "Segments deleted", True),
    "appended_bytes": ("amqpd_store_appended_bytes", "Bytes appended to the log", True),
    "rewritten_bytes": ("amqpd_store_rewritten_bytes", "Bytes rewritten by compaction", True),
    "corrupt_records": ("amqpd_store_corrupt_records", "Corrupt records skipped", True),
}


def _gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


def _counter(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> Metric:
    family = CounterMetricFamily(name, doc, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


class BrokerCollector:
    """A prometheus_client collector reading the broker at scrape time."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.node = inspect.node_name()
        self.started = time.time()

    def collect(self) -> Iterator[Metric]:
        broker = self.broker
        views = inspect.connections(broker.connections)
        unacked = inspect.unacked_by_queue(views)
        channels = [channel for view in views for channel in view.channels()]
        queues = [queue for vhost in broker.vhosts.values() for queue in vhost.queues.values()]
        totals = MessageStats().snapshot()
        for vhost in broker.vhosts.values():
            for name, value in vhost.stats.snapshot().items():
                totals[name] += value

        yield _gauge(
            "rabbitmq_identity_info",
            "RabbitMQ node & cluster identity info",
            1,
            {"rabbitmq_node": self.node, "rabbitmq_cluster": self.node},
        )
        yield _gauge(
            "rabbitmq_build_info",
            "RabbitMQ & Erlang/OTP version info",
            1,
            {"rabbitmq_version": "3.10.8", "amqpd_version": __version__},
        )
        yield _gauge(
            "rabbitmq_connections",
            "Connections currently open",
            sum(1 for view in views if view.open),
        )
        yield _gauge("rabbitmq_channels", "Channels currently open", len(channels))
        yield _gauge(
            "rabbitmq_consumers",
            "Consumers currently connected",
            sum(channel.consumers for channel in channels),
        )
        yield _gauge("rabbitmq_queues", "Queues available", len(queues))
        ready = sum(len(queue.messages) for queue in queues)
        waiting = sum(unacked.values())
        yield _gauge("rabbitmq_queue_messages_ready", "Messages ready to be delivered", ready)
        yield _gauge(
            "rabbitmq_queue_messages_unacked", "Messages delivered but not yet acked", waiting
        )
        yield _gauge(
            "rabbitmq_queue_messages", "Sum of ready and unacked messages", ready + waiting
        )
        yield _gauge(
            "rabbitmq_queue_consumers",
            "Consumers on a queue",
            sum(len(queue.consumers) for queue in queues),
        )
        for name, doc, value in (
            ("received", "Total number of messages received from publishers", totals["publish"]),
            (
                "routed",
                "Total number of messages routed to queues or streams",
                totals["publish"] - totals["drop_unroutable"] - totals["return_unroutable"],
            ),
            (
                "delivered",
                "Total number of messages delivered to consumers",
                totals["deliver_get"],
            ),
            (
                "delivered_consume_manual_ack",
                "Total number of messages delivered to consumers using manual acknowledgement mode",
                totals["deliver"],
            ),
            (
                "delivered_consume_auto_ack",
                "Total number of messages delivered to consumers using automatic "
                "acknowledgement mode",
                totals["deliver_no_ack"],
            ),
            (
                "delivered_get_manual_ack",
                "Total number of messages fetched with basic.get in manual acknowledgement mode",
                totals["get"],
            ),
            (
                "delivered_get_auto_ack",
                "Total number of messages fetched with basic.get in automatic acknowledgement mode",
                totals["get_no_ack"],
            ),
            (
                "redelivered",
                "Total number of messages redelivered to consumers",
                totals["redeliver"],
            ),
            ("acknowledged", "Total number of messages acknowledged by consumers", totals["ack"]),
            ("confirmed", "Total number of messages confirmed to publishers", totals["confirm"]),
            (
                "unroutable_dropped",
                "Total number of messages published as non-mandatory into an exchange and "
                "dropped as unroutable",
                totals["drop_unroutable"],
            ),
            (
                "unroutable_returned",
                "Total number of messages published as mandatory into an exchange and "
                "returned to the publisher as unroutable",
                totals["return_unroutable"],
            ),
            (
                "get_empty",
                "Total number of times basic.get operations fetched no message",
                totals["get_empty"],
            ),
        ):
            yield _counter(f"rabbitmq_global_messages_{name}_total", doc, value, PROTOCOL)
        yield _gauge(
            "rabbitmq_process_resident_memory_bytes",
            "Memory used in bytes",
            shapes.process_memory(),
        )
        yield _gauge(
            "amqpd_uptime_seconds", "Seconds since the broker started", time.time() - self.started
        )
        recovery = GaugeMetricFamily(
            "amqpd_recovery_seconds", "Time taken to recover a vhost from its log", labels=["vhost"]
        )
        for name, seconds in getattr(broker, "recovery_seconds", {}).items():
            recovery.add_metric([name], seconds)
        yield recovery
        yield from self._store_metrics()

    def _store_metrics(self) -> Iterator[Metric]:
        """Each vhost's message store, from its own `stats()` (whatever it reports) and its
        latency histograms."""
        histograms = {
            "write": HistogramMetricFamily(
                "amqpd_store_write_seconds",
                "Time the store's writer took per batch of writes",
                labels=["vhost"],
            ),
            "fsync": HistogramMetricFamily(
                "amqpd_store_fsync_seconds", "Time taken by each fdatasync", labels=["vhost"]
            ),
        }
        for vhost in self.broker.vhosts.values():
            latencies = getattr(vhost.store, "latencies", None)
            if latencies is None:
                continue
            for key, histogram in latencies().items():
                if key in histograms:
                    histograms[key].add_metric(
                        [vhost.name], histogram.cumulative(), sum_value=histogram.total
                    )
        yield from histograms.values()
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for vhost in self.broker.vhosts.values():
            store = vhost.store
            stats = getattr(store, "stats", None)
            if stats is None:
                continue
            values = stats()
            for key, (name, doc, counter) in STORE_SERIES.items():
                if key not in values:
                    continue
                family = families.get(key)
                if family is None:
                    kind = CounterMetricFamily if counter else GaugeMetricFamily
                    family = families[key] = kind(name, doc, labels=["vhost"])
                family.add_metric([vhost.name], float(values[key]))
        yield from families.values()


class MetricsServer:
    """The Prometheus listener: `/metrics` and `/metrics/per-object`."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        registry = CollectorRegistry(auto_describe=False)
        registry.register(BrokerCollector(broker))
        # per-object: the same, then the per-queue series (metrics_queues)
        self.registries = {"/metrics": registry, "/metrics/per-object": registry}
        self._runner: web.AppRunner | None = None

    async def _serve(self, request: web.Request) -> web.Response:
        registry = self.registries.get(request.path.rstrip("/") or "/metrics")
        if registry is None:
            raise web.HTTPNotFound()
        body = generate_latest(registry)
        if request.path.rstrip("/") == "/metrics/per-object":
            broker = self.broker
            queues = [q for vhost in broker.vhosts.values() for q in vhost.queues.values()]
            unacked = inspect.unacked_by_queue(inspect.connections(broker.connections))
            body += (await per_queue_text(queues, unacked)).encode()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self, bind: str, port: int) -> list[tuple[str, int]]:
        app = web.Application()
        app.router.add_get("/metrics", self._serve)
        app.router.add_get("/metrics/per-object", self._serve)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, bind, port, backlog=128, reuse_address=True)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        return [sock.getsockname()[:2] for sock in sockets]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
